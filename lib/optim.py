"""Optimizers from scratch (chapter 01), with a ``torch.optim``-like API.

A parameter is anything with ``.data`` and ``.grad``: a torch tensor, an ``autograd.Value`` or a
``Param`` holding a NumPy array. Updates are written as plain arithmetic (``p.data = p.data - ...``)
so the same code runs on floats, arrays and tensors, and every formula is visible.

Two conventions differ between frameworks, and both are offered so each can be matched exactly:
- SGD with momentum: PyTorch keeps ``buf = m*buf + g`` and steps ``-lr*buf``; Keras keeps a
  velocity ``v = m*v - lr*g`` and steps ``+v``. For a constant ``lr`` they are the same sequence.
- Adam's epsilon: PyTorch divides by ``sqrt(v_hat) + eps``; Keras folds the bias corrections into
  the step size and divides by ``sqrt(v) + eps`` — the same as PyTorch with
  ``eps / sqrt(1 - beta2**t)``, a larger epsilon in the first steps. ``Adam(eps_mode="keras")`` reproduces Keras.

Weight decay in Adam comes in two forms: ``Adam(weight_decay=...)`` adds it to the gradient (L2, as
``torch.optim.Adam``), ``AdamW`` applies it outside the division by ``sqrt(v_hat)`` (``torch.optim.AdamW``).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from lib.validate import describe, is_number, require_int, require_number, require_positive_number


class Param:
    """A NumPy array with a gradient slot, so NumPy code can use these optimizers."""

    def __init__(self, data) -> None:
        self.data = np.array(data, dtype=np.float64)
        self.grad = np.zeros_like(self.data)

    def __repr__(self) -> str:
        return f"Param({self.data!r})"


class Optimizer:
    """Base class: keeps the parameter list and per-parameter state, offers ``zero_grad``."""

    def __init__(self, params: Iterable, lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for p in self.params:
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"parameters need .data and .grad attributes; got {type(p).__name__}")
        try:
            require_positive_number("lr", lr)
        except TypeError as e:  # one error type for every bad learning rate, as before
            raise ValueError(str(e)) from None
        self.lr = float(lr)
        self.t = 0  # number of steps taken
        self.state: list[dict] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.grad = p.grad * 0  # same type and shape as before: float, array or tensor

    def step(self) -> None:
        self.t += 1
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            p.data = p.data - self.update(p.grad, state, p.data)

    def update(self, grad, state: dict, data):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent: ``p <- p - lr * g``; with ``momentum`` m: ``buf <- m*buf + g``, ``p <- p - lr*buf``.

    ``weight_decay`` adds ``wd * p`` to the gradient (L2 regularisation, as in ``torch.optim.SGD``).
    """

    def __init__(self, params: Iterable, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        require_number("momentum", momentum, low=0, high=1, high_open=True)
        require_number("weight_decay", weight_decay, low=0)
        self.momentum, self.weight_decay = momentum, weight_decay

    def update(self, grad, state, data):
        if self.weight_decay:
            grad = grad + self.weight_decay * data
        if self.momentum:
            # the first step starts the buffer at g (not m*0 + (1-m)*g): PyTorch's convention
            state["buf"] = grad if "buf" not in state else self.momentum * state["buf"] + grad
            grad = state["buf"]
        return self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction.

    ``weight_decay`` adds ``wd * p`` to the gradient *before* the moments (L2 regularisation, as in
    ``torch.optim.Adam``): the decay is then divided by ``sqrt(v_hat)`` like the rest of the gradient.
    ``AdamW`` decouples it instead.

    ``m <- b1*m + (1-b1)*g``;  ``v <- b2*v + (1-b2)*g^2``;  ``m_hat = m/(1-b1^t)``;  ``v_hat = v/(1-b2^t)``;
    ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)``  (``eps_mode="torch"``), or
    ``p <- p - lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``  (``eps_mode="keras"``).
    m and v start at zero, so early on they underestimate the gradient's moments; without the
    corrections the first steps are several times too large (m is shrunk by 1-b1, sqrt(v) by sqrt(1-b2)).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, eps_mode: str = "torch", weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(is_number(b) and 0.0 <= b < 1.0 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        require_positive_number("eps", eps)
        if eps_mode not in ("torch", "keras"):
            raise ValueError(f"eps_mode must be 'torch' or 'keras', got {eps_mode!r}")
        require_number("weight_decay", weight_decay, low=0)
        self.betas, self.eps, self.eps_mode, self.weight_decay = betas, eps, eps_mode, weight_decay

    def update(self, grad, state, data):
        if self.weight_decay:
            grad = grad + self.weight_decay * data
        return self._adam(grad, state)

    def _adam(self, grad, state):
        b1, b2 = self.betas
        state["m"] = b1 * state.get("m", 0 * grad) + (1 - b1) * grad
        state["v"] = b2 * state.get("v", 0 * grad) + (1 - b2) * grad * grad
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        if self.eps_mode == "torch":
            return self.lr * (state["m"] / c1) / ((state["v"] / c2) ** 0.5 + self.eps)
        return self.lr * c2 ** 0.5 / c1 * state["m"] / (state["v"] ** 0.5 + self.eps)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam with *decoupled* weight decay, as ``torch.optim.AdamW``.

    ``p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)``: the decay shrinks every weight by the
    same factor ``1 - lr*wd`` per step, whatever its gradient's scale, and never enters m or v.
    (With ``Adam(weight_decay=wd)`` the decay passes through the moments and is divided by
    ``sqrt(v_hat)``, so weights with large gradients are hardly decayed at all.) Default ``wd`` 0.01.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        super().__init__(params, lr, betas, eps, "torch", weight_decay)

    def update(self, grad, state, data):
        return self.lr * self.weight_decay * data + self._adam(grad, state)


OPTIMIZERS = {"sgd": SGD, "momentum": SGD, "adam": Adam}


def optimize_path(grad_fn: Callable[[np.ndarray], np.ndarray], start, optimizer: str = "sgd",
                  lr: float = 0.1, steps: int = 50, **kwargs) -> np.ndarray:
    """Run an optimizer on a function given by its gradient; return the path ``(steps + 1, dim)``.

    ``optimizer`` is "sgd", "momentum" (SGD with ``momentum``, default 0.9) or "adam". Used to
    draw optimizer paths on loss surfaces. Stops early (path is shorter) if the iterate blows up.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    if not callable(grad_fn):
        raise TypeError(f"grad_fn must be a function of the parameters, got {describe(grad_fn)}")
    require_int("steps", steps, 0)
    if optimizer == "momentum":
        kwargs.setdefault("momentum", 0.9)
    p = Param(start)
    if not p.data.size or not np.all(np.isfinite(p.data)):
        raise ValueError(f"start must be finite numbers, got {start!r}")
    opt = OPTIMIZERS[optimizer]([p], lr=lr, **kwargs)
    path = [p.data.copy()]
    for _ in range(steps):
        p.grad = np.asarray(grad_fn(p.data), dtype=np.float64)
        try:  # a gradient that broadcasts to a larger shape would silently reshape the iterate
            fits = np.broadcast_shapes(p.grad.shape, p.data.shape) == p.data.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"grad_fn must return the shape of the parameters {p.data.shape}; got {p.grad.shape}")
        opt.step()
        path.append(p.data.copy())
        if not np.all(np.isfinite(p.data)) or np.abs(p.data).max() > 1e6:
            break
    return np.array(path)
