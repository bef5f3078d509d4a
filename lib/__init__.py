"""The course library: small modules, one idea each (see CONVENTIONS.md).

Import what you need, e.g. ``from lib.device import get_device``; nothing heavy is imported here so
that ``import lib`` stays instant (TensorFlow in particular is only loaded by ``lib.keras_models``).
"""

__version__ = "0.1.0"
