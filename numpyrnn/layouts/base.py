"""What a layout declares. The engine (:mod:`numpyrnn.engine`) carries it out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ..engine import Axis, Piece
from ..spec import RNNSpec

__all__ = ["Layout", "Axis", "Piece"]


class Layout:
    """A foreign weight format, described as data for the engine.

    Subclasses set :attr:`name`, :attr:`gates` (the format's gate order per cell)
    and :attr:`refuses` (what ``torch.nn`` cannot represent, and why), and
    implement four small functions:

    * :meth:`infer`: the :class:`~numpyrnn.spec.RNNSpec` and the named leaf arrays
      that a foreign structure holds (shapes only; values are never read here);
    * :meth:`shapes`: every leaf's expected shape in named axes, for a spec;
    * :meth:`pieces`: where every torch parameter block comes from;
    * :meth:`assemble`: the foreign structure built from exported leaves.
    """

    name: str = ""
    #: Gate order of the format for each cell, in torch letters.
    gates: Mapping[str, str] = {}
    #: Short reasons the format's options are refused, keyed by option.
    refuses: Mapping[str, str] = {}

    def infer(self, source: Any, *, mode: str, **options: Any) -> tuple[RNNSpec, dict[str, Any]]:
        raise NotImplementedError

    def leaves_for(self, source: Any, spec: RNNSpec, **options: Any) -> dict[str, Any]:
        """Leaves of ``source`` for loading into an existing module of ``spec``.

        The default infers and lets the engine's shape check report mismatches.
        """
        _, leaves = self.infer(source, mode=spec.mode, **options)
        return leaves

    def shapes(self, spec: RNNSpec, **options: Any) -> dict[str, Sequence[Axis]]:
        raise NotImplementedError

    def pieces(self, spec: RNNSpec, **options: Any) -> list[Piece]:
        raise NotImplementedError

    def assemble(self, arrays: dict[str, Any], spec: RNNSpec, **options: Any) -> Any:
        raise NotImplementedError

    def hint(self, spec: RNNSpec, **options: Any) -> Callable[[str, tuple], str] | None:
        """Optional: a function naming a likely cause for a shape mismatch."""
        return None
