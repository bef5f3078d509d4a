import random

import numpy as np
import pytest
import torch

from lib.device import environment_report, get_device, package_version, seed_everything


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device() == torch.device(expected)
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")  # forces the CPU for a whole session
    assert get_device() == torch.device("cpu")


def test_get_device_rejects_unknown_and_absent():
    with pytest.raises(ValueError, match="prefer must be one of"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            get_device("cuda")


def test_seed_everything_makes_all_generators_repeatable():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()
    seed_everything(3)
    a = draw()
    seed_everything(3)
    assert draw() == a
    seed_everything(4)
    assert draw() != a


def test_seed_everything_validates():
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)
    with pytest.raises(ValueError, match=r"seed must be a non-negative int .*, got 1.5"):
        seed_everything(1.5)


def test_environment_report_reads_metadata_without_importing_tensorflow():
    import sys
    had_tf = "tensorflow" in sys.modules
    report = environment_report()
    assert report["torch"].startswith("2.13.0")
    assert {"python", "device", "cpu cores"} <= set(report)
    assert ("tensorflow" in sys.modules) == had_tf
    assert package_version("surely-not-a-package-xyz") == "not installed"


def test_seed_accepts_numpy_ints_and_prefer_must_be_a_name():
    seed_everything(np.int64(3))  # used to be refused
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    before = random.getstate()
    with pytest.raises(ValueError, match="below 2\\*\\*32"):
        seed_everything(2**32)  # used to seed Python's generator, then fail in NumPy's
    assert random.getstate() == before
    with pytest.raises(TypeError, match="prefer must be"):
        get_device(["cpu"])
