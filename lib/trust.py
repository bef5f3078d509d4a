"""Chapter 13: trustworthy models, measured — privacy, robustness, bias probes and multi-task learning.

- **Privacy**: ``per_example_gradients`` and ``dp_sgd_gradient`` (DP-SGD from scratch: clip each
  example's gradient, sum, add Gaussian noise, average); ``train_private`` trains through
  ``lib.train.fit`` with opacus' ``GradSampleModule`` and ``DPOptimizer`` and reports the ε spent by
  its RDP accountant; ``membership_auc`` is the loss-threshold membership-inference attack.
- **Robustness**: ``fgsm`` and ``pgd`` adversarial examples (images in [0, 1]), ``adversarial_step``
  a ``fit`` step that trains on PGD examples.
- **Bias probe**: ``weat`` (Caliskan et al.'s association test) on embeddings, with a permutation p-value.
- **Multi-task**: ``TwoHeads`` (a shared encoder and two linear heads) and ``two_task_step``.

The fairness metrics and integrated gradients are written in the notebook and checked there against
``fairlearn`` and ``captum``.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.validate import require_int, require_module, require_number, require_tensor

__all__ = ["per_example_gradients", "dp_sgd_gradient", "train_private", "membership_auc",
           "fgsm", "pgd", "adversarial_step", "weat", "TwoHeads", "two_task_step"]


def _require_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    require_tensor("x", x)
    require_tensor("y", y)
    if y.ndim != 1 or y.dtype != torch.long or len(x) != len(y):
        raise ValueError(f"need y: (batch,) int64 class indices as long as x; got y {tuple(y.shape)} {y.dtype} "
                         f"for x {tuple(x.shape)}")


# --------------------------------------------------------------------------- privacy
def per_example_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradient of each example's cross-entropy, ``{name: (batch, *param.shape)}``, by ``torch.func``
    (``vmap`` of ``grad`` over the batch: one backward pass, no Python loop). The model must treat
    examples independently (no batch norm, dropout off)."""
    require_module("model", model)
    _require_batch(x, y)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def loss_of(p, xi, yi):
        out = torch.func.functional_call(model, p, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(loss_of), in_dims=(None, 0, 0))(params, x, y)


def dp_sgd_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, max_grad_norm: float,
                    noise_multiplier: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """DP-SGD's gradient for one batch (Abadi et al., 2016): each example's gradient ``g_i`` (all
    parameters together) is scaled to norm at most ``C = max_grad_norm``, the clipped gradients are
    summed, Gaussian noise of standard deviation ``noise_multiplier * C`` is added to every
    coordinate, and the sum is divided by the batch size. Returns ``{name: param.shape}``."""
    require_number("max_grad_norm", max_grad_norm, low=0, low_open=True)
    require_number("noise_multiplier", noise_multiplier, low=0)
    grads = per_example_gradients(model, x, y)
    norms = torch.cat([g.flatten(1) for g in grads.values()], dim=1).norm(dim=1)       # (batch,)
    scale = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)                            # opacus' formula
    out = {}
    for name, g in grads.items():
        total = torch.einsum("b,b...->...", scale, g)
        noise = torch.randn(total.shape, generator=generator).to(total.device)         # drawn on the CPU
        out[name] = (total + noise_multiplier * max_grad_norm * noise) / len(x)
    return out


