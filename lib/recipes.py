"""Recipes on top of ``lib.train.fit``: learning-rate schedules, the optimizer, the classifier recipe.

- Schedules are plain functions ``factor(step, total_steps)`` of the optimizer step, as in nanoGPT:
  ``constant``, ``cosine``, ``warmup_cosine(warmup)``, ``one_cycle(...)``. ``fit(schedule=...)``
  applies one at every step.
- ``adamw``: AdamW with weight decay on matrices only (nanoGPT's rule); frozen parameters left out.
- ``class_weights``: "balanced" per-class weights for an imbalanced training set.
- ``train_classifier``: the course's recipe for classifiers (chapters 03, 04, 09), with optional
  augmentation, class weights, validation and soft targets (distillation).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lib.train import History, accuracy_of, fit, supervised_step, trainable_parameters
from lib.validate import (describe, require_int, require_labels, require_module, require_number, require_positive_number,
                          require_probability)


# --------------------------------------------------------------------------- learning-rate schedules
# A schedule is a plain function ``factor(step, total_steps)``: the learning rate of optimizer step
# ``step`` (0, 1, ..., total_steps - 1) is ``lr * factor``. ``fit(schedule=...)`` applies it every step.
def constant(step: int, total: int) -> float:
    """The learning rate as given, throughout."""
    return 1.0


def cosine(step: int, total: int) -> float:
    """Half a cosine from 1 down to 0 over the run (SGDR without restarts)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total))))


def warmup_cosine(warmup: float = 0.05) -> Callable[[int, int], float]:
    """A linear warm-up over the first ``warmup`` share of the steps, then cosine decay to 0.

    The warm-up lets Adam's moment estimates settle before the largest steps are taken (BERT, GPT)."""
    require_number("warmup", warmup, low=0, high=1, high_open=True)

    def schedule(step: int, total: int) -> float:
        warm = max(1, int(warmup * total))
        if step < warm:
            return (step + 1) / warm
        return cosine(step - warm, max(1, total - warm))

    schedule.__name__ = f"warmup_cosine({warmup})"
    return schedule


def one_cycle(peak: float = 0.3, start: float = 1 / 25, end: float = 1e-4) -> Callable[[int, int], float]:
    """Smith's one-cycle policy for the learning rate: from ``start`` up to 1 (cosine) over the first
    ``peak`` share of the steps, then down to ``end`` (cosine). Factors of the peak learning rate."""
    require_number("peak", peak, low=0, high=1, low_open=True, high_open=True)
    require_positive_number("start", start)
    require_positive_number("end", end)

    def schedule(step: int, total: int) -> float:
        up = max(1, int(peak * total))
        if step < up:
            return start + (1.0 - start) * (1.0 - cosine(step, up))
        return end + (1.0 - end) * cosine(step - up, max(1, total - 1 - up))

    schedule.__name__ = f"one_cycle({peak})"
    return schedule


