import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lib import data, recipes, train


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
    X, y = (torch.as_tensor(a) for a in data.digits("val"))
    with torch.no_grad():
        out = m(X.float())
    assert set(r) == {"loss", "accuracy"}
    assert r["loss"] == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)
    assert r["accuracy"] == pytest.approx(float((out.argmax(1) == y).float().mean()))
    assert torch.allclose(train.predict(m, va), out, atol=1e-6)


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
    with pytest.raises(ValueError, match=r"device 'cuda:7' (is not available|does not exist)"):
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




# --------------------------------------------------------------------------- the engine's paths
def _tiny_loader(n=64, batch_size=16):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g)
    y = (X[:, 0] > 0).long()
    return data.make_loader(X, y, batch_size=batch_size, shuffle=True, seed=0)


def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_custom_step_logs_are_weighted_by_n():
    seen = []

    def step(model, batch):
        x, y = batch
        seen.append(len(x))
        # a log equal to the batch's size, weighted by n = 1 (an unweighted mean) vs by len(x)
        return {"loss": F.cross_entropy(model(x), y), "n": 1, "size": float(len(x))}

    loader = _tiny_loader(n=40, batch_size=16)   # batches of 16, 16, 8
    h = train.fit(_tiny_model(), loader, epochs=1, step=step, progress=False)
    assert seen == [16, 16, 8]
    assert h["train_size"] == [pytest.approx(40 / 3)]       # mean of 16, 16, 8 with equal weights
    assert h.steps["train_size"] == [16.0, 16.0, 8.0] and len(h.steps["lr"]) == 3
    default = train.fit(_tiny_model(), _tiny_loader(n=40, batch_size=16), epochs=1, progress=False)
    per_batch = default.steps["train_loss"]
    assert default["train_loss"][0] == pytest.approx((16 * per_batch[0] + 16 * per_batch[1] + 8 * per_batch[2]) / 40)


def test_step_and_loss_fn_are_exclusive_and_step_results_are_checked():
    with pytest.raises(ValueError, match="either step or loss_fn"):
        train.fit(_tiny_model(), _tiny_loader(), epochs=1, step=train.supervised_step(), loss_fn=F.cross_entropy)
    with pytest.raises(TypeError, match="dict with a 'loss'"):
        train.fit(_tiny_model(), _tiny_loader(), epochs=1, step=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
                  progress=False)


def test_validation_uses_the_same_step_in_eval_mode():
    modes = []

    def step(model, batch):
        modes.append(model.training)
        x, y = batch
        return {"loss": F.cross_entropy(model(x), y)}

    train.fit(_tiny_model(), _tiny_loader(n=32), epochs=1, step=step, val_loader=_tiny_loader(n=32), progress=False)
    assert modes == [True, True, False, False]


def test_schedule_function_sets_the_learning_rate_of_every_step():
    loader = _tiny_loader(n=64, batch_size=16)  # 4 steps an epoch
    h = train.fit(_tiny_model(), loader, epochs=2, lr=0.1, schedule=recipes.cosine, progress=False)
    total = 8
    assert h.steps["lr"] == pytest.approx([0.1 * recipes.cosine(s, total) for s in range(total)])
    warm = recipes.warmup_cosine(0.25)
    assert [warm(s, 8) for s in range(3)] == [0.5, 1.0, 1.0]
    assert warm(7, 8) == pytest.approx(recipes.cosine(5, 6))
    cycle = recipes.one_cycle(peak=0.25, start=0.04, end=1e-4)
    assert cycle(0, 100) == pytest.approx(0.04) and cycle(25, 100) == pytest.approx(1.0)
    assert cycle(99, 100) == pytest.approx(1e-4) and max(cycle(s, 100) for s in range(100)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="either schedule"):
        opt = torch.optim.SGD(_tiny_model().parameters(), lr=0.1)
        train.fit(_tiny_model(), loader, epochs=1, schedule=recipes.cosine,
                  scheduler=torch.optim.lr_scheduler.StepLR(opt, 1))


@pytest.mark.parametrize("interval, expected", [("epoch", [0.1] * 4 + [0.05] * 4), ("step", [0.1 * 0.5 ** s for s in range(8)])])
def test_torch_scheduler_per_epoch_or_per_step(interval, expected):
    model = _tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    h = train.fit(model, _tiny_loader(n=64, batch_size=16), epochs=2, optimizer=opt, scheduler=sched,
                  scheduler_interval=interval, progress=False)
    assert h.steps["lr"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="scheduler_interval"):
        train.fit(model, _tiny_loader(), epochs=1, optimizer=opt, scheduler=sched, scheduler_interval="batch")