def train_private(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epsilon: float | None, delta: float,
                  epochs: int, batch_size: int = 64, lr: float = 0.5, max_grad_norm: float = 1.0,
                  seed: int = 0, device=None) -> tuple[nn.Module, float, float]:
    """Train ``model`` with DP-SGD (SGD with momentum 0.9) through ``lib.train.fit``, using opacus'
    per-example gradients (``GradSampleModule``), clipping and noise (``DPOptimizer``).

    The noise multiplier is the smallest one for which opacus' RDP accountant bounds the privacy loss
    by ``(epsilon, delta)`` after ``epochs`` passes with sampling rate ``batch_size / len(X)``.
    ``epsilon=None`` trains with the same recipe and clipping but no noise (no privacy: the reference).
    Batches are shuffled, not Poisson-sampled as the accountant assumes: the usual approximation, so the
    reported epsilon is the accountant's figure for Poisson sampling, not a proof for this loader.
    Returns ``(model, noise_multiplier, epsilon spent)`` (``inf`` without noise); the model trained in
    place is returned.
    """
    from opacus import GradSampleModule
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.optimizers import DPOptimizer

    from lib.data import make_loader
    from lib.device import seeded
    from lib.train import fit

    require_module("model", model)
    _require_batch(X, y)
    if epsilon is not None:
        require_number("epsilon", epsilon, low=0, low_open=True)
    require_number("delta", delta, low=0, low_open=True, high=1)
    epochs = require_int("epochs", epochs, 1)
    batch_size = require_int("batch_size", batch_size, 1)
    rate = batch_size / len(X)
    sigma = 0.0 if epsilon is None else get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                                             sample_rate=rate, epochs=epochs, accountant="rdp")
    with seeded(seed):
        private = GradSampleModule(model)
        optimizer = DPOptimizer(torch.optim.SGD(private.parameters(), lr=lr, momentum=0.9),
                                noise_multiplier=sigma, max_grad_norm=max_grad_norm,
                                expected_batch_size=batch_size)
        loader = make_loader(X, y, batch_size=batch_size, shuffle=True, seed=seed)
        with warnings.catch_warnings():  # opacus' hooks warn when the input needs no gradient: harmless here
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            fit(private, loader, epochs=epochs, optimizer=optimizer, device=device, progress=False)
    private.remove_hooks()      # the plain model again (its parameters were trained in place)
    if sigma == 0:
        return model, 0.0, float("inf")
    accountant = RDPAccountant()
    accountant.history.append((sigma, rate, epochs * len(loader)))
    return model, float(sigma), float(accountant.get_epsilon(delta))


@torch.no_grad()
def membership_auc(model: nn.Module, members: tuple, others: tuple) -> float:
    """The loss-threshold membership-inference attack (Yeom et al., 2018): score each example by its
    negative cross-entropy (a training example tends to have a lower loss) and return the ROC AUC of
    telling ``members = (X, y)`` from ``others = (X, y)``: 0.5 is chance, 1 a perfect attacker.
    The AUC is the Mann-Whitney statistic, ties counting one half."""
    from lib.train import eval_mode

    scores = []
    for X, y in (members, others):
        _require_batch(X, y)
        with eval_mode(model):
            scores.append(-F.cross_entropy(model(X).double(), y, reduction="none").cpu())
    a, b = scores
    greater = (a[:, None] > b[None, :]).double().mean()
    ties = (a[:, None] == b[None, :]).double().mean()
    return float(greater + 0.5 * ties)


# --------------------------------------------------------------------------- robustness
def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, x)[0]


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The fast gradient sign method (Goodfellow et al., 2015): ``clamp(x + eps * sign(dL/dx), 0, 1)``,
    one step up the loss of the true labels ``y`` in the L-infinity ball of radius ``eps``."""
    require_module("model", model)
    _require_batch(x, y)
    require_number("eps", eps, low=0)
    return (x + eps * _input_gradient(model, x, y).sign()).clamp(0, 1).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 10,
        alpha: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018): from a uniform random start in the
    L-infinity ball of radius ``eps`` (none when ``generator`` is None), ``steps`` FGSM steps of size
    ``alpha`` (default ``2.5 eps / steps``), each projected back into the ball and into [0, 1]."""
    require_module("model", model)
    _require_batch(x, y)
    require_number("eps", eps, low=0)
    steps = require_int("steps", steps, 1)
    alpha = 2.5 * eps / steps if alpha is None else require_number("alpha", alpha, low=0)
    adv = x.detach()
    if generator is not None:
        adv = (adv + (2 * torch.rand(x.shape, generator=generator) - 1).to(x.device) * eps).clamp(0, 1)
    for _ in range(steps):
        adv = adv + alpha * _input_gradient(model, adv, y).sign()
        adv = torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(0, 1).detach()
    return adv


