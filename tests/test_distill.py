"""Tests of lib.distill: soft targets, the distillation loss (by hand, limits), training, the table, Keras."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib import distill
from lib.device import seed_everything
from lib.recipes import train_classifier
from lib.train import count_parameters


def test_soften():
    logits = torch.tensor([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(distill.soften(logits, 1.0), F.softmax(logits, dim=1))
    p = distill.soften(logits, 3.0)
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    e = np.exp(np.array([2.0, 1.0, 0.1]) / 3.0)
    np.testing.assert_allclose(p[0].numpy(), e / e.sum(), rtol=1e-6)
    assert distill.soften(logits, 1e4)[0].sub(1 / 3).abs().max() < 1e-4      # T -> inf: uniform
    assert distill.soften(logits, 1e-3)[0].argmax() == 0 and distill.soften(logits, 1e-3)[0, 0] > 0.999


def test_distillation_loss_by_hand():
    z = np.array([[1.0, 0.0, -1.0], [0.5, 0.2, 0.1]])
    v = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = np.array([0, 2])
    T, alpha = 2.0, 0.3

    def softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    ce = -np.log(softmax(z)[np.arange(2), y]).mean()
    p, q = softmax(v / T), softmax(z / T)
    kl = (p * np.log(p / q)).sum(1).mean()
    expected = alpha * ce + (1 - alpha) * T**2 * kl
    got = distill.distillation_loss(torch.tensor(z), torch.tensor(v), torch.tensor(y), T=T, alpha=alpha)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_distillation_loss_at_T_equal_one_and_alpha_limits():
    g = torch.Generator().manual_seed(0)
    z, v = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (5,), generator=g)
    p = F.softmax(v, 1)
    soft_ce = -(p * F.log_softmax(z, 1)).sum(1).mean()
    entropy = -(p * p.log()).sum(1).mean()
    # at T = 1 no rescaling: alpha * CE + (1 - alpha) * (cross-entropy with soft targets - their entropy)
    expected = 0.4 * F.cross_entropy(z, y) + 0.6 * (soft_ce - entropy)
    torch.testing.assert_close(distill.distillation_loss(z, v, y, T=1.0, alpha=0.4), expected)
    # continuous as T -> 1
    near = distill.distillation_loss(z, v, y, T=1.0 + 1e-7, alpha=0.4)
    assert abs(float(near - expected)) < 1e-5
    torch.testing.assert_close(distill.distillation_loss(z, v, y, T=7.0, alpha=1.0), F.cross_entropy(z, y))
    assert float(distill.distillation_loss(v, v, y, T=5.0, alpha=0.0)) == pytest.approx(0.0, abs=1e-12)


def test_high_temperature_gradient_matches_logits():
    g = torch.Generator().manual_seed(1)
    z, v = torch.randn(3, 10, generator=g, dtype=torch.float64), torch.randn(3, 10, generator=g, dtype=torch.float64)
    z, v = z - z.mean(1, keepdim=True), v - v.mean(1, keepdim=True)
    y = torch.zeros(3, dtype=torch.long)
    z.requires_grad_(True)
    distill.distillation_loss(z, v, y, T=1e4, alpha=0.0).backward()
    # T^2 * dKL/dz -> (z - v) / N, averaged over the batch (the next term is O(1/T))
    torch.testing.assert_close(z.grad, (z.detach() - v) / 10 / 3, atol=2e-5, rtol=1e-3)


def test_teacher_gets_no_gradient():
    z = torch.randn(2, 3, requires_grad=True)
    v = torch.randn(2, 3, requires_grad=True)
    distill.distillation_loss(z, v, torch.tensor([0, 1]), T=2.0, alpha=0.5).backward()
    assert z.grad is not None and v.grad is None


def test_bad_inputs():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="temperature"):
        distill.soften(z, 0.0)
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        distill.soften(torch.zeros(3), 1.0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        distill.soften(np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="teacher_logits"):
        distill.distillation_loss(z, torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="target must be integer class indices"):
        distill.distillation_loss(z, z, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="alpha"):
        distill.distillation_loss(z, z, torch.tensor([0, 1]), alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        distill.distillation_loss(z, z, torch.tensor([0, 1]), T=-1.0)
    X, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="soft_targets must have one row per example"):
        train_classifier(nn.Linear(2, 3), X, y, epochs=1, soft_targets=torch.zeros(3, 3),
                         soft_loss=distill.distillation())
    with pytest.raises(ValueError, match="temperature"):
        distill.distillation(T=0.0)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(nn.Linear(2, 3), X, y, epochs=0)
    with pytest.raises(ValueError, match="no gap"):
        distill.gap_recovered(5, 5, 4)


def _blobs(n=120):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    X = torch.randn(n, 2, generator=g) * 0.5 + torch.tensor([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])[y]
    return X, y


def test_distillation_trains_through_train_classifier_deterministically():
    X, y = _blobs()
    teacher_logits = 5 * F.one_hot(y, 3).float()
    results = []
    for logits in (None, None, teacher_logits, teacher_logits):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
        soft = None if logits is None else distill.distillation(T=2.0, alpha=0.5)
        losses = train_classifier(model, X, y, epochs=15, lr=1e-2, batch_size=32, seed=3, label_smoothing=0.0,
                                  soft_targets=logits, soft_loss=soft, progress=False)["train_loss"]
        assert losses[-1] < losses[0]
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1]) and torch.equal(results[2], results[3])
    assert not torch.equal(results[0], results[2])
    assert distill.accuracy(model, X, y) > 0.9


def test_compression_helpers():
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))
    assert distill.state_dict_bytes(model) > 4 * count_parameters(model)
    assert distill.cpu_latency(model, torch.zeros(4, 10), repeats=3) > 0
    assert model.training   # timed in eval mode, then put back as it was
    assert distill.gap_recovered(67, 146, 74) == pytest.approx(72 / 79)
    assert round(100 * distill.gap_recovered(67, 146, 74)) == 91
    assert distill.logits_of(model, torch.zeros(1100, 10), batch_size=512).shape == (1100, 2)


def test_keras_distiller_loss_matches_pytorch():
    from lib.keras_models import load_keras

    keras = load_keras()
    seed_everything(0)
    student = distill.keras_student(channels=(2, 4), hidden=8)
    T, alpha = 3.0, 0.25
    distiller = distill.keras_distiller(student, T=T, alpha=alpha)
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))   # no update: loss at the start
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    teacher_logits = (3 * rng.standard_normal((16, 10))).astype(np.float32)
    reported = distiller.train_on_batch(x, (y, teacher_logits), return_dict=True)["loss"]
    z = torch.tensor(np.asarray(student(x, training=True)))
    expected = distill.distillation_loss(z, torch.tensor(teacher_logits), torch.tensor(y), T=T, alpha=alpha)
    assert float(reported) == pytest.approx(float(expected), rel=1e-4)
    acc = distiller.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    assert acc == pytest.approx(float((np.argmax(np.asarray(student(x, training=False)), 1) == y).mean()))
    with pytest.raises(ValueError, match="alpha"):
        distill.keras_distiller(student, alpha=2.0)


def test_keras_student_has_the_pytorch_students_size():
    from lib.cnn import LeNet

    student = distill.keras_student(channels=(8, 16), hidden=32)
    trainable = sum(int(np.prod(w.shape)) for w in student.trainable_weights)
    assert trainable == count_parameters(LeNet(channels=(8, 16), hidden=32, dropout=0.0))
    assert math.isfinite(float(np.asarray(student(np.zeros((1, 8, 8, 1), np.float32))).sum()))


def test_distill_arguments_are_checked():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    X, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=r"y must have shape \(n,\) = \(6,\), got \(6, 1\)"):
        distill.accuracy(model, X, y[:, None])  # used to compare (6,) with (6, 1): a 6x6 "accuracy"
    assert torch.equal(distill.soften(X, np.float32(2.0)), distill.soften(X, 2.0))  # NumPy scalars are numbers
    with pytest.raises(ValueError, match="temperature T must be a positive number"):
        distill.soften(X, True)
    with pytest.raises(ValueError, match="batch_size"):
        train_classifier(model, X, y, epochs=1, batch_size=0)  # used to raise ZeroDivisionError
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        distill.logits_of(model, X, batch_size=-1)
    with pytest.raises(FloatingPointError, match="epoch 1/2, batch 1"):
        train_classifier(model, X.masked_fill(X > 1, float("nan")), y, epochs=2, batch_size=6, progress=False)
    with pytest.raises(TypeError, match="y must be integer class indices"):
        train_classifier(model, X, y.float(), epochs=1)
    with pytest.raises(ValueError, match="alpha must lie in"):
        distill.distillation(alpha=2.0)


def test_logits_of_and_cpu_latency_leave_the_model_as_it_was():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    distill.logits_of(model, torch.zeros(3, 4))
    distill.cpu_latency(model, torch.zeros(3, 4), repeats=1, warmup=0)
    assert model.training
    model.eval()
    distill.logits_of(model, torch.zeros(3, 4))
    assert not model.training


def test_bootstrap_gap_recovered():
    rng = np.random.default_rng(0)
    n = 400
    teacher = rng.random(n) > 0.02
    scratch = rng.random((3, n)) > 0.10
    distilled = rng.random((3, n)) > 0.05
    shares = distill.bootstrap_gap_recovered(teacher, scratch, distilled, n_boot=500, seed=1)
    assert shares.shape == (500,)
    np.testing.assert_array_equal(shares, distill.bootstrap_gap_recovered(teacher, scratch, distilled,
                                                                          n_boot=500, seed=1))
    point = distill.gap_recovered(1 - teacher.mean(), 1 - scratch.mean(), 1 - distilled.mean())
    low, high = np.nanpercentile(shares, [2.5, 97.5])
    assert low < point < high and high - low < 1.0
    # four times the examples: the interval about halves
    big = distill.bootstrap_gap_recovered(np.tile(teacher, 4), np.tile(scratch, 4), np.tile(distilled, 4),
                                          n_boot=500, seed=1)
    ratio = np.subtract(*np.nanpercentile(big, [97.5, 2.5])) / (high - low)
    assert 0.35 < ratio < 0.7
    # one seed, identical students: every resample recovers nothing
    same = distill.bootstrap_gap_recovered(teacher, scratch[:1], scratch[:1], n_boot=50)
    np.testing.assert_allclose(same[~np.isnan(same)], 0.0)
    # a resample with no gap is nan, not a division by zero
    assert np.isnan(distill.bootstrap_gap_recovered(np.ones(5), np.ones((2, 5)), np.ones((2, 5)), n_boot=3)).all()
    with pytest.raises(ValueError, match="same n examples"):
        distill.bootstrap_gap_recovered(teacher, scratch, distilled[:2])
    with pytest.raises(ValueError, match="0/1"):
        distill.bootstrap_gap_recovered(teacher, scratch + 0.5, distilled)
    with pytest.raises(ValueError, match="n_boot"):
        distill.bootstrap_gap_recovered(teacher, scratch, distilled, n_boot=0)
