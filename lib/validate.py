"""Checks for the public boundary of ``lib``: bad input fails early, with a message that names what
was expected and what was given, instead of deep inside PyTorch or NumPy (or not at all).

Every function here only *looks* at its input: none copies, converts or reorders a valid value (a
NumPy scalar becomes the equal Python number), so a validated call computes exactly what it did
before. NumPy integers and floats count as ints and numbers; ``True``/``False`` never do.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn


def describe(value: Any) -> str:
    """A short description of a bad value for an error message (a tensor by dtype and shape)."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__} {text[:77]}..."


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer, False for a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """True for a Python or NumPy int or float, False for a bool."""
    return is_int(value) or isinstance(value, (float, np.floating))


def require_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int; ``TypeError`` unless an int, ``ValueError`` outside ``[low, high]``."""
    wanted = ("a positive int" if low == 1 and high is None else "a non-negative int" if low == 0 and high is None
              else f"an int in [{low}, {high}]" if low is not None and high is not None
              else f"an int >= {low}" if low is not None else f"an int <= {high}" if high is not None else "an int")
    if not is_int(value):
        raise TypeError(f"{name} must be {wanted}, got {describe(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def require_positive_int(name: str, value: Any) -> int:
    return require_int(name, value, low=1)


def require_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                   low_open: bool = False, high_open: bool = False):
    """``value`` unchanged (a NumPy scalar as the equal Python number) if it is a real number in the
    interval; ``TypeError`` for a non-number (or a bool), ``ValueError`` for NaN, infinity or outside."""
    if low is not None or high is not None:
        interval = (("(" if low_open or low is None else "[") + ("-inf" if low is None else f"{low:g}") + ", "
                    + ("inf" if high is None else f"{high:g}") + (")" if high_open or high is None else "]"))
        wanted = {"(0, inf)": "a positive number", "[0, inf)": "a non-negative number"}.get(
            interval, f"a number in {interval}")
    else:
        wanted = "a finite number"
    if not is_number(value):
        raise TypeError(f"{name} must be {wanted}, got {describe(value)}")
    if isinstance(value, np.generic):
        value = value.item()
    bad = (not math.isfinite(value)
           or (low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high)))
    if bad:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def require_positive_number(name: str, value: Any):
    return require_number(name, value, low=0, low_open=True)


def require_probability(name: str, value: Any, one_allowed: bool = False):
    """A number in ``[0, 1)`` (a dropout rate), or ``[0, 1]`` with ``one_allowed``."""
    return require_number(name, value, low=0, high=1, high_open=not one_allowed)


def require_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


_KINDS = {"float": ("floating", torch.Tensor.is_floating_point),
          "int": ("integer", lambda t: not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool),
          "long": ("int64", lambda t: t.dtype == torch.long),
          "bool": ("bool", lambda t: t.dtype == torch.bool)}


def require_tensor(name: str, x: Any, dims: str | None = None, shape: Sequence[int | None] | None = None,
                   kind: str | None = None) -> None:
    """``x`` must be a ``torch.Tensor`` with ``len(shape)`` (or as many as ``dims`` names) dimensions,
    the given sizes where ``shape`` has an int, and of ``kind`` "float", "int", "long" or "bool".

    ``require_tensor("x", x, "batch, seq, d_model", (None, None, 16))`` raises
    ``ValueError: x must have shape (batch, seq, d_model) = (*, *, 16), got (4, 8)``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(x)}")
    names = [d.strip() for d in dims.split(",")] if dims else None
    sizes = list(shape) if shape is not None else [None] * len(names) if names else None
    if sizes is not None and (x.ndim != len(sizes) or any(s is not None and s != n for s, n in zip(sizes, x.shape))):
        wanted = "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")" if names else ""
        if any(s is not None for s in sizes) or not names:
            sized = "(" + ", ".join("*" if s is None else str(s) for s in sizes) + ("," if len(sizes) == 1 else "") + ")"
            wanted = f"{wanted} = {sized}" if names else sized
        raise ValueError(f"{name} must have shape {wanted}, got {tuple(x.shape)}")
    if kind is not None:
        label, test = _KINDS[kind]
        if not test(x):
            raise TypeError(f"{name} must be {'an' if label[0] in 'aeiou' else 'a'} {label} tensor, got {x.dtype}")


