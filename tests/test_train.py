import copy
import os
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lib import data, train


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _loaders():
    X, y = data.digits("train")
    Xv, yv = data.digits("val")
    return data.make_loader(X, y, shuffle=True), data.make_loader(Xv, yv, batch_size=128)


def test_fit_learns_and_records_history():
    tr, va = _loaders()
    h = train.fit(_model(), tr, epochs=8, lr=3e-3, val_loader=va, progress=False, clip_grad=5.0)
    assert len(h["train_loss"]) == 8 and h["val_loss"][-1] < h["val_loss"][0]
    assert h.last("val_accuracy") > 0.9
    assert "grad_norm" in h and h.best_epoch is not None


def test_fit_is_deterministic():
    tr, _ = _loaders()
    h1 = train.fit(_model(), tr, epochs=2, progress=False)
    tr, _ = _loaders()
    h2 = train.fit(_model(), tr, epochs=2, progress=False)
    assert h1["train_loss"] == h2["train_loss"]


def test_early_stopping_restores_best():
    tr, va = _loaders()
    model = _model()
    h = train.fit(model, tr, epochs=60, lr=0.05, val_loader=va, patience=2, progress=False)
    assert len(h["train_loss"]) < 60
    assert train.evaluate(model, va)["loss"] == pytest.approx(min(h["val_loss"]), rel=1e-5)


def test_fit_argument_errors():
    tr, _ = _loaders()
    with pytest.raises(ValueError, match="epochs"):
        train.fit(_model(), tr, epochs=0)
    with pytest.raises(ValueError, match="val_loader"):
        train.fit(_model(), tr, epochs=1, patience=2)


def test_evaluate_and_predict_shapes():
    _, va = _loaders()
    m = _model()
    r = train.evaluate(m, va)
    assert set(r) == {"loss", "accuracy"}
    assert train.predict(m, va).shape == (360, 10)


def test_checkpoint_round_trip(tmp_path):
    m, path = _model(), tmp_path / "ck" / "model.pt"
    opt = torch.optim.Adam(m.parameters())
    train.save_checkpoint(path, m, opt, epoch=3, note="best")
    m2 = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    extra = train.load_checkpoint(path, m2, torch.optim.Adam(m2.parameters()))
    assert extra == {"epoch": 3, "note": "best"}
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    m, path = _model(), tmp_path / "model.pt"
    train.save_checkpoint(path, m)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train.load_checkpoint(path, m)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(ValueError, match="not a course checkpoint"):
        train.load_checkpoint(other, m)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train.load_checkpoint(text, m)
    with pytest.raises(FileNotFoundError):
        train.load_checkpoint(tmp_path / "missing.pt", m)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    m, path = _model(), tmp_path / "model.pt"
    train.save_checkpoint(path, m, epoch=1)
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoint(path, m, epoch=2)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    monkeypatch.undo()
    assert train.load_checkpoint(path, m) == {"epoch": 1}


# --------------------------------------------------------------------------- bad input at the boundary
@pytest.mark.parametrize("clip_grad", [0, -1, float("nan"), "1"])
def test_fit_clip_grad_must_be_positive_or_none(clip_grad):
    tr, _ = _loaders()
    with pytest.raises(ValueError, match=f"clip_grad must be a positive number or None, got {clip_grad!r}"):
        train.fit(_model(), tr, epochs=1, clip_grad=clip_grad, progress=False)


def test_fit_stops_at_the_first_non_finite_loss():
    X, y = data.digits("train")
    X = X.copy()
    X[40] = float("nan")  # the second batch of 32, unshuffled
    model = _model()
    with pytest.raises(FloatingPointError, match=r"epoch 1/3, batch 2"):
        train.fit(model, data.make_loader(X, y, batch_size=32), epochs=3, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # raised before the step


def test_fit_argument_types_and_empty_loaders():
    tr, _ = _loaders()
    with pytest.raises(TypeError, match="epochs must be a positive int"):
        train.fit(_model(), tr, epochs=True, progress=False)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        train.fit(_model(), tr, epochs=1, lr=0.0, progress=False)
    with pytest.raises(ValueError, match="patience must be a positive int"):
        train.fit(_model(), tr, epochs=1, val_loader=tr, patience=0, progress=False)
    with pytest.raises(ValueError, match="device 'cuda:7'|device 'cuda:7' is not available"):
        train.fit(_model(), tr, epochs=1, device="cuda:7", progress=False)
    X, y = data.digits("val")
    empty = DataLoader(TensorDataset(torch.as_tensor(X[:0]), torch.as_tensor(y[:0])), batch_size=8)
    with pytest.raises(ValueError, match="no batches"):
        train.fit(_model(), empty, epochs=1, progress=False)
    dropped = DataLoader(TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), batch_size=1000, drop_last=True)
    with pytest.raises(ValueError, match="no batches"):
        train.fit(_model(), dropped, epochs=1, progress=False)
    inputs_only = DataLoader(TensorDataset(torch.as_tensor(X)), batch_size=8)
    with pytest.raises(ValueError, match=r"\(\*inputs, target\)"):
        train.fit(_model(), inputs_only, epochs=1, progress=False)
    with pytest.raises(ValueError, match="single number"):
        train.fit(_model(), tr, epochs=1, loss_fn=lambda o, t: F.cross_entropy(o, t, reduction="none"),
                  progress=False)


