"""The course's one training engine: ``fit``, ``evaluate`` and ``predict`` for any ``nn.Module``.

``fit`` is the only optimizer loop in the library (the from-scratch optimizers of chapters 01–02
aside). What changes from chapter to chapter is the *step*: a function ``step(model, batch) -> dict``
that computes the loss of one batch. The default, ``supervised_step(loss_fn)``, reads a batch as
``(*inputs, target)`` and computes ``loss_fn(model(*inputs), target)`` (and accuracy for
classification); distillation, masked-language-model pretraining, the autoencoder and the VAE supply
steps of their own, and ``fit`` does the rest the same way for all of them: device, gradient
clipping, mixed precision, learning-rate schedule, validation, early stopping, checkpoints, the
``History``.

A step returns ``{"loss": scalar tensor, "n": weight, **logs}``: ``loss`` is what gets
differentiated; ``n`` (optional, default: the batch's length) weighs the batch in the epoch's means;
every other entry (a number or a 0-d tensor) is logged, as ``train_<name>`` and ``val_<name>``.

Also here: ``eval_mode`` (one context manager for evaluation mode) and ``count_parameters``. The
recipes built on ``fit`` (learning-rate schedules, the optimizer, ``train_classifier``) live in
``lib.recipes``; checkpoints in ``lib.checkpoint``.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lib.checkpoint import save_checkpoint
from lib.device import model_device, resolve_device
from lib.validate import (check_loss, describe, is_number, require_bool, require_module, require_positive_int,
                          require_positive_number)

Step = Callable[[nn.Module, Any], dict]


# --------------------------------------------------------------------------- History
@dataclass
class History:
    """What a ``fit`` run recorded.

    ``history["train_loss"]`` is a list with one value per epoch (the epoch's mean, weighted by each
    batch's ``n``); so are ``train_<log>``, ``val_<log>``, ``grad_norm`` (largest norm before
    clipping) and ``lr`` (at the epoch's end). ``history.steps["train_loss"]`` (and every other
    ``train_<log>``, and ``lr``) holds one value per optimizer step, for curves finer than an epoch.
    ``best_epoch`` is the index of the epoch with the lowest validation (else training) loss.
    """
    records: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None

    def log(self, **values: float) -> None:
        """Append one epoch's values."""
        for key, value in values.items():
            self.records.setdefault(key, []).append(float(value))

    def log_step(self, **values: float) -> None:
        """Append one optimizer step's values."""
        for key, value in values.items():
            self.steps.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        if key not in self.records:
            hint = f" (per-step records are in .steps: {sorted(self.steps)})" if key in self.steps else ""
            raise KeyError(f"no record {key!r} in this History; it has {sorted(self.records)}{hint}")
        return self.records[key]

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        """Number of epochs recorded."""
        return len(next(iter(self.records.values()), []))

    def last(self, key: str) -> float:
        return self[key][-1]

    def plot(self, ax=None, title: str = "Training history"):
        """Loss curves per epoch (and accuracy on a second axis when recorded); returns the axes."""
        from lib.plot import plot_history

        return plot_history(self, ax=ax, title=title)


# --------------------------------------------------------------------------- modes, devices, sizes
@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """``with eval_mode(model):`` runs the block with ``model.eval()`` (dropout off, batch norm on its
    running statistics) and restores the previous mode afterwards, even if the block raises."""
    require_module("model", model)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (with ``trainable_only``: those with ``requires_grad``).

    Shared parameters (one tensor used twice, e.g. tied embeddings) are counted once."""
    require_module("model", model)
    require_bool("trainable_only", trainable_only)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model`` that ``requires_grad`` (what an optimizer should update);
    ``ValueError`` when there are none (everything frozen)."""
    require_module("model", model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all frozen?)")
    return params


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (also inside tuples, lists and dicts) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch


