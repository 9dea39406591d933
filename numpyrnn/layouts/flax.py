r"""Flax linen ``GRUCell``, ``LSTMCell``/``OptimizedLSTMCell`` and ``SimpleCell`` params.

A Flax cell is a set of ``Dense`` layers, one per gate and side, each with a
``kernel`` of shape ``(in, H)`` (transposed relative to torch) and possibly a
``bias`` of shape ``(H,)``. Shape symbols as in :mod:`numpyrnn.spec`.

==========  ========================================  ========================================  ================
cell        input side ``{kernel (in, H)[, bias]}``   hidden side ``{kernel (H, H)[, bias]}``   gates
==========  ========================================  ========================================  ================
GRUCell     ``ir``, ``iz``, ``in``: kernel and bias   ``hr``, ``hz``: kernel; ``hn``: both      ``r, z, n``
LSTMCell    ``ii``, ``if``, ``ig``, ``io``: kernel    ``hi``, ``hf``, ``hg``, ``ho``: both      ``i, f, g, o``
SimpleCell  ``i``: kernel and bias                    ``h``: kernel                             ``h``
==========  ========================================  ========================================  ================

Each kernel is one gate block of torch's weight, transposed: einops
``"x h -> 1 h x"`` into ``weight_ih``/``weight_hh`` at that gate. Biases:

* GRU: ``in.bias`` is ``b_in`` and ``hn.bias`` is ``b_hn`` (they cannot be merged:
  ``b_hn`` sits inside ``r * (...)``). ``ir``/``iz`` carry one bias for both sides,
  so import puts it in ``bias_ih`` with ``bias_hh`` zero at ``r, z``, and export
  writes ``b_i + b_h``.
* LSTM and SimpleCell have one bias per gate; it goes to ``bias_ih``, with
  ``bias_hh`` zero, and export writes the sum.

``nn.RNN(cell)`` nests the cell under ``"cell"``; ``nn.Bidirectional`` nests two
``nn.RNN`` under ``"forward_rnn"`` and ``"backward_rnn"`` and concatenates
``[forward, backward]`` like torch. Flax has no stacked module: a stack is a
list, bottom first. Flax has no bias-free cell, so a module without biases
exports zeros, and import always gives ``bias=True``.

Not visible in the params, so not checked: a cell's ``gate_fn``/``activation_fn``
(torch's are the defaults), ``SimpleCell(residual=True)``, ``nn.RNN(reverse=True)``
outside ``nn.Bidirectional``, and a ``merge_fn`` other than concatenation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LayoutError
from ..spec import RNNSpec
from ._paths import as_mapping, at, check_keys, check_shape, is_sequence, leaf
from .base import Axis, Layout, Piece

__all__ = ["FlaxLayout", "FLAX"]

#: Per cell: torch gate letter -> (input-side Dense, hidden-side Dense).
DENSES: dict[str, dict[str, tuple[str, str]]] = {
    "GRU": {"r": ("ir", "hr"), "z": ("iz", "hz"), "n": ("in", "hn")},
    "LSTM": {"i": ("ii", "hi"), "f": ("if", "hf"), "g": ("ig", "hg"), "o": ("io", "ho")},
    "RNN": {"h": ("i", "h")},
}

#: Per cell: Dense with a bias -> (torch bias it is, torch bias summed into it on export and zeroed on import).
BIASES: dict[str, dict[str, tuple[str, str | None]]] = {
    "GRU": {"ir": ("bias_ih", "bias_hh"), "iz": ("bias_ih", "bias_hh"), "in": ("bias_ih", None), "hn": ("bias_hh", None)},
    "LSTM": {"hi": ("bias_ih", "bias_hh"), "hf": ("bias_ih", "bias_hh"), "hg": ("bias_ih", "bias_hh"),
             "ho": ("bias_ih", "bias_hh")},
    "RNN": {"i": ("bias_ih", "bias_hh")},
}

#: einops patterns from a Dense leaf to torch's ``g h [x]`` with one gate.
KERNEL, BIAS = "x h -> 1 h x", "h -> 1 h"

#: The Flax class names, for messages.
CELL_NAMES = {"GRU": "GRUCell", "LSTM": "LSTMCell/OptimizedLSTMCell", "RNN": "SimpleCell"}

#: Cells recognised by their keys but without a torch module.
OTHER_CELLS = {frozenset({"if", "in", "hf", "hn"}): "MGUCell (minimal gated unit), which has no torch module"}

DIRECTIONS = ("forward_rnn", "backward_rnn")


@dataclass
class _Cell:
    """One direction of one layer as found in the source: its Dense leaves and key paths."""

    dense: dict[str, dict[str, Any]]
    path: str
    layer_path: str


def _cell_key(layer: int, direction: int, directions: int) -> str:
    base = f"params[{layer}]"
    return at(at(base, DIRECTIONS[direction]), "cell") if directions == 2 else at(base, "cell")


def _names(cell: str) -> list[str]:
    return [name for pair in DENSES[cell].values() for name in pair]


class FlaxLayout(Layout):
    """Flax linen cell params, ``nn.RNN`` and ``nn.Bidirectional`` trees (see the module docstring)."""

    name = "Flax"
    gates = {"GRU": "rzn", "LSTM": "ifgo", "RNN": "h"}
    refuses = {
        "proj_size": "Flax's LSTMCell has no projection (torch's weight_hr, proj_size > 0), so this module has no Flax form",
    }

    # -- declarations ---------------------------------------------------------------
    def shapes(self, spec: RNNSpec, **_: Any) -> dict[str, Sequence[Axis]]:
        self._representable(spec)
        H, D = spec.hidden_size, spec.directions
        hidden = Axis("hidden", H)
        shapes: dict[str, Sequence[Axis]] = {}
        for layer, d in spec.units():
            cell = _cell_key(layer, d, D)
            width = Axis("input" if layer == 0 else f"{D}*hidden" if D > 1 else "hidden", spec.layer_input(layer))
            for i_name, h_name in DENSES[spec.cell].values():
                shapes[at(at(cell, i_name), "kernel")] = (width, hidden)
                shapes[at(at(cell, h_name), "kernel")] = (hidden, hidden)
            for name in BIASES[spec.cell]:
                shapes[at(at(cell, name), "bias")] = (hidden,)
        return shapes

    def pieces(self, spec: RNNSpec, **_: Any) -> list[Piece]:
        self._representable(spec)
        out = []
        for layer, d in spec.units():
            cell, s = _cell_key(layer, d, spec.directions), spec.suffix(layer, d)
            for gate, (i_name, h_name) in DENSES[spec.cell].items():
                out.append(Piece("weight_ih" + s, at(at(cell, i_name), "kernel"), (), KERNEL, {}, gate))
                out.append(Piece("weight_hh" + s, at(at(cell, h_name), "kernel"), (), KERNEL, {}, gate))
                if not spec.bias:
                    continue
                for name in (i_name, h_name):
                    if name in BIASES[spec.cell]:
                        param, fold = BIASES[spec.cell][name]
                        out.append(Piece(param + s, at(at(cell, name), "bias"), (), BIAS, {}, gate,
                                         fold=fold + s if fold else None))
        return out

    def assemble(self, arrays: dict[str, Any], spec: RNNSpec, **_: Any) -> list[dict[str, Any]]:
        def cell(layer: int, d: int) -> dict[str, Any]:
            key = _cell_key(layer, d, spec.directions)
            return {name: {leaf: arrays[at(at(key, name), leaf)]
                           for leaf in (("kernel", "bias") if name in BIASES[spec.cell] else ("kernel",))}
                    for name in _names(spec.cell)}

        if spec.directions == 1:
            return [{"cell": cell(k, 0)} for k in range(spec.num_layers)]
        return [{DIRECTIONS[d]: {"cell": cell(k, d)} for d in range(2)} for k in range(spec.num_layers)]

    def _representable(self, spec: RNNSpec) -> None:
        if spec.proj_size:
            raise LayoutError(f"proj_size={spec.proj_size}: {self.refuses['proj_size']}")

    # -- structure ------------------------------------------------------------------
    def infer(self, source: Any, *, mode: str, **_: Any) -> tuple[RNNSpec, dict[str, Any]]:
        """Read a cell, ``nn.RNN`` or ``nn.Bidirectional`` param tree, or a list of them.

        Raises:
            LayoutError: a missing, unexpected or wrongly nested key, cells of another type,
                or a shape that does not fit (the message names the key path).
            TypeError: ``source`` is not a mapping or list, or an array is not floating point.
        """
        cell = "RNN" if mode.startswith("RNN") else mode
        layers = [self._read_layer(path, value, cell) for path, value in _layer_items(source)]
        first = layers[0][0]
        i_name, h_name = DENSES[cell][self.gates[cell][0]]
        for name, axes in ((h_name, "(hidden, hidden)"), (i_name, "(input, hidden)")):
            kernel, path = first.dense[name]["kernel"], at(at(first.path, name), "kernel")
            if kernel.ndim != 2:
                raise LayoutError(f"{path}: expected 2 axes {axes}, got {kernel.ndim} axes {tuple(kernel.shape)}")
        H = int(first.dense[h_name]["kernel"].shape[1])  # square: transposing it cannot mislead
        I = int(kernel.shape[0])
        if kernel.shape[1] != H and kernel.shape[0] == H:
            raise LayoutError(f"{path} (Flax layout): expected (input, hidden={H}), got {tuple(kernel.shape)}; "
                              "Flax kernels are (in, hidden), the transpose of torch's weights")
        D = len(layers[0])
        for k, layer in enumerate(layers):
            if len(layer) != D:
                kind = ("an nn.Bidirectional", "an nn.RNN or a cell")
                raise LayoutError(f"{layer[0].layer_path}: layer {k} is {kind[len(layer) == 1]} but layer 0 is "
                                  f"{kind[D == 1]}; a torch module is bidirectional in every layer or in none")
        spec = RNNSpec(mode="RNN_TANH" if cell == "RNN" else cell, input_size=I, hidden_size=H,
                       num_layers=len(layers), bidirectional=D == 2, bias=True)
        shapes = self.shapes(spec)
        leaves = {}
        for k, layer in enumerate(layers):
            for d, found in enumerate(layer):
                canon = _cell_key(k, d, D)
                for name in _names(cell):
                    for leaf_name, arr in found.dense[name].items():
                        key = at(at(canon, name), leaf_name)
                        check_shape(at(at(found.path, name), leaf_name), arr, shapes[key], layout=self.name,
                                    hint=_hint(leaf_name, arr, k, D, H))
                        leaves[key] = arr
        return spec, leaves

    def _read_layer(self, path: str, value: Any, cell: str) -> list[_Cell]:
        """One layer: per direction, the cell's Dense leaves as arrays, with their key paths."""
        what = "an nn.RNN ({'cell': ...}), nn.Bidirectional ({'forward_rnn', 'backward_rnn'}) or cell param dict"
        m = as_mapping(value, path, what)
        if "forward_rnn" in m or "backward_rnn" in m:
            check_keys(m, path, required=DIRECTIONS, what="an nn.Bidirectional param tree")
            cells = []
            for name in DIRECTIONS:
                sub = as_mapping(m[name], at(path, name), "an nn.RNN param tree {'cell': ...}")
                check_keys(sub, at(path, name), required=("cell",), what="an nn.RNN param tree")
                cells.append(at(at(path, name), "cell"))
            sources = [m[name]["cell"] for name in DIRECTIONS]
        elif "cell" in m:
            check_keys(m, path, required=("cell",), what="an nn.RNN param tree")
            cells, sources = [at(path, "cell")], [m["cell"]]
        else:
            if m and not set(m) & set(_names(cell)) and all(isinstance(v, Mapping) for v in m.values()):
                first = next(iter(m))
                raise LayoutError(
                    f"{path}: keys {', '.join(map(repr, m))} are not an nn.RNN, nn.Bidirectional or "
                    f"{CELL_NAMES[cell]} param tree; for a stack of layers pass a list, bottom first, "
                    f"e.g. [{at(path, first)}, ...]"
                )
            cells, sources = [path], [m]
        return [_Cell(self._read_cell(p, params, cell), p, path) for p, params in zip(cells, sources)]

    def _read_cell(self, path: str, value: Any, cell: str) -> dict[str, dict[str, Any]]:
        m = as_mapping(value, path, f"a Flax {CELL_NAMES[cell]} param dict")
        keys = frozenset(m)
        if keys in OTHER_CELLS:
            raise LayoutError(f"{path}: these are the params of a Flax {OTHER_CELLS[keys]}")
        for other in DENSES:
            if other != cell and keys == frozenset(_names(other)):
                raise LayoutError(f"{path}: these are the params of a Flax {CELL_NAMES[other]}; "
                                  f"use Numpy{other}.from_flax")
        check_keys(m, path, required=_names(cell), what=f"a Flax {CELL_NAMES[cell]}")
        dense = {}
        for name in _names(cell):
            sub = as_mapping(m[name], at(path, name), "a Dense param dict {'kernel'[, 'bias']}")
            leaves = ("kernel", "bias") if name in BIASES[cell] else ("kernel",)
            check_keys(sub, at(path, name), required=leaves, what=f"the Dense {name!r} of a {CELL_NAMES[cell]}")
            dense[name] = {k: leaf(sub[k], at(at(path, name), k)) for k in leaves}
        return dense


