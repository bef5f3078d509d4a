"""Convolutional networks (chapter 04): convolution and pooling from scratch, a LeNet for digits.

- ``conv2d_loops`` / ``conv2d_im2col`` / ``max_pool2d``: the operations written out, equal to
  ``torch.nn.functional.conv2d`` / ``max_pool2d`` (stride, padding, several channels).
- ``LeNet``: a small LeNet-style CNN for 8x8 digits; chapter 09 uses it as the teacher.
- ``shift_images`` / ``random_shift``: move images by whole pixels (zero fill) — the light
  augmentation used to train ``LeNet`` and the shift-robustness experiment.
- ``keras_lenet``: the same network in Keras (imported lazily).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.train import History
from lib.validate import describe, is_int, require_array, require_int, require_probability, require_tensor


# --------------------------------------------------------------------------- from scratch (NumPy)
def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v) if isinstance(v, (tuple, list)) else ()
    if len(pair) != 2 or not all(is_int(p) for p in pair):
        raise TypeError(f"{name} must be an int or a pair of ints; got {v!r}")
    return int(pair[0]), int(pair[1])


def _check_conv_args(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride, padding):
    x, w = require_array("x", x, complex_ok=True), require_array("w", w, complex_ok=True)
    if b is not None:
        require_array("b", b, complex_ok=True)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (batch, C_in, H, W); got {x.shape}")
    if w.ndim != 4 or w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (C_out, C_in={x.shape[1]}, kh, kw); got {w.shape}")
    if b is not None and np.shape(b) != (w.shape[0],):
        raise ValueError(f"b must have shape ({w.shape[0]},); got {np.shape(b)}")
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"stride must be >= 1 and padding >= 0; got stride={stride}, padding={padding}")
    h_out = (x.shape[2] + 2 * ph - w.shape[2]) // sh + 1
    w_out = (x.shape[3] + 2 * pw - w.shape[3]) // sw + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"kernel {w.shape[2:]} does not fit the padded input {x.shape[2:]}")
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # zero padding, as F.conv2d
    return x, w, (sh, sw), (h_out, w_out)


def conv2d_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0) -> np.ndarray:
    """2-D convolution (really cross-correlation, as in every DL framework) with explicit loops.

    ``x: (batch, C_in, H, W)``, ``w: (C_out, C_in, kh, kw)``, ``b: (C_out,)`` ->
    ``(batch, C_out, H_out, W_out)`` with ``H_out = (H + 2*padding - kh) // stride + 1``.
    Every output value is the dot product of the kernel with the window under it. Slow: for
    teaching and testing only.
    """
    x, w, (sh, sw), (h_out, w_out) = _check_conv_args(x, w, b, stride, padding)
    kh, kw = w.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], h_out, w_out), dtype=np.result_type(x, w))
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            for i in range(h_out):
                for j in range(w_out):
                    window = x[n, :, i * sh:i * sh + kh, j * sw:j * sw + kw]  # (C_in, kh, kw)
                    out[n, o, i, j] = np.sum(window * w[o])
    return out if b is None else out + np.asarray(b)[None, :, None, None]


def im2col(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Unfold the windows of an already padded ``x: (batch, C, H, W)`` into columns:
    ``(batch, C*kh*kw, H_out*W_out)``, row order ``(c, di, dj)`` as in ``torch.nn.functional.unfold``.

    Loops over the ``kh*kw`` kernel offsets only (not over output positions): offset ``(di, dj)``
    picks the strided sub-image ``x[:, :, di::sh, dj::sw]``, which holds that offset's pixel of
    every window at once.
    """
    (sh, sw), (h_out, w_out) = stride, out_hw
    batch, c = x.shape[:2]
    cols = np.empty((batch, c, kh, kw, h_out, w_out), dtype=x.dtype)
    for di in range(kh):
        for dj in range(kw):
            cols[:, :, di, dj] = x[:, :, di:di + sh * h_out:sh, dj:dj + sw * w_out:sw]
    return cols.reshape(batch, c * kh * kw, h_out * w_out)


def conv2d_im2col(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0) -> np.ndarray:
    """The same convolution as ``conv2d_loops`` as ONE matrix product: ``W (C_out, C_in*kh*kw)``
    times the columns ``(C_in*kh*kw, H_out*W_out)`` of every image. This is how fast libraries
    turn convolution into a matrix multiply (GEMM). Returns ``(batch, C_out, H_out, W_out)``.
    """
    x, w, stride, (h_out, w_out) = _check_conv_args(x, w, b, stride, padding)
    cols = im2col(x, w.shape[2], w.shape[3], stride, (h_out, w_out))
    out = np.einsum("ok,nkp->nop", w.reshape(w.shape[0], -1), cols, optimize=True)
    out = out.reshape(x.shape[0], w.shape[0], h_out, w_out)
    return out if b is None else out + np.asarray(b)[None, :, None, None]


