"""Key paths for nested foreign structures, and checks that name them.

A foreign layout reads leaves out of dicts and lists. When one is missing,
extra, wrongly nested or of the wrong shape, the error names it the way the
user wrote it (``params[0]["forward_rnn"]["cell"]["hz"]["kernel"]``), not by
the canonical leaf key the engine works with. These helpers only look at keys,
types and shapes; values are read once, later, by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..engine import Axis, _check_dtype, shape_text, to_array
from ..errors import LayoutError

__all__ = ["at", "as_mapping", "check_keys", "leaf", "check_shape", "is_sequence"]


def at(path: str, key: Any) -> str:
    """``path`` extended by one key: ``at("params", 0) == "params[0]"``."""
    return f"{path}[{key}]" if isinstance(key, int) else f'{path}["{key}"]'


def is_sequence(value: Any) -> bool:
    """A list or tuple (not a string, not an array)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def as_mapping(value: Any, path: str, expected: str) -> Mapping:
    """``value`` if it is a mapping, else a :class:`LayoutError` naming ``path``."""
    if not isinstance(value, Mapping):
        shape = getattr(value, "shape", None)
        got = f"an array of shape {tuple(shape)}" if shape is not None else type(value).__name__
        raise LayoutError(f"{path}: expected {expected}, got {got}")
    return value


def check_keys(mapping: Mapping, path: str, *, required: Sequence[str], optional: Sequence[str] = (),
               what: str, refused: Mapping[str, str] | None = None) -> None:
    """Every required key present, and no key outside ``required + optional``.

    Args:
        mapping: the dict to check.
        path: its key path, for messages.
        required: keys that must be present.
        optional: keys that may be present.
        what: what the mapping is, e.g. ``"a GRUCell param dict"``.
        refused: keys that are recognised but cannot be represented, with the reason.

    Raises:
        LayoutError: naming the first offending key path.
    """
    for key in mapping:
        if refused and key in refused and mapping[key] is not None:
            raise LayoutError(f"{at(path, key)}: {refused[key]}")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise LayoutError(
            f"{at(path, missing[0])}: missing; {what} has keys {_keys(required, optional)}, got {_keys(list(mapping))}"
        )
    allowed = set(required) | set(optional)
    extra = [k for k in mapping if k not in allowed]
    if extra:
        raise LayoutError(
            f"{at(path, extra[0])}: unexpected key; {what} has keys {_keys(required, optional)}, got {_keys(list(mapping))}"
        )


def _keys(required: Sequence[Any], optional: Sequence[Any] = ()) -> str:
    text = ", ".join(repr(k) for k in required) or "none"
    if optional:
        text += " and optionally " + ", ".join(repr(k) for k in optional)
    return text


def leaf(value: Any, path: str) -> Any:
    """``value`` as an array (numpy, torch, or ``np.asarray`` of anything array-like),
    with a floating dtype; nothing is copied for numpy and torch inputs.

    Raises:
        TypeError: not array-like, or not floating point.
    """
    arr = to_array(value, path)
    _check_dtype(path, arr)
    return arr


def check_shape(path: str, arr: Any, axes: Sequence[Axis], *, layout: str, hint: str = "") -> None:
    """The engine's shape message, under the user's key path.

    Raises:
        LayoutError: ``arr.shape`` differs from ``axes``.
    """
    got = tuple(int(n) for n in arr.shape)
    want = tuple(a.size for a in axes)
    if got == want:
        return
    if len(got) != len(want):
        detail = f"expected {len(want)} axes {shape_text(axes)}, got {len(got)} axes {got}"
    else:
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        detail = f"expected {shape_text(axes)}, got {got}: " + "; ".join(
            f"axis {i} ({axes[i].name}) is {got[i]}, expected {want[i]}" for i in bad
        )
    raise LayoutError(f"{path} ({layout} layout): {detail}" + (f"; {hint}" if hint else ""))