# --------------------------------------------------------------------------- optimizer recipe
def adamw(model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0,
          betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters, with weight decay on matrices only (nanoGPT's rule).

    Weight decay pulls weights towards 0; that regularises the weights of linear maps, convolutions
    and embeddings (2 or more dimensions), but pulling biases and normalisation scales towards 0 only
    hurts, so those (1 dimension) get none. Frozen parameters (``requires_grad=False``) are left out.
    """
    require_module("model", model)
    require_positive_number("lr", lr)
    require_number("weight_decay", weight_decay, low=0)
    params = trainable_parameters(model)
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


# --------------------------------------------------------------------------- the classifier recipe
def class_weights(y: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """"Balanced" class weights ``n / (num_classes * count_c)`` for labels ``y: (n,)``.

    A class seen half as often gets twice the weight, so each class contributes equally to the
    weighted loss (same formula as scikit-learn's ``class_weight="balanced"``).
    """
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    require_labels("y", y)
    if not y.size:
        raise ValueError("y is empty: there are no classes to weight")
    if num_classes is not None and require_int("num_classes", num_classes, 1) <= y.max():
        raise ValueError(f"num_classes={num_classes} but y holds class {y.max()}")
    k = int(num_classes or y.max() + 1)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    if np.any(counts == 0):
        raise ValueError(f"every class needs at least one example; counts are {counts.astype(int).tolist()}")
    return (len(y) / (k * counts)).astype(np.float32)


def cross_entropy_loss(*, class_weight=None, label_smoothing: float = 0.0) -> Callable:
    """``loss_fn(logits, target)``: cross-entropy with optional per-class weights ``(k,)`` (e.g.
    ``class_weights(y)``, so each class counts equally) and label smoothing; the weights follow the
    logits to their device."""
    require_probability("label_smoothing", label_smoothing, one_allowed=True)
    weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = None if weight is None else weight.to(output.device)
        return F.cross_entropy(output, target, weight=w, label_smoothing=label_smoothing)

    return loss_fn


def train_classifier(model: nn.Module, X, y, *, epochs: int, lr: float = 1e-3, batch_size: int = 32,
                     weight_decay: float = 1e-4, label_smoothing: float = 0.1,
                     schedule: Callable[[int, int], float] = cosine,
                     augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     val: tuple | None = None, patience: int | None = None, class_weight=None,
                     soft_targets: torch.Tensor | None = None, soft_loss: Callable | None = None,
                     batch_sampler=None, seed: int = 0, device=None, progress: bool = True) -> History:
    """The course's recipe for classifiers: ``fit`` with ``adamw`` (weight decay on matrices only), a
    learning-rate ``schedule`` stepped every batch (cosine decay by default), and cross-entropy with
    label smoothing (targets ``1 - eps`` / ``eps / k`` instead of 1 / 0, so the network is not pushed
    to ever larger logits). ``X: (n, ...)`` inputs (or a tuple of them, for a model that takes several:
    ``model(*inputs)``), ``y: (n,)`` class indices. Returns the ``History``.

    - ``augment``: a function applied to each training batch of inputs (e.g. ``lib.cnn.ShiftAugment``);
      validation and the trained model see unaugmented inputs.
    - ``val``: ``(X_val, y_val)`` for validation curves; with ``patience``, early stopping.
    - ``class_weight``: per-class loss weights ``(k,)`` (see ``class_weights``).
    - ``soft_targets: (n, ...)`` with ``soft_loss(output, y, soft_targets)``: train on a loss that also
      sees a per-example tensor, such as a teacher's logits (``lib.distill.distillation``).
    - ``batch_sampler``: yields each epoch's batches of row indices (e.g. names of similar length
      together) instead of shuffled batches of ``batch_size``.
    - ``seed`` fixes everything random in the run: the batch order, the augmentation (when it draws
      from the global generator) and dropout. It is used inside ``lib.device.seeded``, so the
      caller's random state is left as it was. Seed the model's initial weights yourself.
    """
    from lib.data import make_loader
    from lib.device import seeded

    require_module("model", model)
    require_int("seed", seed, 0)
    require_probability("label_smoothing", label_smoothing, one_allowed=True)
    require_number("weight_decay", weight_decay, low=0)
    inputs = tuple(X) if isinstance(X, (tuple, list)) else (X,)
    if not inputs or any(len(x) != len(y) for x in inputs):
        raise ValueError(f"X (each input) and y must have the same length; got {[len(x) for x in inputs]} and {len(y)}")
    require_labels("y", y if isinstance(y, (torch.Tensor, np.ndarray)) else np.asarray(y))
    if val is not None and (not isinstance(val, (tuple, list)) or len(val) != 2):
        raise ValueError(f"val must be a pair (X_val, y_val), got {describe(val)}")
    if (soft_targets is None) != (soft_loss is None):
        raise ValueError("soft_targets and soft_loss go together: soft_loss(output, y, soft_targets) is the loss")
    if soft_targets is not None:
        if not callable(soft_loss):
            raise TypeError(f"soft_loss must be a function soft_loss(output, y, soft_targets), got {describe(soft_loss)}")
        if len(inputs) != 1:
            raise ValueError("soft_targets need a model with one input X")
        if len(soft_targets) != len(y):
            raise ValueError(f"soft_targets must have one row per example ({len(y)}); got {len(soft_targets)}")
        if val is not None:
            raise ValueError("validation with soft_targets is not supported: validate the trained model with evaluate")
    if soft_targets is None:
        step = supervised_step(cross_entropy_loss(class_weight=class_weight, label_smoothing=label_smoothing), augment)
        arrays = (*inputs, y)
    else:
        def step(model: nn.Module, batch) -> dict:
            x, soft, target = batch
            if augment is not None and model.training:
                x = augment(x)
            output = model(x)
            return {"loss": soft_loss(output, target, soft), "n": len(target),
                    "accuracy": accuracy_of(output, target)}
        arrays = (*inputs, soft_targets, y)
    val_loader = None if val is None else make_loader(*val, batch_size=512)
    with seeded(seed):
        optimizer = adamw(model, lr, weight_decay)
        loader = make_loader(*arrays, batch_size=batch_size, shuffle=True, seed=seed)
        if batch_sampler is not None:
            loader = DataLoader(loader.dataset, batch_sampler=batch_sampler)
        return fit(model, loader, epochs=epochs, step=step, optimizer=optimizer, schedule=schedule,
                   val_loader=val_loader, patience=patience, device=device, progress=progress)