def max_pool2d(x: np.ndarray, kernel_size: int | tuple[int, int] = 2,
               stride: int | tuple[int, int] | None = None) -> np.ndarray:
    """Max-pooling of ``x: (batch, C, H, W)``: the largest value of each ``kernel_size`` window,
    windows ``stride`` apart (default: ``kernel_size``, i.e. non-overlapping), no padding.
    Returns ``(batch, C, H_out, W_out)``, equal to ``torch.nn.functional.max_pool2d``.
    """
    x = require_array("x", x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (batch, C, H, W); got {x.shape}")
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
    if min(kh, kw, sh, sw) < 1 or kh > x.shape[2] or kw > x.shape[3]:
        raise ValueError(f"need 1 <= kernel_size <= input size and stride >= 1; got kernel "
                         f"{(kh, kw)}, stride {(sh, sw)}, input {x.shape[2:]}")
    h_out, w_out = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    # start below every value: -inf for floats, the smallest value for integers and bools
    lowest = -np.inf if x.dtype.kind == "f" else False if x.dtype.kind == "b" else np.iinfo(x.dtype).min
    out = np.full(x.shape[:2] + (h_out, w_out), lowest, dtype=x.dtype)
    for di in range(kh):  # the max over offsets, each offset's pixels of all windows at once
        for dj in range(kw):
            out = np.maximum(out, x[:, :, di:di + sh * h_out:sh, dj:dj + sw * w_out:sw])
    return out


# --------------------------------------------------------------------------- the network
class LeNet(nn.Module):
    """A LeNet-style CNN for 8x8 digits: two conv blocks, then a small classifier.

    ``x: (batch, 1, 8, 8)`` float in [0, 1] -> logits ``(batch, num_classes)``.

    conv 3x3 (pad 1) -> BN -> ReLU -> max-pool 2   (8x8 -> 4x4)
    conv 3x3 (pad 1) -> BN -> ReLU -> max-pool 2   (4x4 -> 2x2)
    flatten -> linear ``hidden`` -> ReLU -> dropout -> linear ``num_classes``

    ``channels``, ``hidden``, ``dropout`` and ``batchnorm`` make it easy to build smaller or larger
    variants (e.g. the students of chapter 09).
    """

    def __init__(self, num_classes: int = 10, channels: tuple[int, int] = (32, 64), hidden: int = 128,
                 dropout: float = 0.25, batchnorm: bool = True) -> None:
        super().__init__()
        require_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if (not isinstance(channels, (tuple, list)) or len(channels) != 2
                or not all(is_int(c) and c >= 1 for c in channels)):
            raise ValueError(f"channels must be two positive ints, got {channels!r}")
        require_int("hidden", hidden, 1)
        require_probability("dropout", dropout)
        c1, c2 = channels

        def block(c_in: int, c_out: int) -> nn.Sequential:
            norm = nn.BatchNorm2d(c_out) if batchnorm else nn.Identity()
            # a conv followed by batchnorm needs no bias: BN's shift plays that role
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm), norm,
                                 nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(1, c1), block(c1, c2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 2 * 2, hidden), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    @staticmethod
    def _check_input(x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LeNet expects a torch.Tensor of shape (batch, 1, 8, 8); got {describe(x)}")
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"LeNet expects x of shape (batch, 1, 8, 8); got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"LeNet expects floating pixels in [0, 1]; got {x.dtype}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.classifier(self.features(x))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each conv block's ReLU: ``[(batch, c1, 8, 8), (batch, c2, 4, 4)]``."""
        self._check_input(x)
        maps, h = [], x
        for block in self.features:
            h = block[2](block[1](block[0](h)))  # conv -> norm -> ReLU
            maps.append(h)
            h = block[3](h)
        return maps


# --------------------------------------------------------------------------- augmentation
def shift_images(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move every image in ``x: (..., H, W)`` by ``dy`` rows down and ``dx`` columns right.

    Pixels shifted out are lost; pixels shifted in are 0 (the background of the digits).
    """
    require_tensor("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., H, W); got shape {tuple(x.shape)}")
    require_int("dy", dy)
    require_int("dx", dx)
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"shift ({dy}, {dx}) must be smaller than the image ({h}, {w})")
    out = torch.zeros_like(x)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def random_shift(x: torch.Tensor, max_shift: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image of ``x: (batch, C, H, W)`` by its own random ``(dy, dx)`` in
    ``[-max_shift, max_shift]`` (zero fill). The light augmentation used to train ``LeNet``.

    Implemented by padding once and cropping a random window per image, so it costs one gather.
    ``generator`` (a CPU ``torch.Generator``) makes the shifts reproducible.
    """
    require_tensor("x", x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (batch, C, H, W); got {tuple(x.shape)}")
    _check_max_shift(max_shift)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    if max_shift == 0:
        return x.clone()
    b, c, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    offsets = torch.randint(0, 2 * s + 1, (2, b), generator=generator).to(x.device)
    rows = (offsets[0][:, None] + torch.arange(h, device=x.device))  # (b, h)
    cols = (offsets[1][:, None] + torch.arange(w, device=x.device))  # (b, w)
    idx_b = torch.arange(b, device=x.device)[:, None, None, None]
    idx_c = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[idx_b, idx_c, rows[:, None, :, None], cols[:, None, None, :]]


def _check_max_shift(max_shift: int) -> None:
    if not is_int(max_shift) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")


class ShiftAugment(nn.Module):
    """``random_shift`` as a layer that acts only in training mode (identity in ``eval()``)."""

    def __init__(self, max_shift: int = 1, seed: int = 0) -> None:
        super().__init__()
        _check_max_shift(max_shift)
        require_int("seed", seed, 0)
        self.max_shift = max_shift
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return random_shift(x, self.max_shift, self.generator) if self.training else x


def train_lenet(X: np.ndarray, y: np.ndarray, *, epochs: int = 40, max_shift: int = 1, seed: int = 0,
                lr: float = 3e-3, batch_size: int = 64, val: tuple[np.ndarray, np.ndarray] | None = None,
                progress: bool = True, **lenet_kwargs) -> tuple[LeNet, History]:
    """Train a fresh ``LeNet`` the chapter-04 way: random shifts of up to ``max_shift`` pixels,
    AdamW + cosine schedule + label smoothing (``lib.recipes.train_classifier``).

    ``X: (n, 1, 8, 8)`` in [0, 1], ``y: (n,)``. Returns the trained model (in ``eval()`` mode) and
    its ``History``. The same ``seed`` gives the same initial weights, batches and shifts, whatever
    ran before (``lib.device.seeded``).
    """
    from lib.device import seeded
    from lib.recipes import train_classifier

    if not isinstance(X, (np.ndarray, torch.Tensor)):
        raise TypeError(f"X must be a NumPy array or tensor of shape (n, 1, 8, 8); got {describe(X)}")
    if X.ndim != 4 or tuple(X.shape[1:]) != (1, 8, 8):
        raise ValueError(f"X must have shape (n, 1, 8, 8); got {tuple(X.shape)}")
    _check_max_shift(max_shift)
    require_int("seed", seed, 0)
    with seeded(seed):
        model = LeNet(**lenet_kwargs)
    history = train_classifier(model, X, y, epochs=epochs, lr=lr, batch_size=batch_size,
                               augment=ShiftAugment(max_shift, seed) if max_shift else None,
                               val=val, seed=seed, progress=progress)
    return model.eval(), history


# --------------------------------------------------------------------------- Keras
def keras_lenet(num_classes: int = 10, channels: tuple[int, int] = (32, 64), hidden: int = 128,
                dropout: float = 0.25, max_shift: int = 1, shift_seed: int = 0, bn_momentum: float = 0.99,
                bn_epsilon: float = 1e-3, name: str = "lenet"):
    """The Keras twin of ``LeNet`` for channels-last images ``(batch, 8, 8, 1)``; returns logits.

    ``max_shift > 0`` puts a ``RandomTranslation`` layer first (active only in training), the
    Keras counterpart of ``random_shift``: nearest-pixel moves of up to ``max_shift`` pixels,
    zero fill, its draws seeded by ``shift_seed``. ``dropout=0`` leaves the dropout layer out.
    ``bn_momentum``/``bn_epsilon`` are Keras' batch-norm defaults; PyTorch's are 0.9 and 1e-5 (Keras'
    momentum counts what is kept, PyTorch's what is replaced). Initial weights and dropout come from
    Keras' global generator: call ``lib.device.seed_everything`` first.
    """
    from lib.keras_models import load_keras

    keras = load_keras()
    L = keras.layers
    layers = [keras.Input(shape=(8, 8, 1))]
    if max_shift:
        f = max_shift / 8
        layers.append(L.RandomTranslation(f, f, fill_mode="constant", interpolation="nearest", seed=shift_seed))
    for c in channels:
        layers += [L.Conv2D(c, 3, padding="same", use_bias=False),
                   L.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon), L.ReLU(), L.MaxPooling2D(2)]
    layers += [L.Flatten(), L.Dense(hidden, activation="relu")] + ([L.Dropout(dropout)] if dropout else [])
    return keras.Sequential(layers + [L.Dense(num_classes)], name=name)
