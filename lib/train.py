"""The course's training loop: ``fit`` and ``evaluate`` for any ``nn.Module`` and ``DataLoader``.

Batches are tuples ``(*inputs, target)``; the model is called as ``model(*inputs)`` and the loss as
``loss_fn(output, target)``. Accuracy is recorded whenever the output is ``(batch, classes)`` and
the target ``(batch,)`` class indices. Checkpoints are written atomically and read back with
``torch.load(..., weights_only=True)``, so a checkpoint can never run code when it is loaded.
"""
from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lib.device import get_device

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
        return self.records[key]

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def last(self, key: str) -> float:
        return self.records[key][-1]

    def plot(self, ax=None, title: str = "Training history"):
        """Loss curves (and accuracy on a second axis when recorded); returns the axes."""
        from lib.plot import plot_history

        return plot_history(self, ax=ax, title=title)


def _accuracy_count(output: torch.Tensor, target: torch.Tensor) -> int | None:
    if output.ndim == 2 and target.ndim == 1 and not target.is_floating_point():
        return int((output.argmax(dim=1) == target).sum())
    return None


def _to(batch, device: torch.device):
    return [t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch]


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, loss_fn: Callable = F.cross_entropy,
             device: torch.device | None = None) -> dict[str, float]:
    """Mean loss over the loader (weighted by batch size) and, for classification, accuracy."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    has_accuracy = True
    for batch in loader:
        *inputs, target = _to(batch, device)
        output = model(*inputs)
        n = target.shape[0]
        loss_sum += float(loss_fn(output, target)) * n
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
    """Concatenated model outputs over the loader (targets, the last item of each batch, are ignored)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = [model(*_to(batch, device)[:-1]).cpu() for batch in loader]
    model.train(was_training)
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
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if patience is not None and val_loader is None:
        raise ValueError("early stopping (patience) needs a val_loader")
    device = torch.device(device) if device is not None else get_device()
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
        for batch in train_loader:
            *inputs, target = _to(batch, device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                output = model(*inputs)
                loss = loss_fn(output, target)
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
def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    **extra: int | float | str) -> None:
    """Save model (and optimizer) state atomically: write a temporary file, then rename it.

    An interrupted save (crash, full disk, Ctrl-C) leaves any previous checkpoint at ``path`` intact.
    ``extra`` holds plain numbers and strings (epoch, loss, a note) — nothing that needs pickle.
    """
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


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``).

    Uses ``weights_only=True``: only tensors and plain containers are read, never arbitrary code.
    A missing, truncated or foreign file raises ``ValueError`` saying so. Returns the ``extra`` dict.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types for a bad file (EOFError, KeyError, ...)
        raise ValueError(f"{path} is not a readable checkpoint (truncated or not written by "
                         f"lib.train.save_checkpoint): {type(e).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a course checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        if "optimizer" not in payload:
            raise ValueError(f"{path} holds no optimizer state")
        optimizer.load_state_dict(payload["optimizer"])
    return payload["extra"]