# --------------------------------------------------------------------------- steps
def split_batch(batch: Any) -> tuple[list, torch.Tensor]:
    """``(inputs, target)`` of a supervised batch ``(*inputs, target)``, checked."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        got = describe(batch) if not isinstance(batch, (tuple, list)) else f"{len(batch)} item"
        raise ValueError("each batch must be a tuple (*inputs, target), as lib.data.make_loader(X, y) yields; "
                         f"got {got}")
    *inputs, target = batch
    if not isinstance(target, torch.Tensor) or target.ndim == 0:
        raise ValueError(f"the target (last item of each batch) must be a tensor with a batch dimension; "
                         f"got {describe(target)}")
    return inputs, target


def accuracy_of(output: torch.Tensor, target: torch.Tensor) -> float | None:
    """Share of rows of ``output: (batch, classes)`` whose arg-max is ``target: (batch,)``; ``None``
    unless that is what output and target are (a regression, a sequence model)."""
    if output.ndim == 2 and target.ndim == 1 and not target.is_floating_point():
        return float((output.detach().argmax(dim=1) == target).float().mean())
    return None


def supervised_step(loss_fn: Callable | None = None,
                    augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Step:
    """The default step: ``loss_fn(model(*inputs), target)`` on a batch ``(*inputs, target)``.

    Logs ``accuracy`` when the output is ``(batch, classes)`` and the target ``(batch,)`` class
    indices. ``augment`` transforms the first input of training batches (never in evaluation)."""
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(output, target), got {describe(loss_fn)}")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be a function of a batch of inputs, got {describe(augment)}")

    def step(model: nn.Module, batch) -> dict:
        inputs, target = split_batch(batch)
        if augment is not None and model.training:
            inputs = [augment(inputs[0]), *inputs[1:]]
        output = model(*inputs)
        result = {"loss": loss_fn(output, target), "n": len(target)}
        accuracy = accuracy_of(output, target)
        if accuracy is not None:
            result["accuracy"] = accuracy
        return result

    return step


def _run_step(step: Step, model: nn.Module, batch, where: str, finite: bool = True) -> tuple[torch.Tensor, float, dict]:
    """Call ``step``; return ``(loss, n, logs as floats)``, with clear errors for a malformed result."""
    result = step(model, batch)
    if not isinstance(result, dict) or "loss" not in result:
        raise TypeError(f"a step must return a dict with a 'loss' entry, got {describe(result)}")
    loss = result["loss"]
    check_loss(loss, where, finite=finite)
    n = result.get("n")
    if n is None:
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        n = len(first) if hasattr(first, "__len__") else 1
    if not is_number(n) or n < 0:
        raise ValueError(f"the step's 'n' (the batch's weight) must be a number >= 0, got {n!r}")
    logs = {"loss": float(loss.detach())}
    for key, value in result.items():
        if key not in ("loss", "n"):
            logs[key] = float(value.detach() if isinstance(value, torch.Tensor) else value)
    return loss, float(n), logs


class _Means:
    """Running means of a step's logs, each weighted by the batch's ``n``."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weight = 0.0

    def add(self, n: float, logs: dict[str, float]) -> None:
        self.weight += n
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value * n

    def means(self) -> dict[str, float]:
        return {key: total / self.weight if self.weight else math.nan for key, total in self.sums.items()}


# --------------------------------------------------------------------------- evaluation
def _batches(loader: Iterable, name: str) -> Iterable:
    if not hasattr(loader, "__iter__"):
        raise TypeError(f"{name} must be an iterable of batches (a DataLoader), got {describe(loader)}")
    return loader


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None, device=None, *,
             step: Step | None = None) -> dict[str, float]:
    """Means of ``step``'s loss and logs over ``loader`` in evaluation mode (weighted by each batch's ``n``).

    By default the step is ``supervised_step(loss_fn)`` (cross-entropy): ``{"loss", "accuracy"}`` for
    classification. ``device`` defaults to the model's (``lib.device.model_device``)."""
    step = _choose_step(step, loss_fn)
    device = model_device(model) if device is None else resolve_device(device)
    means = _Means()
    with eval_mode(model):
        for i, batch in enumerate(_batches(loader, "loader")):
            _, n, logs = _run_step(step, model, to_device(batch, device), f"evaluation batch {i + 1}", finite=False)
            means.add(n, logs)
    if not means.sums:
        raise ValueError("the loader yielded no batches")
    return means.means()