def _layer_items(source: Any) -> list[tuple[str, Any]]:
    """``(key path, layer tree)`` per layer, unwrapping ``{"params": ...}``."""
    path, value = "params", source
    if isinstance(value, Mapping) and set(value) == {"params"}:
        path, value = at(path, "params"), value["params"]
    if is_sequence(value):
        if not value:
            raise LayoutError(f"{path}: an empty list; pass one param tree per layer, bottom first")
        items = [(at(path, k), v) for k, v in enumerate(value)]
    elif isinstance(value, Mapping):
        items = [(path, value)]
    else:
        raise TypeError(f"{path}: expected a Flax param tree (a mapping) or a list of them, got {type(value).__name__}")
    return [(at(p, "params"), v["params"]) if isinstance(v, Mapping) and set(v) == {"params"} else (p, v)
            for p, v in items]


def _hint(leaf_name: str, arr: Any, layer: int, D: int, H: int) -> str:
    shape = tuple(arr.shape)
    if leaf_name == "kernel" and len(shape) == 2 and shape[::-1] != shape and shape[1] != H and shape[0] == H:
        return "Flax kernels are (in, hidden), the transpose of torch's weights"
    if leaf_name == "kernel" and layer > 0 and len(shape) == 2 and shape[0] == (3 - D) * H:
        return f"layer {layer} reads the {D * H}-wide output of the layer below ({D} direction(s) * hidden)"
    return ""


FLAX = FlaxLayout()
