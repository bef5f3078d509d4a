"""The course's training loop: ``fit`` and ``evaluate`` for any ``nn.Module`` and ``DataLoader``.

Batches are tuples ``(*inputs, target)``; the model is called as ``model(*inputs)`` and the loss as
``loss_fn(output, target)``. Accuracy is recorded whenever the output is ``(batch, classes)`` and
the target ``(batch,)`` class indices. Checkpoints are written atomically and read back with
``torch.load(..., weights_only=True)``, so a checkpoint can never run code when it is loaded.
"""
from __future__ import annotations

import copy
import os
import pickle
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lib.validate import (check_loss, describe, is_number, model_device, require_bool, require_device,
                          require_module, require_positive_int, require_positive_number, resolve_device)

CHECKPOINT_FORMAT = "course-checkpoint-v1"


@dataclass
class History:
    """Per-epoch records of a ``fit`` run: ``history["train_loss"]`` is a list with one value an epoch."""
    records: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None

    def log(self, **values: float) -> None:
        for key, value in values.items():
            self.records.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        if key not in self.records:
            raise KeyError(f"no record {key!r} in this History; it has {sorted(self.records)}")
        return self.records[key]

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def last(self, key: str) -> float:
        return self[key][-1]

    def plot(self, ax=None, title: str = "Training history"):
        """Loss curves (and accuracy on a second axis when recorded); returns the axes."""
        from lib.plot import plot_history

        return plot_history(self, ax=ax, title=title)


def _accuracy_count(output: torch.Tensor, target: torch.Tensor) -> int | None:
    if output.ndim == 2 and target.ndim == 1 and not target.is_floating_point():
        return int((output.argmax(dim=1) == target).sum())
    return None


def _to(batch, device: torch.device, target: bool = True):
    """The batch's items on ``device``. A batch is a tuple ``(*inputs, target)``: at least two items,
    the target a tensor with a batch dimension (``target=False``: the last item is ignored)."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("each batch must be a tuple (*inputs, target), as lib.data.make_loader(X, y) yields; "
                         f"got {describe(batch) if not isinstance(batch, (tuple, list)) else f'{len(batch)} item'}")
    if target and (not isinstance(batch[-1], torch.Tensor) or batch[-1].ndim == 0):
        raise ValueError(f"the target (last item of each batch) must be a tensor with a batch dimension; "
                         f"got {describe(batch[-1])}")
    return [t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch]


def _check_loss_fn(loss_fn) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(output, target), got {describe(loss_fn)}")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, loss_fn: Callable = F.cross_entropy,
             device: torch.device | None = None) -> dict[str, float]:
    """Mean loss over the loader (weighted by batch size) and, for classification, accuracy.

    ``device`` defaults to the model's (``lib.validate.model_device``: a model without parameters or
    buffers runs on the CPU)."""
    _check_loss_fn(loss_fn)
    device = device or model_device(model)
    was_training = model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    has_accuracy = True
    for batch in loader:
        *inputs, target = _to(batch, device)
        output = model(*inputs)
        n = target.shape[0]
        loss = loss_fn(output, target)
        check_loss(loss, "evaluate", finite=False)
        loss_sum += float(loss) * n
        total += n
        count = _accuracy_count(output, target)
        has_accuracy = has_accuracy and count is not None
        correct += count or 0
    model.train(was_training)
    if total == 0:
        raise ValueError("the loader yielded no batches")
    result = {"loss": loss_sum / total}
    if has_accuracy:
        result["accuracy"] = correct / total
    return result


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device | None = None) -> torch.Tensor:
    """Concatenated model outputs over the loader (targets, the last item of each batch, are ignored).

    ``device`` defaults to the model's, as in ``evaluate``."""
    device = device or model_device(model)
    was_training = model.training
    model.eval()
    outs = [model(*_to(batch, device, target=False)[:-1]).cpu() for batch in loader]
    model.train(was_training)
    if not outs:
        raise ValueError("the loader yielded no batches")
    return torch.cat(outs)