@torch.no_grad()
def predict(model: nn.Module, data, device=None, *, batch_size: int = 512,
            forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``model``'s outputs over ``data``, concatenated on the CPU, in evaluation mode.

    ``data`` is a loader of batches ``(*inputs, target)`` (targets are ignored; the model is called as
    ``model(*inputs)``) or a tensor ``X: (n, ...)``, cut into batches of ``batch_size`` rows.
    ``forward(model, x)`` replaces ``model(x)`` (e.g. ``lambda m, x: m.features(x)``).
    ``device`` defaults to the model's."""
    require_module("model", model)
    if forward is not None and not callable(forward):
        raise TypeError(f"forward must be a function forward(model, x), got {describe(forward)}")
    device = model_device(model) if device is None else resolve_device(device)
    call = (lambda *xs: model(*xs)) if forward is None else (lambda *xs: forward(model, *xs))
    if isinstance(data, torch.Tensor):
        require_positive_int("batch_size", batch_size)
        if not len(data):
            raise ValueError("the tensor to predict on is empty")
        batches = [(xb,) for xb in data.split(batch_size)]
    else:
        batches = (split_batch(batch)[0] for batch in _batches(data, "data"))
    with eval_mode(model):
        outs = [call(*to_device(list(inputs), device)).cpu() for inputs in batches]
    if not outs:
        raise ValueError("the loader yielded no batches")
    return torch.cat(outs)


def _choose_step(step: Step | None, loss_fn: Callable | None) -> Step:
    if step is not None and loss_fn is not None:
        raise ValueError("give either step or loss_fn, not both: a custom step computes its own loss")
    if step is not None and not callable(step):
        raise TypeError(f"step must be a function step(model, batch) -> dict, got {describe(step)}")
    return step if step is not None else supervised_step(loss_fn)


# --------------------------------------------------------------------------- the loop
def fit(model: nn.Module, train_loader: Iterable, *, epochs: int, step: Step | None = None,
        loss_fn: Callable | None = None, optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        schedule: Callable[[int, int], float] | None = None, scheduler=None, scheduler_interval: str = "epoch",
        val_loader: Iterable | None = None, device=None, clip_grad: float | None = None, amp: bool = False,
        patience: int | None = None, restore_best: bool = True, checkpoint: str | Path | None = None,
        progress: bool = True) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader``; returns a ``History``.

    - ``step(model, batch) -> {"loss", "n", **logs}`` computes one batch's loss (see the module's
      docstring); by default ``supervised_step(loss_fn)``, with ``loss_fn`` cross-entropy by default.
    - ``optimizer`` defaults to AdamW with learning rate ``lr`` and no weight decay (for weight decay
      use ``lib.recipes.adamw``, which spares biases and norms).
    - ``schedule``: a function ``factor(step, total_steps)`` (``lib.recipes.cosine``, ``warmup_cosine(0.05)``, ...)
      applied at every optimizer step. Or ``scheduler``, a ``torch.optim.lr_scheduler`` built on
      ``optimizer``, stepped every ``scheduler_interval`` ("epoch" or "step").
    - ``clip_grad``: clip the global gradient norm to this value (the largest norm is recorded as ``grad_norm``).
    - ``amp``: mixed precision (float16 autocast with gradient scaling) on CUDA; ignored elsewhere.
    - ``val_loader``: ``evaluate`` with the same step after each epoch (``val_<log>``); with
      ``patience``, stop when the validation loss has not improved for that many epochs. With
      ``restore_best`` (the default) the weights of the epoch with the lowest validation loss are put
      back at the end whenever there is a ``val_loader``, early stopping or not.
    - ``checkpoint``: a path where the best (without validation: the latest best training loss)
      weights and optimizer state are saved (``lib.checkpoint``).

    The global random generators are used as they are (dropout, a loader without its own generator):
    seed them first with ``lib.device.seed_everything``, or run ``fit`` in ``lib.device.seeded(seed)``.
    A NaN or infinite training loss stops training at once with ``FloatingPointError`` (naming the
    epoch and batch): the next step would make every weight NaN.
    """
    require_module("model", model)
    epochs = require_positive_int("epochs", epochs)
    step = _choose_step(step, loss_fn)
    if optimizer is None:
        require_positive_number("lr", lr)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {describe(optimizer)}")
    if clip_grad is not None and not (is_number(clip_grad) and clip_grad > 0 and clip_grad == clip_grad):
        raise ValueError(f"clip_grad must be a positive number or None, got {clip_grad!r}")
    if patience is not None:
        require_positive_int("patience", patience)
        if val_loader is None:
            raise ValueError("early stopping (patience) needs a val_loader")
    if schedule is not None and scheduler is not None:
        raise ValueError("give either schedule (a function of the step) or scheduler (a torch scheduler), not both")
    if schedule is not None and not callable(schedule):
        raise TypeError(f"schedule must be a function factor(step, total_steps), got {describe(schedule)}")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"scheduler must have a step() method (a torch.optim.lr_scheduler), got {describe(scheduler)}")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    for name, flag in (("amp", amp), ("restore_best", restore_best), ("progress", progress)):
        require_bool(name, flag)
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path (str or pathlib.Path) or None, got {describe(checkpoint)}")
    _batches(train_loader, "train_loader")
    device = resolve_device(device)
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.AdamW(trainable_parameters(model), lr=lr, weight_decay=0.0)
    if schedule is not None:
        total = epochs * len(train_loader) if hasattr(train_loader, "__len__") else None
        if not total:
            raise ValueError("a schedule needs a train_loader with a length (len(train_loader) batches an epoch)")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule(s, total))
        scheduler_interval = "step"
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history = History()
    best_loss, best_state, waited = float("inf"), None, 0

    bar = tqdm(range(epochs), desc="epochs", disable=not progress)
    for epoch in bar:
        model.train()
        means, grad_norm = _Means(), 0.0
        for i, batch in enumerate(train_loader):
            batch = to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                loss, n, logs = _run_step(step, model, batch, f"epoch {epoch + 1}/{epochs}, batch {i + 1}")
            scaler.scale(loss).backward()
            if clip_grad is not None:
                scaler.unscale_(optimizer)
                grad_norm = max(grad_norm, float(nn.utils.clip_grad_norm_(model.parameters(), clip_grad)))
            scaler.step(optimizer)
            scaler.update()
            history.log_step(lr=optimizer.param_groups[0]["lr"], **{f"train_{k}": v for k, v in logs.items()})
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            means.add(n, logs)
        if not means.sums:
            raise ValueError("train_loader yielded no batches (an empty dataset, or drop_last=True with "
                             "batch_size larger than the dataset)")
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        record = {f"train_{k}": v for k, v in means.means().items()}
        if clip_grad is not None:
            record["grad_norm"] = grad_norm
        if val_loader is not None:
            record.update({f"val_{k}": v for k, v in evaluate(model, val_loader, device=device, step=step).items()})
        record["lr"] = optimizer.param_groups[0]["lr"]
        history.log(**record)
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k.endswith("loss")})

        current = record.get("val_loss", record["train_loss"])
        if current < best_loss:
            best_loss, waited, history.best_epoch = current, 0, epoch
            if val_loader is not None and restore_best:
                best_state = copy.deepcopy(model.state_dict())
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, epoch=epoch, loss=current)
        else:
            waited += 1
            if patience is not None and waited >= patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
