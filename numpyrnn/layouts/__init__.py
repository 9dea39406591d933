"""Weight layouts: one small declarative module per format, one engine for all.

Each module defines a :class:`~numpyrnn.layouts.base.Layout` subclass. Adding a
format means adding one file here; the engine does validation, reordering,
the atomic write, cuDNN flattening and export for every layout alike.
"""

from .base import Layout
from .blocks import BLOCKS

__all__ = ["Layout", "BLOCKS"]
