"""Where computations run, and how to make them repeatable.

``get_device()`` picks CUDA, then Apple MPS, then CPU, so that every notebook runs unchanged on a
laptop or a GPU machine; ``require_device``/``resolve_device`` check a device argument; ``model_device(model)`` says where a model is (computations follow it).
``seed_everything`` seeds every random generator the course uses, and is the only function that
does; ``seeded(seed)`` runs a block seeded without disturbing the caller's random state.
"""
from __future__ import annotations

import contextlib
import importlib.metadata as metadata
import os
import platform
import random
import sys

import numpy as np
import torch
from torch import nn

from lib.check import install_friendly_errors
from lib.validate import describe, require_module


def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then MPS, then CPU.

    ``prefer`` ("cpu", "cuda", "mps") forces a choice; asking for an absent accelerator raises
    ``ValueError`` rather than silently falling back. The environment variable ``COURSE_DEVICE``
    does the same for a whole session (e.g. ``COURSE_DEVICE=cpu`` on a GPU machine).
    """
    if prefer is not None and not isinstance(prefer, str):
        raise TypeError(f"prefer must be 'cpu', 'cuda', 'mps' or None, got {type(prefer).__name__} {prefer!r}")
    prefer = prefer or os.environ.get("COURSE_DEVICE")
    if prefer is not None:
        if prefer not in ("cpu", "cuda", "mps"):
            raise ValueError(f"prefer must be one of ['cpu', 'cuda', 'mps'], got {prefer!r}")
        if not _available(prefer):
            raise ValueError(f"device {prefer!r} was asked for but is not available here")
        return torch.device(prefer)
    for name in ("cuda", "mps"):
        if _available(name):
            return torch.device(name)
    return torch.device("cpu")


def _available(kind: str) -> bool:
    """Whether this machine has a device of type ``kind`` ("cpu", "cuda", "mps"; other types: True)."""
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


def model_device(model: nn.Module) -> torch.device:
    """The device ``model`` lives on: that of its first parameter, else of its first buffer, else the CPU
    (a model with no state, e.g. ``nn.Identity``, runs wherever its input is; the CPU is where inputs
    start). The one way the course asks where a model is: computations follow the model (or input)."""
    require_module("model", model)
    for tensor in (next(model.parameters(), None), next(model.buffers(), None)):
        if tensor is not None:
            return tensor.device
    return torch.device("cpu")


def require_device(name: str, device: Any) -> torch.device:
    """``device`` ("cpu", "cuda:0", a ``torch.device``) as a ``torch.device`` that exists on this machine."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a device name such as 'cpu' or 'cuda', or a torch.device; got {describe(device)}")
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"{name} {device!r} is not a device name (e.g. 'cpu', 'cuda', 'cuda:1', 'mps')") from e
    if not _available(device.type):
        raise ValueError(f"{name} {str(device)!r} is not available on this machine; use 'cpu' or "
                         "get_device()")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{name} {str(device)!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_device(device: Any) -> torch.device:
    """``device`` checked by ``require_device``, or ``get_device()`` when it is None."""
    return get_device() if device is None else require_device("device", device)


def seed_everything(seed: int = 0, deterministic: bool = True, keras: bool = True) -> None:
    """Seed Python, NumPy, PyTorch (CPU and CUDA) and, if already imported, TensorFlow/Keras.

    The only function of the course that seeds the global generators: notebooks call it, library
    functions take a ``seed`` or a ``torch.Generator`` instead (or run in ``seeded(seed)``).

    With ``deterministic=True`` PyTorch is asked to use deterministic algorithms (``warn_only`` so
    that an op without a deterministic version warns instead of failing on a GPU).
    TensorFlow is never imported here: importing it costs seconds, so it is seeded only when a
    notebook has already loaded it: a notebook calls ``seed_everything`` again after ``lib.keras_models.load_keras()``.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be a non-negative int below 2**32 (NumPy's limit), got {seed!r}")
    for name, flag in (("deterministic", deterministic), ("keras", keras)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    seed = int(seed)  # random.seed refuses NumPy ints
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        # cuBLAS needs this for deterministic matrix products on CUDA >= 10.2
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if keras and "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)
    elif keras and "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)


@contextlib.contextmanager
def seeded(seed: int):
    """``with seeded(seed):`` runs the block with Python's, NumPy's and PyTorch's global generators
    seeded by ``seed_everything(seed)``, then puts the caller's generator states back.

    For library functions that must draw from the global generators (a module's initial weights,
    dropout masks): the result depends on ``seed`` alone, not on what ran before, and the caller's
    random stream is not disturbed. TensorFlow's generator is left alone (it cannot be restored).
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    hash_seed = os.environ.get("PYTHONHASHSEED")
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        seed_everything(seed, deterministic=False, keras=False)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            if hash_seed is None:
                os.environ.pop("PYTHONHASHSEED", None)
            else:
                os.environ["PYTHONHASHSEED"] = hash_seed


def setup_notebook(seed: int = 0, single_thread: bool = True) -> torch.device:
    """The first code cell of every chapter: ``device = setup_notebook(seed)``.

    Seeds every generator (``seed_everything(seed)``); with ``single_thread`` lets PyTorch use one
    CPU thread — the course's models are small, so a second thread only adds synchronisation, and
    one thread gives the same numbers whatever ``OMP_NUM_THREADS`` says (on a GPU this changes
    nothing); in Jupyter, shows exercise errors as one line each (``lib.check.install_friendly_errors``);
    prints and returns the device ``get_device()`` picks.
    """
    if not isinstance(single_thread, (bool, np.bool_)):
        raise TypeError(f"single_thread must be True or False, got {single_thread!r}")
    install_friendly_errors()
    device = get_device()
    if single_thread:
        torch.set_num_threads(1)
    seed_everything(seed)
    print("device:", device.type)
    return device


def package_version(name: str) -> str:
    """Installed version of a distribution, read from its metadata (no import), or 'not installed'."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_report(packages: tuple[str, ...] = (
        "torch", "tensorflow", "keras", "numpy", "scikit-learn", "matplotlib", "ipywidgets",
        "transformers")) -> dict[str, str]:
    """A dict describing this machine: Python, package versions (from metadata, so TensorFlow is
    not imported), CPU count, the device ``get_device()`` picks and what it is."""
    device = get_device()
    if device.type == "cuda":
        detail = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        detail = "Apple GPU (Metal)"
    else:
        detail = platform.processor() or platform.machine()
    report = {"python": platform.python_version(), "platform": platform.system()}
    report.update({name: package_version(name) for name in packages})
    report.update({"cpu cores": str(os.cpu_count()), "device": device.type, "device detail": detail})
    return report


def print_environment() -> None:
    """Print ``environment_report()`` as an aligned two-column table."""
    report = environment_report()
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
