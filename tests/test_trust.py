"""Tests of lib.trust: DP-SGD against opacus and a per-example loop, the attack's AUC against sklearn,
FGSM/PGD against their definitions, WEAT on planted associations, the multi-task model and step."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from lib import trust
from lib.cnn import LeNet


def small(seed=0):
    torch.manual_seed(seed)
    return LeNet(channels=(4, 8), hidden=16, batchnorm=False, dropout=0.0)


def batch(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_per_example_gradients_match_a_loop():
    model, (x, y) = small(), batch(5)
    grads = trust.per_example_gradients(model, x, y)
    for i in range(5):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(grads[name][i], p.grad, atol=1e-6)


def test_dp_sgd_gradient_equals_opacus_without_noise():
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    model, (x, y) = small(), batch(16)
    ours = trust.dp_sgd_gradient(model, x, y, max_grad_norm=0.5, noise_multiplier=0.0)
    wrapped = GradSampleModule(model)
    opt = DPOptimizer(torch.optim.SGD(wrapped.parameters(), lr=0.1), noise_multiplier=0.0, max_grad_norm=0.5,
                      expected_batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F.cross_entropy(wrapped(x), y).backward()
    opt.pre_step()
    for name, p in model.named_parameters():
        assert torch.allclose(ours[name], p.grad, atol=1e-6)
    wrapped.remove_hooks()


def test_dp_sgd_noise_has_the_stated_size_and_follows_the_generator():
    model, (x, y) = small(), batch(8)
    clean = trust.dp_sgd_gradient(model, x, y, max_grad_norm=1.0, noise_multiplier=0.0)
    a = trust.dp_sgd_gradient(model, x, y, max_grad_norm=1.0, noise_multiplier=3.0, generator=torch.Generator().manual_seed(1))
    b = trust.dp_sgd_gradient(model, x, y, max_grad_norm=1.0, noise_multiplier=3.0, generator=torch.Generator().manual_seed(1))
    noise = torch.cat([(a[k] - clean[k]).flatten() for k in a]) * 8
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert abs(float(noise.std()) / 3.0 - 1) < 0.1


def test_clipping_bounds_each_contribution():
    model, (x, y) = small(), batch(1)
    g = trust.dp_sgd_gradient(model, 100 * x, y, max_grad_norm=0.01, noise_multiplier=0.0)
    assert float(torch.cat([v.flatten() for v in g.values()]).norm()) <= 0.01 + 1e-6


def test_membership_auc_equals_sklearn():
    model = small()
    members, others = batch(20, 1), batch(30, 2)
    auc = trust.membership_auc(model, members, others)
    with torch.no_grad():
        scores = [-F.cross_entropy(model(X).double(), y, reduction="none").numpy() for X, y in (members, others)]
    expected = roc_auc_score(np.r_[np.ones(20), np.zeros(30)], np.r_[scores[0], scores[1]])
    assert auc == pytest.approx(expected, abs=1e-12)


def test_train_private_spends_the_budget_and_is_deterministic():
    x, y = batch(40)
    m1, sigma, spent = trust.train_private(small(), x, y, epsilon=4.0, delta=1e-3, epochs=2, batch_size=10, seed=3)
    m2, _, _ = trust.train_private(small(), x, y, epsilon=4.0, delta=1e-3, epochs=2, batch_size=10, seed=3)
    assert sigma > 0 and spent <= 4.0 * 1.01
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert type(m1) is LeNet      # the plain model, opacus' hooks removed
    assert not any(mod._forward_hooks or mod._backward_hooks for mod in m1.modules())


def test_train_private_without_noise_is_clipped_sgd_with_no_budget():
    x, y = batch(40)
    m1, sigma, spent = trust.train_private(small(), x, y, epsilon=None, delta=1e-3, epochs=2, batch_size=10, seed=3)
    m2, _, _ = trust.train_private(small(), x, y, epsilon=1.0, delta=1e-3, epochs=2, batch_size=10, seed=3)
    assert sigma == 0.0 and spent == float("inf")
    assert not all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))   # noise changed the model


def test_fgsm_is_one_pgd_step_and_stays_in_the_box():
    model, (x, y) = small(), batch(6)
    a = trust.fgsm(model, x, y, 0.1)
    assert torch.allclose(a, trust.pgd(model, x, y, 0.1, steps=1, alpha=0.1), atol=1e-7)
    p = trust.pgd(model, x, y, 0.1, steps=5, generator=torch.Generator().manual_seed(0))
    assert float((p - x).abs().max()) <= 0.1 + 1e-6 and p.min() >= 0 and p.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(a), y) >= F.cross_entropy(model(x), y)


def test_adversarial_step_perturbs_only_in_training():
    model, (x, y) = small(), batch(6)
    step = trust.adversarial_step(0.2, steps=2)
    model.eval()
    clean = step(model, (x, y))
    assert float(clean["loss"].detach()) == pytest.approx(float(F.cross_entropy(model(x), y).detach()))
    model.train()
    assert float(step(model, (x, y))["loss"]) > float(clean["loss"])


def test_weat_finds_a_planted_association():
    g = torch.Generator().manual_seed(0)
    a_dir, b_dir = torch.randn(16, generator=g), torch.randn(16, generator=g)
    noise = lambda n: 0.3 * torch.randn(n, 16, generator=g)
    X, Y = a_dir + noise(8), b_dir + noise(8)
    A, B = a_dir + noise(8), b_dir + noise(8)
    effect, p = trust.weat(X, Y, A, B, permutations=500)
    assert effect > 1.5 and p < 0.01
    effect_swapped, p_swapped = trust.weat(Y, X, A, B, permutations=500)
    assert effect_swapped == pytest.approx(-effect) and p_swapped > 0.99


def test_two_heads_and_step():
    model = trust.TwoHeads(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), 10, 10, 2)
    x, y = batch(4)
    out1, out2 = model(x)
    assert out1.shape == (4, 10) and out2.shape == (4, 2)
    y2 = y % 2
    logs = trust.two_task_step(0.5)(model, (x, y, y2))
    expected = F.cross_entropy(out1, y) + 0.5 * F.cross_entropy(out2, y2)
    assert float(logs["loss"]) == pytest.approx(float(expected))


def test_bad_inputs():
    model, (x, y) = small(), batch(4)
    with pytest.raises(ValueError, match="int64 class indices"):
        trust.fgsm(model, x, y.float(), 0.1)
    with pytest.raises(ValueError, match="eps"):
        trust.pgd(model, x, y, -0.1)
    with pytest.raises(ValueError, match="max_grad_norm"):
        trust.dp_sgd_gradient(model, x, y, max_grad_norm=0.0, noise_multiplier=1.0)
    with pytest.raises(TypeError, match="model"):
        trust.membership_auc("model", (x, y), (x, y))
    with pytest.raises(ValueError, match="embeddings"):
        trust.weat(torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, 4))