def fit(model: nn.Module, train_loader: DataLoader, *, epochs: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        loss_fn: Callable = F.cross_entropy, val_loader: DataLoader | None = None,
        device: torch.device | str | None = None, clip_grad: float | None = None,
        scheduler=None, amp: bool = False, patience: int | None = None,
        restore_best: bool = True, checkpoint: str | Path | None = None,
        progress: bool = True) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader``; returns a ``History``.

    - ``optimizer`` defaults to Adam with learning rate ``lr``; ``scheduler`` is stepped once an epoch.
    - ``clip_grad``: clip the global gradient norm to this value (recorded as ``grad_norm``).
    - ``amp``: mixed precision (float16 autocast with gradient scaling) on CUDA; ignored elsewhere.
    - With ``val_loader``: validation loss/accuracy each epoch; with ``patience`` training stops
      when validation loss has not improved for that many epochs (early stopping), and with
      ``restore_best`` the best epoch's weights are put back at the end.
    - ``checkpoint``: a path where the best (or, without validation, the latest) weights are saved.

    A NaN or infinite training loss stops training at once with ``FloatingPointError`` (naming the
    epoch and batch): the next step would make every weight NaN.
    """
    require_module("model", model)
    epochs = require_positive_int("epochs", epochs)
    if optimizer is None:
        require_positive_number("lr", lr)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {describe(optimizer)}")
    _check_loss_fn(loss_fn)
    if clip_grad is not None and not (is_number(clip_grad) and clip_grad > 0 and clip_grad == clip_grad):
        raise ValueError(f"clip_grad must be a positive number or None, got {clip_grad!r}")
    if patience is not None:
        require_positive_int("patience", patience)
    if patience is not None and val_loader is None:
        raise ValueError("early stopping (patience) needs a val_loader")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"scheduler must have a step() method (a torch.optim.lr_scheduler), got {describe(scheduler)}")
    for name, flag in (("amp", amp), ("restore_best", restore_best), ("progress", progress)):
        require_bool(name, flag)
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path (str or pathlib.Path) or None, got {describe(checkpoint)}")
    device = resolve_device(device)
    model.to(device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history = History()
    best_loss, best_state, waited = float("inf"), None, 0

    bar = tqdm(range(epochs), desc="epochs", disable=not progress)
    for epoch in bar:
        model.train()
        total, loss_sum, correct, grad_norm = 0, 0.0, 0, 0.0
        has_accuracy = True
        for i, batch in enumerate(train_loader):
            *inputs, target = _to(batch, device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                output = model(*inputs)
                loss = loss_fn(output, target)
            check_loss(loss, f"epoch {epoch + 1}/{epochs}, batch {i + 1}")
            scaler.scale(loss).backward()
            if clip_grad is not None:
                scaler.unscale_(optimizer)
                grad_norm = max(grad_norm, float(nn.utils.clip_grad_norm_(model.parameters(), clip_grad)))
            scaler.step(optimizer)
            scaler.update()
            n = target.shape[0]
            total += n
            loss_sum += float(loss.detach()) * n
            count = _accuracy_count(output.detach(), target)
            has_accuracy = has_accuracy and count is not None
            correct += count or 0
        if total == 0:
            raise ValueError("train_loader yielded no batches (an empty dataset, or drop_last=True with "
                             "batch_size larger than the dataset)")
        if scheduler is not None:
            scheduler.step()
        record = {"train_loss": loss_sum / total}
        if has_accuracy:
            record["train_accuracy"] = correct / total
        if clip_grad is not None:
            record["grad_norm"] = grad_norm
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn, device)
            record.update({f"val_{k}": v for k, v in val.items()})
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


# --------------------------------------------------------------------------- checkpoints
def _plain(value, where: str):
    """``value`` with NumPy scalars turned into Python ones; ``TypeError`` for anything that
    ``torch.load(..., weights_only=True)`` would refuse (so that no unreadable checkpoint is written)."""
    if isinstance(value, np.generic) and not isinstance(value, np.void):
        return value.item()  # np.float64(0.5) -> 0.5: NumPy scalars need pickle to be read back
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return value
    if type(value) in (list, tuple):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    if type(value) is dict and all(type(k) is str for k in value):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    hint = " (convert it with .tolist())" if isinstance(value, np.ndarray) else ""
    raise TypeError(f"{where} must be a plain value (int, float, str, bool, None, a tensor, or a list/tuple/"
                    f"dict of them) so that the checkpoint can be read with weights_only=True; got "
                    f"{type(value).__module__}.{type(value).__name__}{hint}")


def _remove_stale_temporaries(path: Path, before: float) -> None:
    """Delete temporaries of ``path`` left by a save that was killed (``kill -9``, power loss) before
    its ``finally`` could run: files named like ours, last written before this save started."""
    pattern = re.compile(re.escape(path.name) + r"\.[a-z0-9_]{8}\.tmp")
    for candidate in path.parent.iterdir():
        if pattern.fullmatch(candidate.name):
            try:
                if candidate.stat().st_mtime < before:
                    candidate.unlink()
            except FileNotFoundError:  # another process cleaned it up first
                pass


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    **extra: int | float | str) -> None:
    """Save model (and optimizer) state atomically: write a temporary file, then rename it.

    An interrupted save (crash, full disk, Ctrl-C) leaves any previous checkpoint at ``path`` intact;
    a temporary left behind by a killed save is removed by the next successful save.
    ``extra`` holds plain numbers and strings (epoch, loss, a note) — nothing that needs pickle;
    NumPy scalars are stored as the equal Python numbers, anything else unreadable raises ``TypeError``.
    """
    started = time.time()
    require_module("model", model)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {describe(optimizer)}")
    extra = {key: _plain(value, f"extra {key!r}") for key, value in extra.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "extra": dict(extra)}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _remove_stale_temporaries(path, started)


# optimizer state entries that have the shape of their parameter (SGD, Adam/AdamW, RMSprop, Adagrad, ...)
_PARAMETER_SHAPED_STATE = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg",
                           "acc_delta", "sum", "grad_avg")


def _check_model_state(path: Path, model: nn.Module, state) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no model state dict")
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
             if k in state and isinstance(own[k], torch.Tensor)
             and (not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape)]
    if missing or unexpected or wrong:
        problems = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                    f"shapes differ: {'; '.join(wrong)}" if wrong else ""]
        raise ValueError(f"{path} does not fit this {type(model).__name__} (nothing was loaded): "
                         + ", ".join(p for p in problems if p))


def _check_optimizer_state(path: Path, optimizer: torch.optim.Optimizer, state) -> None:
    if not isinstance(state, dict) or not {"state", "param_groups"} <= set(state):
        raise ValueError(f"{path} holds no valid optimizer state")
    groups, saved = optimizer.param_groups, state["param_groups"]
    if len(groups) != len(saved) or any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved)):
        raise ValueError(f"{path}: the optimizer state has groups of {[len(s['params']) for s in saved]} parameters, "
                         f"this optimizer {[len(g['params']) for g in groups]} (nothing was loaded)")
    params = {i: p for s, g in zip(saved, groups) for i, p in zip(s["params"], g["params"])}
    for i, entry in state["state"].items():
        for key, value in entry.items() if isinstance(entry, dict) else ():
            if (key in _PARAMETER_SHAPED_STATE and i in params and isinstance(value, torch.Tensor)
                    and value.shape != params[i].shape):
                raise ValueError(f"{path}: optimizer state {key!r} has shape {tuple(value.shape)}, its parameter "
                                 f"{tuple(params[i].shape)} (nothing was loaded)")


def _read_failure(path: Path, e: Exception) -> str:
    """Why ``torch.load`` failed, without guessing: truncation only when the file says so."""
    if isinstance(e, pickle.UnpicklingError):
        return ("it holds objects that torch.load(weights_only=True) refuses to read (e.g. NumPy values or "
                "custom classes): it was not written by lib.train.save_checkpoint")
    if isinstance(e, EOFError) or "central directory" in str(e) or "PytorchStreamReader" in str(e):
        return "the file is truncated, or not a file written by torch.save"
    return f"torch.load failed with {type(e).__name__}: {e}"


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``).

    Uses ``weights_only=True``: only tensors and plain containers are read, never arbitrary code.
    A missing file raises ``FileNotFoundError``; an unreadable or foreign one, or one that does not fit
    ``model``/``optimizer``, raises ``ValueError`` saying why — and then nothing has been loaded.
    Returns the ``extra`` dict.
    """
    require_module("model", model)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {describe(optimizer)}")
    if isinstance(map_location, (str, torch.device)):
        require_device("map_location", map_location)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types for a bad file (EOFError, KeyError, ...)
        raise ValueError(f"{path} is not a readable checkpoint: {_read_failure(path, e)}") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a course checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    # everything is checked before anything is loaded: a failure never leaves the model half-restored
    _check_model_state(path, model, payload.get("model"))
    if optimizer is not None:
        if "optimizer" not in payload:
            raise ValueError(f"{path} holds no optimizer state")
        _check_optimizer_state(path, optimizer, payload["optimizer"])
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    return payload["extra"]