def adversarial_step(eps: float, steps: int = 3) -> Callable:
    """A ``fit`` step that trains on PGD examples of radius ``eps`` (no random start), made with the
    model in evaluation mode, then scored in training mode (Madry et al.'s adversarial training)."""
    from lib.train import accuracy_of, eval_mode

    def step(model: nn.Module, batch) -> dict:
        x, y = batch
        if model.training:
            with eval_mode(model):
                x = pgd(model, x, y, eps, steps=steps)
        out = model(x)
        return {"loss": F.cross_entropy(out, y), "n": len(y), "accuracy": accuracy_of(out, y)}

    return step


# --------------------------------------------------------------------------- bias probe
def weat(X: torch.Tensor, Y: torch.Tensor, A: torch.Tensor, B: torch.Tensor, *, permutations: int = 2000,
         seed: int = 0) -> tuple[float, float]:
    """The Word Embedding Association Test (Caliskan, Bryson & Narayanan, 2017) on embeddings
    ``(n_words, dim)`` of two target sets ``X``, ``Y`` and two attribute sets ``A``, ``B``.

    ``s(w) = mean cos(w, A) - mean cos(w, B)``; the effect size is
    ``(mean_X s - mean_Y s) / std_{X ∪ Y} s`` (about -2 to 2), and the one-sided p-value is the share
    of ``permutations`` random equal-size re-splits of ``X ∪ Y`` whose statistic
    ``sum_X s - sum_Y s`` is at least the observed one. Returns ``(effect size, p-value)``.
    """
    for name, t in (("X", X), ("Y", Y), ("A", A), ("B", B)):
        require_tensor(name, t)
        if t.ndim != 2 or t.shape[1] != X.shape[1] or len(t) < 2:
            raise ValueError(f"{name} must be (n_words >= 2, {X.shape[1]}) embeddings, got {tuple(t.shape)}")
    permutations = require_int("permutations", permutations, 1)
    unit = [F.normalize(t.double(), dim=1) for t in (X, Y, A, B)]
    x, y, a, b = unit
    s = torch.cat([x, y]) @ a.T
    s = s.mean(1) - (torch.cat([x, y]) @ b.T).mean(1)
    n = len(x)
    effect = float((s[:n].mean() - s[n:].mean()) / s.std())
    observed = s[:n].sum() - s[n:].sum()
    rng = np.random.default_rng(seed)
    order = torch.as_tensor(np.stack([rng.permutation(len(s)) for _ in range(permutations)]), device=s.device)
    stats = s[order[:, :n]].sum(1) - s[order[:, n:]].sum(1)
    return effect, float((stats >= observed - 1e-12).double().mean())


# --------------------------------------------------------------------------- multi-task
class TwoHeads(nn.Module):
    """A shared ``encoder`` (inputs -> ``(batch, features)``) and two linear heads:
    ``forward(x) -> (logits of task 1 (batch, n1), logits of task 2 (batch, n2))``."""

    def __init__(self, encoder: nn.Module, features: int, n1: int, n2: int) -> None:
        super().__init__()
        require_module("encoder", encoder)
        for name, v in (("features", features), ("n1", n1), ("n2", n2)):
            require_int(name, v, 1)
        self.encoder = encoder
        self.head1, self.head2 = nn.Linear(features, n1), nn.Linear(features, n2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.head1(h), self.head2(h)


def two_task_step(weight: float = 1.0) -> Callable:
    """A ``fit`` step for batches ``(x, y1, y2)`` and a model returning two logits: the loss is
    ``CE(task 1) + weight * CE(task 2)``; logs both accuracies."""
    require_number("weight", weight, low=0)

    def step(model: nn.Module, batch) -> dict:
        x, y1, y2 = batch
        out1, out2 = model(x)
        loss = F.cross_entropy(out1, y1) + weight * F.cross_entropy(out2, y2)
        return {"loss": loss, "n": len(y1), "accuracy": float((out1.argmax(1) == y1).float().mean()),
                "accuracy2": float((out2.argmax(1) == y2).float().mean())}

    return step
