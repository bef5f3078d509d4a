"""Multilayer perceptrons (chapter 03): from scratch in NumPy, as an ``nn.Module``, and in Keras.

- ``softmax`` / ``cross_entropy``: numerically stable, NumPy.
- ``NumpyMLP``: fully connected ReLU network with a hand-written backward pass and SGD.
- ``MLP``: the same architecture in PyTorch (``MLP.from_numpy`` copies a ``NumpyMLP``'s weights).
- ``keras_mlp``: the classic Keras ``Sequential`` MLP, made correct for 8x8 digits.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from lib.validate import (describe, is_int, require_array, require_finite, require_int, require_labels, require_number,
                          require_positive_int, require_positive_number, require_probability)


# --------------------------------------------------------------------------- NumPy building blocks
def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``z: (n, k)``. Subtracting the row maximum avoids overflow in ``exp``."""
    z = require_array("z", z, ndim=2)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of integer labels ``y: (n,)`` under ``softmax(logits: (n, k))``.

    Computed with log-sum-exp, never as ``log(softmax)``, which gives ``log(0) = -inf`` for
    confident wrong answers.
    """
    logits, y = np.asarray(logits), np.asarray(y)
    _check_labels(logits, y)
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def _check_labels(logits: np.ndarray, y: np.ndarray) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (n, classes); got {logits.shape}")
    require_labels("y", y, n_classes=logits.shape[1], n=logits.shape[0])


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__") or not all(is_int(s) for s in sizes):
        raise TypeError(f"sizes must be a sequence of ints (input, hidden..., output); got {sizes!r}")
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least input and output width, all positive; got {sizes}")
    return sizes


class NumpyMLP:
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``, ReLU between layers.

    Parameters live in ``self.params`` as ``W0, b0, W1, b1, ...`` with ``W_l: (sizes[l], sizes[l+1])``
    so that a layer is ``h @ W + b`` on ``h: (n, sizes[l])``. Weights start with He initialisation
    (``std = sqrt(2 / fan_in)``), which keeps the activations' scale through ReLU layers.
    """

    def __init__(self, sizes: Sequence[int] = (64, 128, 10), seed: int = 0, dtype=np.float64) -> None:
        self.sizes = _check_sizes(sizes)
        require_int("seed", seed, 0)
        rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            self.params[f"W{l}"] = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
            self.params[f"b{l}"] = np.zeros(n_out, dtype=dtype)
        self._cache: list[np.ndarray] = []

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Logits ``(n, sizes[-1])`` for ``X: (n, sizes[0])``; keeps each layer's input for ``backward``."""
        X = require_array("X", X)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have shape (n, {self.sizes[0]}); got {X.shape}")
        self._cache = []
        h = X
        for l in range(self.num_layers):
            self._cache.append(h)
            h = h @ self.params[f"W{l}"] + self.params[f"b{l}"]
            if l < self.num_layers - 1:
                h = np.maximum(h, 0.0)
        return h

    __call__ = forward

    def backward(self, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of the loss w.r.t. every parameter, given ``dlogits = dL/dlogits: (n, k)``.

        Layer by layer from the top: ``dW = h_in^T @ dz``, ``db = sum_rows(dz)``, and
        ``dh_in = dz @ W^T`` times ReLU's derivative (1 where the pre-activation was > 0).
        """
        if not self._cache:
            raise RuntimeError("call forward() before backward()")
        expected = (len(self._cache[0]), self.sizes[-1])
        if np.shape(dlogits) != expected:
            raise ValueError(f"dlogits must have the shape of the last forward's logits {expected}; "
                             f"got {np.shape(dlogits)}")
        grads: dict[str, np.ndarray] = {}
        dz = dlogits
        for l in reversed(range(self.num_layers)):
            h_in = self._cache[l]
            grads[f"W{l}"] = h_in.T @ dz
            grads[f"b{l}"] = dz.sum(axis=0)
            if l > 0:
                # h_in = relu(z_prev) and h_in > 0 exactly where z_prev > 0
                dz = (dz @ self.params[f"W{l}"].T) * (h_in > 0)
        return grads

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray,
                       weight_decay: float = 0.0) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy (+ ``weight_decay/2 * sum W^2`` over weight matrices) and its gradients."""
        require_number("weight_decay", weight_decay, low=0)
        logits = self.forward(X)
        loss = cross_entropy(logits, y)
        # d(mean CE)/dlogits = (softmax - one_hot) / n
        dlogits = softmax(logits)
        dlogits[np.arange(len(y)), y] -= 1.0
        grads = self.backward(dlogits / len(y))
        if weight_decay:
            for l in range(self.num_layers):
                W = self.params[f"W{l}"]
                loss += 0.5 * weight_decay * float((W ** 2).sum())
                grads[f"W{l}"] = grads[f"W{l}"] + weight_decay * W
        return loss, grads

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class ``(n,)`` for ``X: (n, sizes[0])``."""
        return self.forward(X).argmax(axis=1)


def train_numpy_mlp(model: NumpyMLP, X: np.ndarray, y: np.ndarray, epochs: int = 30, lr: float = 0.1,
                    batch_size: int = 32, momentum: float = 0.9, weight_decay: float = 0.0,
                    seed: int = 0) -> list[float]:
    """Mini-batch SGD with momentum on ``model`` in place; returns the mean training loss per epoch."""
    if not isinstance(model, NumpyMLP):
        raise TypeError(f"model must be a lib.mlp.NumpyMLP, got {describe(model)}")
    X, y = require_array("X", X), require_array("y", y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (n, features) and y (n,); got {X.shape} and {y.shape}")
    if not len(X):
        raise ValueError("X is empty: there is nothing to train on")
    require_finite("X", X)
    require_int("epochs", epochs, 0)
    require_positive_number("lr", lr)
    require_positive_int("batch_size", batch_size)
    require_number("momentum", momentum, low=0, high=1, high_open=True)
    rng = np.random.default_rng(seed)
    velocity = {k: np.zeros_like(v) for k, v in model.params.items()}
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(X))
        total = 0.0
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            loss, grads = model.loss_and_grads(X[idx], y[idx], weight_decay)
            total += loss * len(idx)
            for k, g in grads.items():
                velocity[k] = momentum * velocity[k] - lr * g
                model.params[k] += velocity[k]
        losses.append(total / len(X))
    return losses


# --------------------------------------------------------------------------- PyTorch
class MLP(nn.Module):
    """The PyTorch twin of ``NumpyMLP``: ``Linear -> ReLU (-> Dropout)`` repeated, then ``Linear``.

    ``x: (batch, sizes[0])`` or ``(batch, 1, 8, 8)`` images (flattened first) -> logits
    ``(batch, sizes[-1])``. ``dropout`` is applied after every hidden ReLU.
    """

    def __init__(self, sizes: Sequence[int] = (64, 128, 10), dropout: float = 0.0) -> None:
        super().__init__()
        self.sizes = _check_sizes(sizes)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if l < len(self.sizes) - 2:
                layers.append(nn.ReLU())
                if dropout:
                    layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 2:
            raise ValueError(f"x must be a tensor (batch, {self.sizes[0]}) or a batch of images; got {describe(x)}")
        if x.shape[1:].numel() != self.sizes[0]:
            raise ValueError(f"each example must have {self.sizes[0]} values; got shape {tuple(x.shape)}")
        return self.net(x)

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    @classmethod
    def from_numpy(cls, model: NumpyMLP, dtype: torch.dtype = torch.float64) -> "MLP":
        """A torch ``MLP`` holding a copy of ``model``'s weights (``nn.Linear`` stores ``W^T``)."""
        twin = cls(model.sizes).to(dtype)
        with torch.no_grad():
            for l, linear in enumerate(twin.linears):
                linear.weight.copy_(torch.as_tensor(model.params[f"W{l}"].T))
                linear.bias.copy_(torch.as_tensor(model.params[f"b{l}"]))
        return twin


# --------------------------------------------------------------------------- Keras
def keras_mlp(sizes: Sequence[int] = (64, 128, 10), dropout: float = 0.0):
    """The Keras ``Sequential`` twin of ``MLP``, returning logits (compile with ``from_logits=True``).

    The classic Keras MNIST MLP assumes 784 inputs, pixels in 0..255 and one-hot labels with
    ``categorical_crossentropy``; for this data it is ``Input(64)``, pixels already in [0, 1],
    integer labels with ``SparseCategoricalCrossentropy(from_logits=True)``. Initial weights and
    dropout come from Keras' global generator: call ``lib.device.seed_everything`` first.
    """
    from lib.keras_models import load_keras

    sizes = _check_sizes(sizes)
    require_probability("dropout", dropout)
    keras = load_keras()
    layers = [keras.Input(shape=(sizes[0],))]
    for n_out in sizes[1:-1]:
        layers.append(keras.layers.Dense(n_out, activation="relu"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(sizes[-1]))
    return keras.Sequential(layers, name="mlp")
