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


def test_seeded_depends_on_the_seed_alone_and_restores_the_callers_state():
    from lib.device import seeded

    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    with seeded(3):
        a = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(torch.get_rng_state(), states[0])
    assert (np.random.get_state()[1] == states[1]).all() and random.getstate() == states[2]
    torch.manual_seed(99)           # another outside state: the same draws inside
    with seeded(3):
        b = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]
    with seeded(4):
        assert not torch.equal(torch.rand(2), a[0])
    before = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="inside"), seeded(5):
        torch.rand(3)
        raise RuntimeError("inside")
    assert torch.equal(torch.get_rng_state(), before)   # restored even when the block raises


def test_setup_notebook_seeds_prints_and_returns_the_device(capsys):
    from lib.device import setup_notebook

    threads = torch.get_num_threads()
    try:
        device = setup_notebook(seed=5)
        first = torch.rand(1)
        assert capsys.readouterr().out == f"device: {device.type}\n" and device == get_device()
        assert torch.get_num_threads() == 1
        setup_notebook(seed=5, single_thread=False)
        assert torch.equal(torch.rand(1), first)
        with pytest.raises(TypeError, match="single_thread"):
            setup_notebook(single_thread="yes")
    finally:
        torch.set_num_threads(threads)