def require_labels(name: str, y: Any, n_classes: int | None = None, n: int | None = None) -> None:
    """``y`` must be class indices: a 1-D integer tensor or array (``n`` long when given), every value in
    ``[0, n_classes)`` (``>= 0`` when ``n_classes`` is None). A -1 would otherwise pick the last class
    silently, and float labels would be read as probabilities by ``F.cross_entropy``."""
    if isinstance(y, torch.Tensor):
        integer = not y.is_floating_point() and not y.is_complex() and y.dtype != torch.bool
    elif isinstance(y, np.ndarray):
        integer = np.issubdtype(y.dtype, np.integer)
    else:
        raise TypeError(f"{name} must be class indices (an integer tensor or array), got {describe(y)}")
    if not integer:
        raise TypeError(f"{name} must be integer class indices, got {y.dtype}")
    if y.ndim != 1 or (n is not None and len(y) != n):
        raise ValueError(f"{name} must have shape ({'n' if n is None else n},), got {tuple(y.shape)}")
    if n_classes is not None:
        require_int("n_classes", n_classes, 1)
    low, high = (int(y.min()), int(y.max())) if len(y) else (0, 0)
    if low < 0 or (n_classes is not None and high >= n_classes):
        where = f"in [0, {n_classes})" if n_classes is not None else ">= 0"
        hint = " (is n_classes right?)" if n_classes is not None and low >= 0 else ""
        raise ValueError(f"{name} must be class indices {where}; got [{low}, {high}]{hint}")


def require_array(name: str, x: Any, ndim: int | None = None, complex_ok: bool = False) -> np.ndarray:
    """``np.asarray(x)`` (no copy for an array) if it holds real (or, with ``complex_ok``, complex)
    numbers and has ``ndim`` dimensions."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise TypeError(f"{name} must be an array of numbers, got {describe(x)}") from e
    if arr.dtype.kind not in ("biufc" if complex_ok else "biuf"):
        raise TypeError(f"{name} must be an array of {'' if complex_ok else 'real '}numbers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


def require_finite(name: str, x: Any) -> None:
    """``ValueError`` if the tensor or array ``x`` holds NaN or infinity (saying how many)."""
    if isinstance(x, torch.Tensor):
        bad = int((~torch.isfinite(x)).sum()) if (x.is_floating_point() or x.is_complex()) else 0
    else:
        arr = np.asarray(x)
        bad = int((~np.isfinite(arr)).sum()) if arr.dtype.kind in "fc" else 0
    if bad:
        raise ValueError(f"{name} holds {bad} NaN or infinite value{'s' * (bad > 1)}; clean the data first")


def require_in_unit_interval(name: str, x: torch.Tensor) -> None:
    """``ValueError`` unless every value of ``x`` lies in [0, 1] (NaN does not)."""
    if not bool(((x >= 0) & (x <= 1)).all()):
        finite = x[torch.isfinite(x)]
        seen = f"[{float(finite.min()):g}, {float(finite.max()):g}]" if finite.numel() else "no finite value"
        raise ValueError(f"{name} must lie in [0, 1] (probabilities or pixels scaled to [0, 1]); got values in "
                         f"{seen}" + (" and NaN or infinity" if finite.numel() < x.numel() else ""))


def require_ids(name: str, ids: Any, vocab_size: int | None = None, max_len: int | None = None) -> None:
    """``ids`` must be a ``(B, T)`` int64 tensor (``TypeError``), at most ``max_len`` long and within
    ``[0, vocab_size)`` (``ValueError``)."""
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.ndim != 2:
        got = f"{ids.dtype} tensor of shape {tuple(ids.shape)}" if isinstance(ids, torch.Tensor) else describe(ids)
        raise TypeError(f"{name} must be an int64 tensor of shape (B, T); got {got}")
    if max_len is not None and ids.shape[1] > max_len:
        raise ValueError(f"{name} has length {ids.shape[1]} > max_len={max_len}")
    if vocab_size is not None and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"{name} must lie in [0, {vocab_size}); got [{int(ids.min())}, {int(ids.max())}]")


def require_texts(name: str, texts: Any) -> None:
    """A list (or tuple, or array) of strings; a bare string would be read as a list of characters."""
    if isinstance(texts, str) or not hasattr(texts, "__len__") or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{name} must be a list of strings, got {describe(texts)}")


def require_module(name: str, model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {describe(model)}")


def check_loss(loss: Any, where: str, finite: bool = True) -> None:
    """A training loss must be one (with ``finite``: finite) number. ``where`` says when, e.g.
    "epoch 3/10, batch 17".

    Raises ``FloatingPointError`` at the first NaN or infinite loss: training on would only turn
    every weight into NaN, silently.
    """
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(f"the loss must be a single number (reduce it, e.g. with .mean()); got shape "
                             f"{tuple(loss.shape)} at {where}")
        ok = not finite or bool(torch.isfinite(loss.detach()).all())
    elif is_number(loss):
        ok = not finite or math.isfinite(loss)
    else:
        raise TypeError(f"the loss must be a tensor holding one number; got {describe(loss)} at {where}")
    if not ok:
        raise FloatingPointError(f"the loss is {float(loss.detach() if isinstance(loss, torch.Tensor) else loss)} at {where}: check the data for NaN/inf and try a "
                                 "smaller learning rate (or clip_grad)")
