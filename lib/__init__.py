"""The course library: small modules, one idea each.

The architecture (which module may import which), the conventions every module follows (one
training engine, randomness, devices, evaluation mode) and how to add a chapter are in the
project's CONTRIBUTING.md.

Import what you need, e.g. ``from lib.device import get_device``; nothing heavy is imported here so
that ``import lib`` stays instant (TensorFlow in particular is only loaded by ``lib.keras_models``).
"""

__version__ = "0.1.0"