def test_fit_checkpoint_holds_the_best_epoch(tmp_path):
    from lib.checkpoint import load_checkpoint

    path = tmp_path / "best.pt"
    model = _tiny_model()
    h = train.fit(model, _tiny_loader(), epochs=4, lr=0.05, val_loader=_tiny_loader(n=32), checkpoint=path,
                  progress=False)
    restored = _tiny_model()
    extra = load_checkpoint(path, restored)
    assert extra["epoch"] == h.best_epoch and extra["loss"] == pytest.approx(min(h["val_loss"]))
    for a, b in zip(model.parameters(), restored.parameters()):  # restore_best put the same weights back
        assert torch.equal(a, b)


def test_amp_is_ignored_on_the_cpu_and_changes_nothing():
    a = train.fit(_tiny_model(), _tiny_loader(), epochs=2, amp=True, device="cpu", progress=False)
    b = train.fit(_tiny_model(), _tiny_loader(), epochs=2, amp=False, device="cpu", progress=False)
    assert a["train_loss"] == b["train_loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision runs on CUDA only")
def test_amp_on_cuda_trains():
    h = train.fit(_tiny_model(), _tiny_loader(), epochs=5, lr=0.05, amp=True, device="cuda", progress=False)
    assert h["train_loss"][-1] < h["train_loss"][0]


def test_eval_mode_restores_the_previous_mode_even_on_error():
    model = nn.Dropout(0.5)
    with train.eval_mode(model):
        assert not model.training
    assert model.training
    model.eval()
    with pytest.raises(RuntimeError, match="inside"), train.eval_mode(model):
        model.train()
        raise RuntimeError("inside")
    assert not model.training


def test_count_parameters_counts_shared_tensors_once_and_can_skip_frozen():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight   # tied weights, as in GPT-2
    model = nn.ModuleDict({"emb": emb, "head": head, "norm": nn.LayerNorm(4)})
    assert train.count_parameters(model) == 40 + 8
    model["norm"].requires_grad_(False)
    assert train.count_parameters(model, trainable_only=True) == 40


def test_adamw_decays_matrices_only_and_skips_frozen_parameters():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    model[2].requires_grad_(False)
    opt = recipes.adamw(model, lr=0.01, weight_decay=0.1)
    decayed, plain = opt.param_groups
    assert [p.shape for p in decayed["params"]] == [(8, 4)] and decayed["weight_decay"] == 0.1
    assert [p.shape for p in plain["params"]] == [(8,), (8,), (8,)] and plain["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="no trainable parameters"):
        recipes.adamw(model[2])


def test_train_classifier_is_reproducible_and_leaves_the_callers_random_state_alone():
    X, y = data.digits("train")
    X, y = X[:200], y[:200]
    torch.manual_seed(123)
    m1 = nn.Sequential(nn.Linear(64, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 10))
    m0 = copy.deepcopy(m1)
    m2 = copy.deepcopy(m1)
    rng = torch.get_rng_state()
    h1 = recipes.train_classifier(m1, X, y, epochs=2, seed=3, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)   # dropout drew from a seeded, restored stream
    torch.manual_seed(999)                            # a different global state must not matter
    h2 = recipes.train_classifier(m2, X, y, epochs=2, seed=3, progress=False)
    assert h1["train_loss"] == h2["train_loss"]
    h3 = recipes.train_classifier(m0, X, y, epochs=2, seed=4, progress=False)   # the same start, another seed
    assert h3["train_loss"] != h1["train_loss"]


def test_train_classifier_with_soft_targets_calls_the_soft_loss():
    X, y = data.digits("train")
    X, y = X[:64], y[:64]
    soft = torch.randn(64, 10)
    calls = []

    def soft_loss(output, target, soft_batch):
        calls.append(soft_batch.shape)
        return F.cross_entropy(output, target)

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    recipes.train_classifier(model, X, y, epochs=1, batch_size=32, soft_targets=soft, soft_loss=soft_loss,
                           progress=False)
    assert calls == [(32, 10), (32, 10)]
    with pytest.raises(ValueError, match="go together"):
        recipes.train_classifier(model, X, y, epochs=1, soft_targets=soft)


def test_class_weights_balance_the_classes():
    w = recipes.class_weights(np.array([0, 0, 0, 1]))
    assert w.tolist() == [pytest.approx(4 / 6), pytest.approx(2.0)]
    assert recipes.class_weights(torch.tensor([0, 1, 1, 0])).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="every class needs at least one example"):
        recipes.class_weights(np.array([0, 2]))
