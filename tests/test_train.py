import pytest
import torch
from torch import nn

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
