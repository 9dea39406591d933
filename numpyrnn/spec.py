"""What a torch recurrent module looks like, independent of any weight layout.

Shape symbols used throughout numpyrnn (the same as ``torch.nn.GRU``'s docs):

* ``G``: gates per unit: 3 for GRU, 4 for LSTM, 1 for RNN.
* ``D``: directions, 1 or 2.
* ``H``: hidden size. ``I``: input size of layer 0. ``L``: number of layers.
* ``P``: LSTM projection size (``proj_size``); ``R`` is the recurrent width,
  ``P`` when projecting and ``H`` otherwise.
* Layer ``k > 0`` reads the ``D*R``-wide output of layer ``k-1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from .errors import LayoutError

__all__ = ["RNNSpec", "CELLS", "TORCH_GATES"]

#: Cell name -> torch ``mode`` string(s).
CELLS = {"GRU": "GRU", "LSTM": "LSTM", "RNN": "RNN_TANH"}

#: PyTorch's gate order for each mode, one letter per gate.
TORCH_GATES = {"GRU": "rzn", "LSTM": "ifgo", "RNN_TANH": "h", "RNN_RELU": "h"}

#: Other names in use for the same gates (Keras ``h``/``c``, TF1 ``j``/``u``).
GATE_ALIASES = {
    "GRU": {"u": "z", "h": "n", "c": "n"},
    "LSTM": {"c": "g", "j": "g"},
    "RNN_TANH": {},
    "RNN_RELU": {},
}


@dataclass(frozen=True)
class RNNSpec:
    """The configuration of a ``nn.GRU``/``nn.LSTM``/``nn.RNN``.

    Args:
        mode: ``"GRU"``, ``"LSTM"``, ``"RNN_TANH"`` or ``"RNN_RELU"``.
        input_size: ``I``.
        hidden_size: ``H``.
        num_layers: ``L``.
        bidirectional: whether ``D == 2``.
        bias: whether the module has ``bias_ih``/``bias_hh`` parameters.
        proj_size: ``P`` (LSTM only), 0 when there is no projection.
    """

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    proj_size: int = 0

    # --- derived sizes -----------------------------------------------------------------
    @property
    def cell(self) -> str:
        """``"GRU"``, ``"LSTM"`` or ``"RNN"``."""
        return "RNN" if self.mode.startswith("RNN") else self.mode

    @property
    def gates(self) -> int:
        """``G``."""
        return len(TORCH_GATES[self.mode])

    @property
    def gate_letters(self) -> str:
        """PyTorch's gate order, e.g. ``"rzn"``."""
        return TORCH_GATES[self.mode]

    @property
    def directions(self) -> int:
        """``D``."""
        return 2 if self.bidirectional else 1

    @property
    def rec(self) -> int:
        """``R``: the recurrent width (``P`` with projection, else ``H``)."""
        return self.proj_size or self.hidden_size

    def layer_input(self, layer: int) -> int:
        """Input width of ``layer``: ``I`` for layer 0, ``D*R`` above."""
        return self.input_size if layer == 0 else self.directions * self.rec

    @property
    def nonlinearity(self) -> str:
        """``"relu"`` for ``RNN_RELU``, else ``"tanh"``."""
        return "relu" if self.mode == "RNN_RELU" else "tanh"

    # --- parameter naming --------------------------------------------------------------
    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        """``"_l{layer}"`` plus ``"_reverse"`` for direction 1, as torch names them."""
        return f"_l{layer}" + ("_reverse" if direction else "")

    def units(self) -> Iterator[tuple[int, int]]:
        """Every ``(layer, direction)`` pair in torch's parameter order."""
        for layer in range(self.num_layers):
            for direction in range(self.directions):
                yield layer, direction

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every torch parameter name with its shape, in ``_flat_weights_names`` order."""
        G, H, P = self.gates, self.hidden_size, self.proj_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer, direction in self.units():
            s = self.suffix(layer, direction)
            shapes["weight_ih" + s] = (G * H, self.layer_input(layer))
            shapes["weight_hh" + s] = (G * H, self.rec)
            if self.bias:
                shapes["bias_ih" + s] = (G * H,)
                shapes["bias_hh" + s] = (G * H,)
            if P:
                shapes["weight_hr" + s] = (P, H)
        return shapes

    def describe(self) -> str:
        """One line, e.g. ``GRU(input=8, hidden=16, layers=2, bidirectional, bias)``."""
        parts = [f"input={self.input_size}", f"hidden={self.hidden_size}", f"layers={self.num_layers}"]
        parts.append("bidirectional" if self.bidirectional else "unidirectional")
        parts.append("bias" if self.bias else "no bias")
        if self.proj_size:
            parts.append(f"proj={self.proj_size}")
        if self.mode == "RNN_RELU":
            parts.append("relu")
        return f"{self.cell}(" + ", ".join(parts) + ")"

    def module_kwargs(self) -> dict:
        """Keyword arguments for the torch constructor (without ``mode``)."""
        kw: dict[str, Any] = dict(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bias=self.bias,
            bidirectional=self.bidirectional,
        )
        if self.mode == "LSTM":
            kw["proj_size"] = self.proj_size
        if self.cell == "RNN":
            kw["nonlinearity"] = self.nonlinearity
        return kw

    def replace(self, **changes) -> RNNSpec:
        """A copy with some fields changed."""
        return replace(self, **changes)

    # --- construction ------------------------------------------------------------------
    @classmethod
    def of(cls, module: nn.Module) -> RNNSpec:
        """The spec of an existing ``nn.GRU``/``nn.LSTM``/``nn.RNN`` (or subclass).

        Raises:
            TypeError: ``module`` is not one of those.
        """
        if not isinstance(module, nn.RNNBase) and isinstance(getattr(module, "_orig_mod", None), nn.RNNBase):
            raise TypeError(
                f"expected a torch.nn.GRU, nn.LSTM or nn.RNN, got a {type(module).__name__} made by torch.compile: "
                f"pass the module it wraps, its `_orig_mod` (it shares the parameters, so the compiled one sees "
                f"the new values)"
            )
        if not isinstance(module, nn.RNNBase) or module.mode not in TORCH_GATES:
            raise TypeError(
                f"expected a torch.nn.GRU, nn.LSTM or nn.RNN (or a subclass), got {type(module).__name__}"
            )
        return cls(
            mode=module.mode,
            input_size=module.input_size,
            hidden_size=module.hidden_size,
            num_layers=module.num_layers,
            bidirectional=module.bidirectional,
            bias=module.bias,
            proj_size=getattr(module, "proj_size", 0),
        )


def gate_order(spec_mode: str, gates: str | None, *, what: str = "gates") -> str:
    """Validate a user's gate-order string and return it in torch letters.

    ``None`` means torch's own order. Aliases (``h``/``c`` for GRU ``n``, ``c``/``j``
    for LSTM ``g``, ``u`` for GRU ``z``) are accepted. Case is ignored.

    Raises:
        LayoutError: ``gates`` is not a permutation of the cell's gate letters.
    """
    torch_order = TORCH_GATES[spec_mode]
    if gates is None:
        return torch_order
    if not isinstance(gates, str):
        raise TypeError(f"{what} must be a string such as {torch_order!r}, got {type(gates).__name__}")
    aliases = GATE_ALIASES[spec_mode]
    norm = "".join(aliases.get(c, c) for c in gates.lower())
    if sorted(norm) != sorted(torch_order):
        cell = "RNN" if spec_mode.startswith("RNN") else spec_mode
        raise LayoutError(
            f"{what}={gates!r} is not a permutation of the {cell} gates {torch_order!r}: "
            f"expected {len(torch_order)} distinct letters from {torch_order!r}, got {len(gates)} letters"
            + (f" ({gates!r})" if gates else "")
            + f"; e.g. {torch_order[::-1]!r} for the reverse order"
        )
    return norm
