r"""The Keras 3 layout: ``GRU``, ``LSTM`` and ``SimpleRNN`` layers and their ``get_weights()``.

Shape symbols as in :mod:`numpyrnn.spec` (``G`` gates, ``H`` hidden = Keras
``units``, ``I`` input; layer ``k > 0`` reads ``D*H`` features).

A Keras recurrent layer holds, in ``layer.get_weights()`` order:

====================  ==========  ==============================================  =================
Keras                 shape       torch                                           gate order
====================  ==========  ==============================================  =================
``kernel``            ``(I, G*H)``  ``weight_ih`` ``(G*H, I)``: transposed         GRU ``z,r,h``;
``recurrent_kernel``  ``(H, G*H)``  ``weight_hh`` ``(G*H, H)``: transposed         LSTM ``i,f,c,o``
GRU ``bias``          ``(2, 3*H)``  row 0 ``bias_ih``, row 1 ``bias_hh``
LSTM/RNN ``bias``     ``(G*H,)``    ``bias_ih``; ``bias_hh`` is zero (summed back
                                    into ``bias`` on export)
====================  ==========  ==============================================  =================

In einops terms (``g`` gates in the Keras order above, ``h`` units)::

    weight_ih   (g h) i  <-  kernel            "i (g h) -> g h i"
    weight_hh   (g h) j  <-  recurrent_kernel  "j (g h) -> g h j"
    bias_ih     (g h)    <-  bias[0] (GRU) or bias (LSTM, SimpleRNN)   "(g h) -> g h"
    bias_hh     (g h)    <-  bias[1] (GRU)                             "(g h) -> g h"

``Bidirectional(layer)`` holds the forward layer's list followed by the
backward layer's (6 arrays, 4 without bias); torch's ``_reverse`` parameters
take the second half. A stack is a list of layers, bottom first.

Keras's GRU computes ``h' = z * h + (1 - z) * hh`` with the reset gate applied
after the recurrent matmul when ``reset_after=True`` (the Keras 3 default):
exactly torch's GRU. With ``reset_after=False`` the reset gate multiplies ``h``
before the matmul, which ``nn.GRU`` cannot compute; that layer is refused.

Keras is imported by nothing here: a layer object is read through its
attributes (``cell``, ``forward_layer``, ``get_weights`` ...), and raw
``get_weights()`` lists never touch Keras at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..engine import to_array
from ..errors import LayoutError
from ..spec import TORCH_GATES, RNNSpec
from .base import Axis, Layout, Piece

__all__ = ["KerasLayout", "KERAS"]

# --------------------------------------------------------------------------------------
# declarations
# --------------------------------------------------------------------------------------

#: Keras cell class -> numpyrnn cell.
CELLS = {"GRUCell": "GRU", "LSTMCell": "LSTM", "SimpleRNNCell": "RNN"}

#: Keras layer name of each cell, for messages.
LAYER_NAMES = {"GRU": "GRU", "LSTM": "LSTM", "RNN": "SimpleRNN"}

#: numpyrnn class of each cell, for messages.
CLASSES = {"GRU": "NumpyGRU", "LSTM": "NumpyLSTM", "RNN": "NumpyRNN"}

#: Keras gate order, in torch letters (Keras GRU z,r,h; LSTM i,f,c,o).
GATES = {"GRU": "zrn", "LSTM": "ifgo", "RNN": "h"}

#: The arrays of one direction, in ``get_weights()`` order.
NAMES = ("kernel", "recurrent_kernel", "bias")

#: Where each torch parameter comes from: (parameter, Keras array, index, einops pattern to torch's
#: ``(g, h[, width])``, fold). ``fold`` marks a single bias: all of it goes to ``bias_ih``, ``bias_hh``
#: is zero, and export sums ``bias_hh`` back in. The GRU's two-row bias maps row by row.
_KERNELS = [
    ("weight_ih", "kernel", (), "i (g h) -> g h i", False),
    ("weight_hh", "recurrent_kernel", (), "j (g h) -> g h j", False),
]
PIECES: dict[str, list[tuple[str, str, tuple, str, bool]]] = {
    "GRU": _KERNELS + [("bias_ih", "bias", (0,), "(g h) -> g h", False),
                       ("bias_hh", "bias", (1,), "(g h) -> g h", False)],
    "LSTM": _KERNELS + [("bias_ih", "bias", (), "(g h) -> g h", True)],
    "RNN": _KERNELS + [("bias_ih", "bias", (), "(g h) -> g h", True)],
}

#: Activations torch computes, per cell and activation attribute.
ACTIVATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "GRU": {"activation": ("tanh",), "recurrent_activation": ("sigmoid",)},
    "LSTM": {"activation": ("tanh",), "recurrent_activation": ("sigmoid",)},
    "RNN": {"activation": ("tanh", "relu")},
}

#: What is refused, and why.
REFUSES = {
    "reset_after=False": (
        "the GRU applies the reset gate before the recurrent matmul (r * h) @ U_h, but nn.GRU "
        "applies it after: r * (h @ U_h + b_hn); no choice of weights makes the two equal. "
        "Retrain or fine-tune the Keras model with reset_after=True (the Keras 3 default)"
    ),
    "activation": (
        "nn.GRU and nn.LSTM use tanh for the candidate and cell output and sigmoid for the gates; "
        "nn.RNN uses tanh or relu; other activations (hard_sigmoid, linear, custom functions) "
        "compute something else"
    ),
    "go_backwards": (
        "the layer reads the sequence backwards and returns outputs in reversed time order, while "
        "torch's unidirectional modules read forwards (its only backward pass is the reverse "
        "direction of a bidirectional module). To use it anyway, load layer.get_weights() and flip "
        "the time axis of the input and output yourself"
    ),
    "merge_mode": (
        "torch's bidirectional modules always concatenate [forward, backward] (merge_mode='concat'); "
        "sum, mul, ave and None cannot be represented. Build two unidirectional modules instead "
        "and merge their outputs yourself"
    ),
    "time_major": (
        "time_major only changes how inputs are laid out, not the weights; load layer.get_weights() "
        "with batch_first=False instead"
    ),
}


def _unit(spec: RNNSpec, d: int) -> str:
    return ("backward " if d else "forward ") if spec.bidirectional else ""


def key(spec: RNNSpec, layer: int, d: int, name: str) -> str:
    """The leaf key of one array: its path in the ``get_weights()`` form, and what it is.

    ``source[j]`` for one layer, ``source[k][j]`` in a stack, e.g.
    ``"source[1][5] (layer 1, backward bias)"``.
    """
    n = 3 if spec.bias else 2
    j = d * n + NAMES.index(name)
    path = f"source[{j}]" if spec.num_layers == 1 else f"source[{layer}][{j}]"
    return f"{path} (layer {layer}, {_unit(spec, d)}{name})"


# --------------------------------------------------------------------------------------
# reading a source: layer objects or get_weights() lists
# --------------------------------------------------------------------------------------

@dataclass
class _Layer:
    """One layer of the source: per direction, its arrays and their paths."""

    path: str
    arrays: list[list[Any]]      # per direction: kernel, recurrent_kernel[, bias]
    paths: list[list[str]]
    cell: str | None = None      # known for layer objects
    activation: str | None = None  # SimpleRNN activation, known for layer objects


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor)) or (
        hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (list, tuple))
    )


def _is_layer(x: Any) -> bool:
    return not isinstance(x, (list, tuple, dict)) and not _is_array(x) and hasattr(x, "get_weights")


def _kind(x: Any) -> str:
    if _is_array(x):
        return "array"
    if isinstance(x, (list, tuple)):
        return "list"
    if _is_layer(x):
        return "layer"
    return type(x).__name__


def _split(source: Any) -> list[tuple[str, Any]]:
    """``(path, entry)`` per layer: an entry is a layer object or a ``get_weights()`` list."""
    if _is_layer(source):
        return [("source", source)]
    if not isinstance(source, (list, tuple)):
        raise TypeError(
            f"from_keras takes a Keras GRU/LSTM/SimpleRNN layer, a Bidirectional wrapper, a list of those, "
            f"or the list layer.get_weights() returns (or a list of such lists); got {type(source).__name__}"
            + ("; a single array is not enough: pass the whole get_weights() list" if _is_array(source) else "")
        )
    if not source:
        raise LayoutError("source: empty list; expected layer.get_weights() (2, 3, 4 or 6 arrays) or a list of layers")
    kinds = [_kind(x) for x in source]
    if all(k == "array" for k in kinds):
        return [("source", list(source))]
    if all(k in ("list", "layer") for k in kinds):
        return [(f"source[{k}]", entry) for k, entry in enumerate(source)]
    first = kinds[0]
    for k, kind in enumerate(kinds):
        if (kind == "array") != (first == "array") or kind not in ("array", "list", "layer"):
            raise LayoutError(
                f"source[{k}]: got {'an' if kind[0] in 'aeiou' else 'a'} {kind} where source[0] is "
                f"{'an' if first[0] in 'aeiou' else 'a'} {first}; expected either one layer's get_weights() "
                f"list of arrays, or a list of layers (each a Keras layer or a get_weights() list), bottom first"
            )
    raise LayoutError("source: could not tell layers from arrays")  # unreachable: kept for mypy


def _from_arrays(path: str, weights: Sequence[Any]) -> _Layer:
    n = len(weights)
    for j, x in enumerate(weights):
        if not _is_array(x):
            raise LayoutError(
                f"{path}[{j}]: expected an array, got {_kind(x)}; a layer's get_weights() list holds arrays "
                f"only (a list inside a list of arrays is one nesting level too deep or too shallow)"
            )
    if n not in (2, 3, 4, 6):
        raise LayoutError(
            f"{path}: {n} arrays; expected the list layer.get_weights() returns: 3 (kernel, recurrent_kernel, "
            f"bias), 2 with use_bias=False, or 6 (4 without bias) for a Bidirectional layer, forward then backward"
        )
    per = n if n in (2, 3) else n // 2
    dirs = [list(weights[i:i + per]) for i in range(0, n, per)]
    paths = [[f"{path}[{i + j}]" for j in range(per)] for i in range(0, n, per)]
    return _Layer(path, dirs, paths)


def _activation_name(fn: Any) -> str:
    """``"tanh"`` for Keras's (or ``keras.ops``') tanh; otherwise a name that no rule accepts.

    A function counts as Keras's own when the Keras module it names holds it
    under that name, so a user function that happens to be called ``tanh`` is
    not mistaken for it.
    """
    name = getattr(fn, "__name__", None) or type(fn).__name__
    module = getattr(fn, "__module__", "") or ""
    if module.split(".")[0] in ("keras", "tf_keras") and getattr(sys.modules.get(module), name, None) is fn:
        return name
    return f"{name} (from {module or 'an unknown module'}, not a Keras activation)"


def _refuse(path: str, what: str, why: str) -> LayoutError:
    return LayoutError(f"{path}: {what} cannot be loaded into torch: {why}")


def _check_plain(path: str, layer: Any, mode: str, *, backward: bool = False, variants: Any = None) -> str:
    """Refusals for one plain recurrent layer; returns its numpyrnn cell.

    With ``variants`` (a :class:`numpyrnn.variants.loading.Found`) what only a
    variant module computes is noted there instead of refused.
    """
    cell_obj = getattr(layer, "cell", None)
    cell_name = type(cell_obj).__name__
    if cell_obj is None or cell_name not in CELLS:
        what = f"a Keras {type(layer).__name__}" + (f" over {cell_name}" if cell_obj is not None else "")
        model = "; for a model, pass the list of its recurrent layers, e.g. model.layers" if hasattr(layer, "layers") else ""
        raise LayoutError(
            f"{path}: {what} is not a layer numpyrnn can load: from_keras takes GRU, LSTM and SimpleRNN "
            f"layers (or keras.layers.RNN over GRUCell/LSTMCell/SimpleRNNCell) and Bidirectional wrappers of "
            f"them; pass a stack of cells as one layer per cell{model}"
        )
    cell = CELLS[cell_name]
    want = "RNN" if mode.startswith("RNN") else mode
    if cell != want:
        raise LayoutError(
            f"{path}: is a Keras {LAYER_NAMES[cell]} layer, but {CLASSES[want]}.from_keras builds a {want}; "
            f"use {CLASSES[cell]}.from_keras"
        )
    if getattr(layer, "time_major", False):
        raise _refuse(path, "time_major=True", REFUSES["time_major"])
    if bool(getattr(layer, "go_backwards", False)) != backward:
        if backward:
            raise LayoutError(
                f"{path}: the backward layer of a Bidirectional wrapper must have go_backwards=True, got False; "
                f"a layer that reads forwards in both directions is not a torch bidirectional module"
            )
        if variants is None:
            raise _refuse(path, "go_backwards=True", REFUSES["go_backwards"])
        variants.note(path, "go_backwards", True)
    if cell == "GRU" and not getattr(cell_obj, "reset_after", True):
        if variants is None:
            raise _refuse(path, "a GRU with reset_after=False", REFUSES["reset_after=False"])
        variants.note(path, "reset_after", False)
    for attr, allowed in ACTIVATIONS[cell].items():
        name = _activation_name(getattr(cell_obj, attr, None))
        if name not in allowed and variants is not None and cell != "RNN":
            variants.note(path, attr, getattr(cell_obj, attr, None))
        elif name not in allowed:
            raise _refuse(
                path, f"{attr}={name}",
                f"torch computes {attr} as {' or '.join(allowed)} here; " + REFUSES["activation"],
            )
    return cell


def _from_layer(path: str, layer: Any, mode: str, variants: Any = None) -> _Layer:
    if hasattr(layer, "forward_layer") and hasattr(layer, "backward_layer"):
        merge = getattr(layer, "merge_mode", "concat")
        if merge != "concat":
            if variants is None:
                raise _refuse(path, f"Bidirectional(merge_mode={merge!r})", REFUSES["merge_mode"])
            variants.note(path, "merge_mode", merge)
        fwd, bwd = layer.forward_layer, layer.backward_layer
        cell = _check_plain(f"{path}.forward_layer", fwd, mode, variants=variants)
        _check_plain(f"{path}.backward_layer", bwd, mode, backward=True, variants=variants)
        for attr in ("units", "use_bias"):
            a, b = getattr(fwd.cell, attr, None), getattr(bwd.cell, attr, None)
            if a != b:
                raise LayoutError(
                    f"{path}: backward_layer has {attr}={b!r}, forward_layer {attr}={a!r}; a torch bidirectional "
                    f"layer has the same configuration in both directions"
                )
        if cell == "RNN" and _activation_name(fwd.cell.activation) != _activation_name(bwd.cell.activation):
            raise LayoutError(
                f"{path}: forward and backward SimpleRNN activations differ; nn.RNN has one nonlinearity"
            )
        parts = [(f"{path}.forward_layer", fwd), (f"{path}.backward_layer", bwd)]
    else:
        cell = _check_plain(path, layer, mode, variants=variants)
        parts = [(path, layer)]
    arrays, paths = [], []
    for p, sub in parts:
        weights = list(sub.get_weights())
        if not weights:
            raise LayoutError(
                f"{p}: the layer has no weights yet; build it first (call it on a batch, or "
                f"layer.build((None, None, input_size)))"
            )
        expected = 3 if sub.cell.use_bias else 2
        if len(weights) != expected:
            raise LayoutError(f"{p}: get_weights() returned {len(weights)} arrays, expected {expected}")
        arrays.append(weights)
        paths.append([f"{p}.{NAMES[j]}" for j in range(expected)])
    activation = _activation_name(layer.forward_layer.cell.activation if len(parts) == 2 else layer.cell.activation)
    return _Layer(path, arrays, paths, cell=cell, activation=activation if cell == "RNN" else None)


def _check_unit(mode: str, unit: list[Any], paths: list[str], units: int | None, variants: Any = None,
                layer: str = "source") -> int:
    """Tell arrays of another cell apart by the recurrent kernel's ``(H, G*H)`` shape.

    Also checks that ``H`` is the same as layer 0's (``units``); returns ``H``.
    """
    G = len(TORCH_GATES[mode])
    want = "RNN" if mode.startswith("RNN") else mode
    rk = to_array(unit[1], paths[1])
    if rk.ndim != 2:
        raise LayoutError(f"{paths[1]} (recurrent_kernel): expected 2 axes (units, {G}*units), got shape {tuple(rk.shape)}")
    H, cols = int(rk.shape[0]), int(rk.shape[1])
    if H < 1 or cols % H or cols // H not in (1, 3, 4):
        raise LayoutError(
            f"{paths[1]} (recurrent_kernel): shape {tuple(rk.shape)} is not (units, G*units) for G = 1, 3 or 4; "
            f"is the list in get_weights() order (kernel, recurrent_kernel, bias)?"
        )
    found = {1: "RNN", 3: "GRU", 4: "LSTM"}[cols // H]
    if found != want:
        raise LayoutError(
            f"{paths[1]} (recurrent_kernel): shape {tuple(rk.shape)} = (units, {cols // H}*units) belongs to a "
            f"Keras {LAYER_NAMES[found]}, but {CLASSES[want]}.from_keras builds a {want} ({G}*units); "
            f"use {CLASSES[found]}.from_keras"
        )
    if units is not None and H != units:
        raise LayoutError(
            f"{paths[1]} (recurrent_kernel): shape {tuple(rk.shape)} is a layer of {H} units, but layer 0 has "
            f"{units}: every layer and direction of a torch module has the same hidden size; build one module "
            f"per layer instead"
        )
    if want == "GRU" and len(unit) == 3:
        bias = to_array(unit[2], paths[2])
        if bias.ndim == 1 and int(bias.shape[0]) == 3 * H and variants is not None:
            variants.note(layer, "reset_after", False)
        elif bias.ndim == 1 and int(bias.shape[0]) == 3 * H:
            raise _refuse(paths[2], f"a GRU bias of shape (3*units,) = {tuple(bias.shape)}, which means reset_after=False,",
                          REFUSES["reset_after=False"])
    return H


# --------------------------------------------------------------------------------------
# the layout
# --------------------------------------------------------------------------------------

class KerasLayout(Layout):
    """Keras 3 ``GRU``/``LSTM``/``SimpleRNN`` weights (see the module docstring)."""

    name = "keras"
    gates = GATES
    refuses = REFUSES

    def infer(self, source: Any, *, mode: str, variants: Any = None, **_: Any) -> tuple[RNNSpec, dict[str, Any]]:
        """Read layers or ``get_weights()`` lists; refuse what torch cannot compute.

        Returns the spec (``H`` and ``I`` from layer 0, ``D`` from the number of
        arrays, ``L`` from the list) and the arrays under :func:`key` names. Every
        shape is then checked by the engine against :meth:`shapes`.
        """
        layers = [
            _from_layer(path, entry, mode, variants) if _is_layer(entry) else _from_arrays(path, entry)
            for path, entry in _split(source)
        ]
        first = layers[0]
        D, bias = len(first.arrays), len(first.arrays[0]) == 3
        units: int | None = None
        for lay in layers:
            if len(lay.arrays) != D:
                raise LayoutError(
                    f"{lay.path}: {'bidirectional' if len(lay.arrays) == 2 else 'unidirectional'}, but "
                    f"{first.path} is {'bidirectional' if D == 2 else 'unidirectional'}; every layer of a torch "
                    f"module has the same number of directions"
                )
            if (len(lay.arrays[0]) == 3) != bias:
                raise LayoutError(
                    f"{lay.path}: {'has a bias' if not bias else 'has no bias (use_bias=False)'}, but "
                    f"{first.path} {'has one' if bias else 'has none'}; torch modules have biases in every layer "
                    f"or in none (pass zeros of the bias's shape for a layer without one)"
                )
            for unit, paths in zip(lay.arrays, lay.paths):
                units = _check_unit(mode, unit, paths, units, variants, lay.path)
        if mode.startswith("RNN"):
            acts = {lay.activation for lay in layers if lay.activation is not None}
            if len(acts) > 1:
                raise LayoutError(
                    f"source: SimpleRNN layers with different activations {sorted(acts)}; nn.RNN has one "
                    f"nonlinearity for every layer"
                )
            if acts:
                mode = "RNN_RELU" if acts == {"relu"} else "RNN_TANH"
        kernel = to_array(first.arrays[0][0], first.paths[0][0])
        if kernel.ndim != 2:
            raise LayoutError(f"{first.paths[0][0]} (kernel): expected 2 axes (input, G*units), got shape {tuple(kernel.shape)}")
        spec = RNNSpec(mode=mode, input_size=int(kernel.shape[0]), hidden_size=int(units or 0), num_layers=len(layers),
                       bidirectional=D == 2, bias=bias)
        leaves = {
            key(spec, k, d, NAMES[j]): array
            for k, lay in enumerate(layers)
            for d, unit in enumerate(lay.arrays)
            for j, array in enumerate(unit)
        }
        return spec, leaves

    @staticmethod
    def _no_projection(spec: RNNSpec) -> None:
        if spec.proj_size:
            raise LayoutError(
                f"Keras LSTM layers have no projection: a torch LSTM with proj_size={spec.proj_size} "
                f"cannot be written as Keras weights"
            )

    def shapes(self, spec: RNNSpec, **_: Any) -> dict[str, Sequence[Axis]]:
        self._no_projection(spec)
        G, H, D = spec.gates, spec.hidden_size, spec.directions
        g = f"{G}*" if G > 1 else ""
        out: dict[str, Sequence[Axis]] = {}
        for layer, d in spec.units():
            width = "input" if layer == 0 else ("2*units" if D == 2 else "units")
            out[key(spec, layer, d, "kernel")] = (Axis(width, spec.layer_input(layer)), Axis(f"{g}units", G * H))
            out[key(spec, layer, d, "recurrent_kernel")] = (Axis("units", H), Axis(f"{g}units", G * H))
            if spec.bias:
                if spec.mode == "GRU":
                    out[key(spec, layer, d, "bias")] = (Axis("input/recurrent", 2), Axis("3*units", 3 * H))
                else:
                    out[key(spec, layer, d, "bias")] = (Axis(f"{g}units", G * H),)
        return out

    def pieces(self, spec: RNNSpec, **_: Any) -> list[Piece]:
        self._no_projection(spec)
        gates = GATES[spec.cell]
        return [
            Piece(param + s, key(spec, layer, d, array), index, pattern, {"g": spec.gates}, gates,
                  fold=("bias_hh" + s) if fold else None)
            for layer, d in spec.units()
            for s in [spec.suffix(layer, d)]
            for param, array, index, pattern, fold in PIECES[spec.cell]
            if spec.bias or not param.startswith("bias")
        ]

    def hint(self, spec: RNNSpec, **_: Any) -> Callable[[str, tuple], str]:
        H, D = spec.hidden_size, spec.directions

        def hint(name: str, got: tuple) -> str:
            if "kernel" in name and "recurrent" not in name and "layer 0" not in name and len(got) == 2:
                if got[0] == H and D == 2:
                    return "the layer below is bidirectional and outputs 2*units features; is this layer's input from a unidirectional layer?"
                if got[0] == 2 * H and D == 1:
                    return "2*units features is the output of a bidirectional layer; wrap the layers in Bidirectional"
            if name.endswith("bias)") and spec.mode == "GRU" and got == (6 * H,):
                return ("a flat (2*3*units,) bias is how Keras 2's CuDNNGRU stored it; if it holds the input-side "
                        "then the recurrent-side biases, pass bias.reshape(2, -1)")
            return ""

        return hint

    def assemble(self, arrays: dict[str, Any], spec: RNNSpec, **_: Any) -> list[list[np.ndarray]]:
        """One ``set_weights`` list per layer: forward arrays, then backward ones."""
        names = NAMES if spec.bias else NAMES[:2]
        return [
            [arrays[key(spec, layer, d, n)] for d in range(spec.directions) for n in names]
            for layer in range(spec.num_layers)
        ]


KERAS = KerasLayout()
