import copy
import os
import time

import numpy as np
import pytest
import torch
from torch import nn

from lib import checkpoint


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_checkpoint_round_trip(tmp_path):
    m, path = _model(), tmp_path / "ck" / "model.pt"
    opt = torch.optim.Adam(m.parameters())
    checkpoint.save_checkpoint(path, m, opt, epoch=3, note="best")
    m2 = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    extra = checkpoint.load_checkpoint(path, m2, torch.optim.Adam(m2.parameters()))
    assert extra == {"epoch": 3, "note": "best"}
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    m, path = _model(), tmp_path / "model.pt"
    checkpoint.save_checkpoint(path, m)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load_checkpoint(path, m)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(ValueError, match="not a course checkpoint"):
        checkpoint.load_checkpoint(other, m)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load_checkpoint(text, m)
    with pytest.raises(FileNotFoundError):
        checkpoint.load_checkpoint(tmp_path / "missing.pt", m)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    m, path = _model(), tmp_path / "model.pt"
    checkpoint.save_checkpoint(path, m, epoch=1)
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, m, epoch=2)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(path, m) == {"epoch": 1}


def test_save_removes_temporaries_left_by_a_killed_save(tmp_path):
    m, path = _model(), tmp_path / "model.pt"
    stale = tmp_path / "model.pt.k1ll3d_x.tmp"      # what mkstemp left when a save was killed
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    newer = tmp_path / "model.pt.runn1ng_.tmp"      # a save still writing, started after ours
    newer.write_bytes(b"partial")
    os.utime(newer, (time.time() + 60, time.time() + 60))
    unrelated = tmp_path / "other.pt.k1ll3d_x.tmp"
    unrelated.write_bytes(b"x")
    os.utime(unrelated, (time.time() - 60, time.time() - 60))
    checkpoint.save_checkpoint(path, m, epoch=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.runn1ng_.tmp", "other.pt.k1ll3d_x.tmp"]


def test_extra_must_be_loadable_with_weights_only(tmp_path):
    m, path = _model(), tmp_path / "model.pt"
    checkpoint.save_checkpoint(path, m, loss=np.float64(0.25), epoch=np.int64(3), flags=[np.bool_(True), "x"])
    extra = checkpoint.load_checkpoint(path, m)
    assert extra == {"loss": 0.25, "epoch": 3, "flags": [True, "x"]} and type(extra["loss"]) is float
    with pytest.raises(TypeError, match=r"extra 'curve'.*weights_only=True.*tolist"):
        checkpoint.save_checkpoint(path, m, curve=np.zeros(3))
    with pytest.raises(TypeError, match="extra 'when'"):
        checkpoint.save_checkpoint(path, m, when=object())
    assert checkpoint.load_checkpoint(path, m) == extra  # the refused save left the checkpoint alone


def test_load_errors_keep_their_real_cause(tmp_path, monkeypatch):
    m, path = _model(), tmp_path / "model.pt"
    checkpoint.save_checkpoint(path, m)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="map_location 'cuda' is not available") as info:
        checkpoint.load_checkpoint(path, m, map_location="cuda")
    assert "truncated" not in str(info.value)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated") as info:
        checkpoint.load_checkpoint(path, m)
    assert info.value.__cause__ is not None  # the original torch.load error is chained
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "model": m.state_dict(), "extra": {"x": np.float64(1)}}, pickled)
    with pytest.raises(ValueError, match=r"weights_only=True\) refuses") as info:
        checkpoint.load_checkpoint(pickled, m)
    assert "truncated" not in str(info.value)


def test_a_failed_load_leaves_model_and_optimizer_untouched(tmp_path):
    m, path = _model(), tmp_path / "model.pt"
    checkpoint.save_checkpoint(path, m, torch.optim.Adam(m.parameters()))
    target = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    before = copy.deepcopy(target.state_dict())

    def unchanged():
        return all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    partial = torch.optim.Adam(list(target.parameters())[:2])  # an optimizer over other parameters
    with pytest.raises(ValueError, match="nothing was loaded"):
        checkpoint.load_checkpoint(path, target, partial)
    assert unchanged()
    checkpoint.save_checkpoint(path, m)  # no optimizer state in the file
    with pytest.raises(ValueError, match="no optimizer state"):
        checkpoint.load_checkpoint(path, target, torch.optim.Adam(target.parameters()))
    assert unchanged()
    wider = nn.Sequential(nn.Linear(64, 33), nn.ReLU(), nn.Linear(33, 10))
    checkpoint.save_checkpoint(path, wider)
    with pytest.raises(ValueError, match=r"shapes differ: 0.weight: checkpoint \(33, 64\) vs model \(32, 64\)"):
        checkpoint.load_checkpoint(path, target)
    assert unchanged()
