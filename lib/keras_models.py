"""The door to Keras/TensorFlow: imported lazily, quietly and seeded.

Importing TensorFlow costs seconds and prints C++ log lines (timestamps, process ids) to stderr;
only notebooks with a "the same in Keras" section pay for it, through ``load_keras()``.
Chapter-specific Keras models live next to their PyTorch twins (e.g. ``lib.cnn``) and call
``load_keras()`` themselves.
"""
from __future__ import annotations

import contextlib
import os
import sys


def load_keras():
    """Import and return ``keras`` (TensorFlow backend) with TensorFlow's log noise turned down.

    Nothing is seeded here: a Keras model's initial weights and dropout come from TensorFlow's global
    generator, which the notebook seeds with ``lib.device.seed_everything(seed)`` after this import
    (``seed_everything`` seeds Keras once it is loaded), as for PyTorch.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # C++ INFO/WARNING lines off
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bitwise-repeatable CPU results
    if "keras" not in sys.modules:
        with _stderr_fd_silenced():
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            import keras
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
            tf.constant(0.0) + 1.0  # the first op logs too (device discovery); let it log here
    import keras
    return keras


def keras_version() -> str:
    """``'keras X / tensorflow Y'`` once loaded (loading it if needed)."""
    keras = load_keras()
    import tensorflow as tf

    return f"keras {keras.__version__} / tensorflow {tf.__version__}"


@contextlib.contextmanager
def _stderr_fd_silenced():
    """Point file descriptor 2 at /dev/null for a moment.

    TensorFlow's C++ core writes its start-up lines ("Could not find cuda drivers", absl's
    "before InitializeLog") straight to the process's stderr, past Python and past
    TF_CPP_MIN_LOG_LEVEL. They tell a student nothing, so the import happens with fd 2 closed off.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
