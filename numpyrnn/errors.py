"""The one exception numpyrnn raises for weights it cannot load."""

from __future__ import annotations

__all__ = ["LayoutError"]


class LayoutError(ValueError):
    """Weights do not fit the layout or the module they are loaded into.

    Raised for wrong shapes, missing or extra keys, non-finite values and for
    foreign configurations that ``torch.nn`` cannot represent. The message names
    the array or key path, the axis, what was expected, what was found and,
    where one exists, the fix. Subclasses :class:`ValueError`, so existing
    ``except ValueError`` handlers keep working.
    """
