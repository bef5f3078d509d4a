"""GGUF's 4-bit format Q4_1, from scratch, and the tensors of chapter 12's model file.

A Q4_1 tensor is cut into **blocks of 32 consecutive weights**. Each block stores a scale ``d`` and a
minimum ``m`` (two float16 numbers, 4 bytes) and 32 integers ``q`` in 0..15 (4 bits each, 16 bytes):
20 bytes for 32 weights, 5 bits a weight instead of float32's 32. Weight ``i`` of a block is
``d * q_i + m``. Byte ``j`` of the 16 holds weight ``j`` in its low four bits and weight ``j + 16`` in its
high four bits. Quantizing a block picks ``m = min``, ``d = (max - min) / 15`` and ``q`` the nearest level
(``trunc((w - m) / d + 0.5)``), as llama.cpp and the ``gguf`` package do.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from lib.validate import describe, require_array

BLOCK = 32                 # weights per block
BLOCK_BYTES = 20           # 2 (d) + 2 (m) + 16 (32 four-bit integers)


@lru_cache(maxsize=2)
def _reader(path: str):
    from gguf import GGUFReader

    return GGUFReader(path)


def gguf_tensor(path: str | Path, name: str) -> tuple[np.ndarray, str, tuple[int, ...]]:
    """The raw stored bytes (or float array) of tensor ``name`` in a GGUF file, its type name (``"Q4_1"``,
    ``"Q8_0"``, ``"F32"``) and its PyTorch shape ``(rows, columns)``. A Q4_1 tensor's bytes are
    ``(rows, columns / 32 * 20)`` uint8."""
    for t in _reader(str(path)).tensors:
        if t.name == name:
            return np.asarray(t.data), t.tensor_type.name, tuple(int(n) for n in reversed(t.shape))
    raise KeyError(f"no tensor named {name!r} in {Path(path).name}")


def gguf_tensor_types(path: str | Path) -> dict[str, int]:
    """How many tensors of each type the file holds, e.g. ``{"Q4_1": 210, "F32": 61, "Q8_0": 1}``."""
    counts: dict[str, int] = {}
    for t in _reader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _blocks(raw: np.ndarray) -> np.ndarray:
    raw = require_array("raw", raw)
    if raw.dtype != np.uint8 or raw.shape[-1] % BLOCK_BYTES:
        raise ValueError(f"raw must be uint8 bytes of Q4_1 blocks (last axis a multiple of {BLOCK_BYTES}); "
                         f"got {raw.dtype} {raw.shape}")
    return raw.reshape(-1, BLOCK_BYTES)


def q4_1_fields(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split Q4_1 bytes into ``d, m: (n_blocks,)`` float32 and ``q: (n_blocks, 32)`` uint8 levels 0..15."""
    blocks = _blocks(raw)
    d = blocks[:, 0:2].copy().view(np.float16)[:, 0].astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16)[:, 0].astype(np.float32)
    packed = blocks[:, 4:]
    return d, m, np.concatenate([packed & 0x0F, packed >> 4], axis=1)


def dequantize_q4_1(raw: np.ndarray) -> np.ndarray:
    """Q4_1 bytes ``(..., k * 20)`` -> float32 weights ``(..., k * 32)``: ``d * q + m``, block by block."""
    d, m, q = q4_1_fields(raw)
    return (d[:, None] * q + m[:, None]).reshape(*raw.shape[:-1], -1)


def quantize_q4_1(w: np.ndarray) -> np.ndarray:
    """float weights ``(..., k * 32)`` -> Q4_1 bytes ``(..., k * 20)`` (llama.cpp's rounding)."""
    w = require_array("w", w)
    if w.ndim < 1 or w.shape[-1] % BLOCK:
        raise ValueError(f"w's last axis must be a multiple of {BLOCK}; got shape {w.shape}")
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"w must hold floats, got {describe(w)} of {w.dtype}")
    blocks = w.astype(np.float32).reshape(-1, BLOCK)
    lo, hi = blocks.min(1, keepdims=True), blocks.max(1, keepdims=True)
    d = (hi - lo) / 15
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.trunc((blocks - lo) * inv + np.float32(0.5)).astype(np.uint8).clip(0, 15)
    packed = q[:, :16] | (q[:, 16:] << 4)
    out = np.concatenate([d.astype(np.float16).view(np.uint8), lo.astype(np.float16).view(np.uint8), packed], axis=1)
    return out.reshape(*w.shape[:-1], -1)
