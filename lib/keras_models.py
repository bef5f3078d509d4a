"""The door to Keras/TensorFlow: imported lazily, quietly and seeded.

Importing TensorFlow costs seconds and prints C++ log lines (timestamps, process ids) to stderr;
only notebooks with a "the same in Keras" section pay for it, through ``load_keras()``.
Chapter-specific Keras models live next to their PyTorch twins (e.g. ``lib.cnn``) and call
``load_keras()`` themselves.
"""
from __future__ import annotations

import os
import sys


def load_keras(seed: int | None = 0):
    """Import and return ``keras`` (TensorFlow backend) with TensorFlow's log noise turned down.

    ``seed`` (if not None) seeds Python, NumPy and TensorFlow through ``keras.utils.set_random_seed``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # C++ INFO/WARNING lines off
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bitwise-repeatable CPU results
    if "keras" not in sys.modules:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return keras


def keras_version() -> str:
    """``'keras X / tensorflow Y'`` once loaded (loading it if needed)."""
    keras = load_keras(seed=None)
    import tensorflow as tf

    return f"keras {keras.__version__} / tensorflow {tf.__version__}"