def test_evaluate_and_predict_on_a_model_without_parameters():
    from lib.lm import BigramLM, lm_loss
    from lib.text import CharVocab, lm_tensors

    vocab = CharVocab()
    bigram = BigramLM(["anna", "bob"], vocab)
    loader = data.make_loader(*lm_tensors(["anna", "emma"], vocab), batch_size=2)
    assert train.evaluate(bigram, loader, loss_fn=lm_loss)["loss"] > 0
    assert train.predict(bigram, loader).shape == (2, 5, len(vocab))
    _, va = _loaders()
    assert train.predict(nn.Flatten(), va).shape == (360, 64)  # no parameters, no buffers: the CPU


def test_history_names_missing_records():
    h = train.History()
    h.log(train_loss=1.0)
    with pytest.raises(KeyError, match="it has \\['train_loss'\\]"):
        h["val_loss"]


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
    train.save_checkpoint(path, m, epoch=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.runn1ng_.tmp", "other.pt.k1ll3d_x.tmp"]


def test_extra_must_be_loadable_with_weights_only(tmp_path):
    m, path = _model(), tmp_path / "model.pt"
    train.save_checkpoint(path, m, loss=np.float64(0.25), epoch=np.int64(3), flags=[np.bool_(True), "x"])
    extra = train.load_checkpoint(path, m)
    assert extra == {"loss": 0.25, "epoch": 3, "flags": [True, "x"]} and type(extra["loss"]) is float
    with pytest.raises(TypeError, match=r"extra 'curve'.*weights_only=True.*tolist"):
        train.save_checkpoint(path, m, curve=np.zeros(3))
    with pytest.raises(TypeError, match="extra 'when'"):
        train.save_checkpoint(path, m, when=object())
    assert train.load_checkpoint(path, m) == extra  # the refused save left the checkpoint alone


def test_load_errors_keep_their_real_cause(tmp_path, monkeypatch):
    m, path = _model(), tmp_path / "model.pt"
    train.save_checkpoint(path, m)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="map_location 'cuda' is not available") as info:
        train.load_checkpoint(path, m, map_location="cuda")
    assert "truncated" not in str(info.value)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated") as info:
        train.load_checkpoint(path, m)
    assert info.value.__cause__ is not None  # the original torch.load error is chained
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": train.CHECKPOINT_FORMAT, "model": m.state_dict(), "extra": {"x": np.float64(1)}}, pickled)
    with pytest.raises(ValueError, match=r"weights_only=True\) refuses") as info:
        train.load_checkpoint(pickled, m)
    assert "truncated" not in str(info.value)


def test_a_failed_load_leaves_model_and_optimizer_untouched(tmp_path):
    m, path = _model(), tmp_path / "model.pt"
    train.save_checkpoint(path, m, torch.optim.Adam(m.parameters()))
    target = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    before = copy.deepcopy(target.state_dict())

    def unchanged():
        return all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    partial = torch.optim.Adam(list(target.parameters())[:2])  # an optimizer over other parameters
    with pytest.raises(ValueError, match="nothing was loaded"):
        train.load_checkpoint(path, target, partial)
    assert unchanged()
    train.save_checkpoint(path, m)  # no optimizer state in the file
    with pytest.raises(ValueError, match="no optimizer state"):
        train.load_checkpoint(path, target, torch.optim.Adam(target.parameters()))
    assert unchanged()
    wider = nn.Sequential(nn.Linear(64, 33), nn.ReLU(), nn.Linear(33, 10))
    train.save_checkpoint(path, wider)
    with pytest.raises(ValueError, match=r"shapes differ: 0.weight: checkpoint \(33, 64\) vs model \(32, 64\)"):
        train.load_checkpoint(path, target)
    assert unchanged()
