"""Checkpoints: a model's (and optimizer's) state written atomically and read back safely.

``save_checkpoint`` writes a temporary file and renames it, so an interrupted save never destroys the
previous checkpoint. ``load_checkpoint`` reads with ``torch.load(..., weights_only=True)``, so a
checkpoint can never run code when it is loaded, and checks that everything fits before loading
anything. ``lib.train.fit(checkpoint=path)`` uses both.
"""
from __future__ import annotations

import pickle
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.data import atomic_write
from lib.device import require_device
from lib.validate import describe, require_module

CHECKPOINT_FORMAT = "course-checkpoint-v1"


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
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
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
                "custom classes): it was not written by lib.checkpoint.save_checkpoint")
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
