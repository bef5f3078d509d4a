"""Plotting helpers shared by the chapters. Every figure gets a title and labelled axes.

Figures stay small (``FIGSIZE``, ``DPI``) so that stored notebooks stay small.
"""
from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np

from lib.validate import describe, require_array, require_int

FIGSIZE = (6, 4)
DPI = 72
plt.rcParams.update({"figure.dpi": DPI, "figure.figsize": FIGSIZE, "axes.grid": True, "grid.alpha": 0.3})


def plot_history(history, ax=None, title: str = "Training history"):
    """Loss curves of a ``lib.train.History`` (train and validation), accuracy on a twin axis."""
    if not hasattr(history, "__contains__") or "train_loss" not in history:
        raise ValueError(f"history must be a lib.train.History (or dict) with a 'train_loss' record; got {describe(history)}")
    ax = ax or plt.subplots()[1]
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    for key in ("train_loss", "val_loss"):
        if key in history:
            ax.plot(epochs, history[key], label=key.replace("_", " "))
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    lines, labels = ax.get_legend_handles_labels()
    if "val_accuracy" in history or "train_accuracy" in history:
        ax2 = ax.twinx()
        for key, style in (("train_accuracy", ":"), ("val_accuracy", "--")):
            if key in history:
                ax2.plot(epochs, history[key], style, label=key.replace("_", " "))
        ax2.set_ylabel("accuracy")
        ax2.grid(False)
        more = ax2.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    ax.legend(lines, labels, loc="center right")
    return ax


def decision_boundary(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray,
                      ax=None, title: str = "Decision boundary", resolution: int = 200):
    """Shade the class ``predict`` gives over a grid around ``X: (n, 2)``; scatter the points.

    ``predict`` maps a ``(m, 2)`` array to ``(m,)`` class labels.
    """
    if not callable(predict):
        raise TypeError(f"predict must be a function of an (m, 2) array, got {describe(predict)}")
    X = require_array("X", X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (n, 2); got {X.shape}")
    if not len(X) or np.shape(y) != (len(X),):
        raise ValueError(f"X must hold at least one point and y one label per point ({len(X)},); got {np.shape(y)}")
    require_int("resolution", resolution, 2)
    ax = ax or plt.subplots()[1]
    pad = 0.5
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, resolution)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, resolution)
    gx, gy = np.meshgrid(xs, ys)
    z = np.asarray(predict(np.c_[gx.ravel(), gy.ravel()].astype(X.dtype)))
    if z.size != gx.size:
        raise ValueError(f"predict must return one class per grid point ({gx.size},); got shape {z.shape}")
    z = z.reshape(gx.shape)
    ax.contourf(gx, gy, z, alpha=0.25, cmap="coolwarm", levels=np.arange(z.max() + 2) - 0.5)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=12, edgecolors="k", linewidths=0.3)
    ax.set(xlabel="$x_1$", ylabel="$x_2$", title=title)
    return ax


def image_grid(images: np.ndarray, labels: Sequence | None = None, ncols: int = 10,
               title: str = "", cmap: str = "gray_r", size: float = 0.9):
    """Show ``images: (n, H, W)`` or ``(n, 1, H, W)`` in a grid, each with an optional label above it.

    The grid is drawn as one mosaic picture on one shared grey scale (the images' overall minimum to
    maximum), which draws many times faster than one subplot per image. Returns the figure.
    """
    images = np.asarray(images, dtype=float)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, H, W) or (n, 1, H, W); got {images.shape}")
    n, h, w = images.shape
    if n == 0:
        raise ValueError("images is empty: nothing to show")
    if labels is not None and len(labels) < n:
        raise ValueError(f"labels must have one entry per image ({n}); got {len(labels)}")
    require_int("ncols", ncols, 1)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    top = max(2, h // 2) if labels is not None else 1          # blank rows above each image for its label
    lo, hi = float(images.min()), float(images.max())
    tiles = np.full((nrows * ncols, h + top, w + 2), np.nan)   # NaN: the background between images
    tiles[:n, top:, 1:-1] = images
    mosaic = tiles.reshape(nrows, ncols, h + top, w + 2).transpose(0, 2, 1, 3).reshape(nrows * (h + top), ncols * (w + 2))
    row_height = size + (0.3 if labels is not None else 0.0)
    fig, ax = plt.subplots(figsize=(size * ncols, row_height * nrows + 0.4))
    ax.imshow(mosaic, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    if labels is not None:
        for i in range(n):
            ax.text((w + 2) * (i % ncols) + (w + 1) / 2, (h + top) * (i // ncols) + top / 2 - 0.5, str(labels[i]),
                    ha="center", va="center", fontsize=8)
    ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def contour_path(loss: Callable[[np.ndarray, np.ndarray], np.ndarray], paths: dict[str, np.ndarray],
                 extent: tuple[float, float, float, float], ax=None, title: str = "Loss surface",
                 labels: tuple[str, str] = ("$w$", "$b$"), optimum: Sequence[float] | None = None):
    """Contours of ``loss(W, B)`` over ``extent=(x0, x1, y0, y1)`` with optimizer paths drawn on top.

    ``paths`` maps a legend label to a ``(steps, 2)`` array of iterates.
    """
    if not callable(loss):
        raise TypeError(f"loss must be a function loss(W, B) of two grids, got {describe(loss)}")
    if len(extent) != 4 or not (extent[0] < extent[1] and extent[2] < extent[3]):
        raise ValueError(f"extent must be (x0, x1, y0, y1) with x0 < x1 and y0 < y1; got {extent!r}")
    if not isinstance(paths, dict):
        raise TypeError(f"paths must be a dict {{label: (steps, 2) array}}, got {describe(paths)}")
    for label, path in paths.items():
        if np.ndim(path) != 2 or np.shape(path)[1] != 2:
            raise ValueError(f"paths[{label!r}] must have shape (steps, 2); got {np.shape(path)}")
    ax = ax or plt.subplots()[1]
    xs, ys = np.linspace(extent[0], extent[1], 150), np.linspace(extent[2], extent[3], 150)
    gx, gy = np.meshgrid(xs, ys)
    z = loss(gx, gy)
    ax.contour(gx, gy, z, levels=np.geomspace(max(z.min(), 1e-3), z.max(), 20), cmap="viridis", linewidths=0.8)
    for label, path in paths.items():
        path = np.asarray(path)
        ax.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, label=f"{label} ({len(path) - 1} steps)")
    if optimum is not None:
        ax.plot(*optimum, "r*", ms=12, label="minimum")
    ax.set(xlim=extent[:2], ylim=extent[2:], xlabel=labels[0], ylabel=labels[1], title=title)
    ax.legend(fontsize=8, loc="upper right")
    return ax
