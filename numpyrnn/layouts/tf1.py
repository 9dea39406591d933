r"""The TF1 layout: ``LSTMCell``/``BasicLSTMCell``, ``BasicRNNCell`` and ``CudnnCompatibleGRUCell`` variables.

Shape symbols as in :mod:`numpyrnn.spec` (``H`` = TF1 ``num_units``, ``P`` =
``num_proj``, ``R`` = ``P`` or ``H``, ``I`` input; layer ``k > 0`` reads
``D*R`` features). TF1 cells multiply ``concat([x, h])`` by one fused kernel,
so the kernel's rows are the input features followed by the recurrent ones.

``LSTMCell`` / ``BasicLSTMCell`` (``NumpyLSTM``), gates ``i, j, f, o`` (``j`` is torch's ``g``):

=======================  ===============  ===========================================================
TF1 variable             shape            torch
=======================  ===============  ===========================================================
``kernel``               ``[I+R, 4*H]``   rows ``:I`` -> ``weight_ih`` ``(4*H, I)``, rows ``I:`` ->
                                          ``weight_hh`` ``(4*H, R)``; transposed, ``i,j,f,o -> i,f,g,o``
``bias``                 ``[4*H]``        ``bias_ih`` (plus ``forget_bias`` on ``f``); ``bias_hh`` = 0
``projection/kernel``    ``[H, P]``       ``weight_hr`` ``(P, H)``, transposed
=======================  ===============  ===========================================================

``BasicRNNCell`` (``NumpyRNN``): ``kernel`` ``[I+H, H]`` and ``bias`` ``[H]``, mapped the same way.

``CudnnCompatibleGRUCell`` (``NumpyGRU``), gates ``r, u`` (``u`` is torch's ``z``) plus the candidate:

==========================================  ===============  ============================================
TF1 variable                                shape            torch
==========================================  ===============  ============================================
``gates/kernel``                            ``[I+H, 2*H]``   ``r, z`` rows of ``weight_ih``/``weight_hh``
``gates/bias``                              ``[2*H]``        ``r, z`` of ``bias_ih`` (``bias_hh`` 0 there)
``candidate/input_projection/kernel``       ``[I, H]``       ``n`` rows of ``weight_ih``
``candidate/input_projection/bias``         ``[H]``          ``n`` of ``bias_ih`` (``b_in``)
``candidate/hidden_projection/kernel``      ``[H, H]``       ``n`` rows of ``weight_hh``
``candidate/hidden_projection/bias``        ``[H]``          ``n`` of ``bias_hh`` (``b_hn``)
==========================================  ===============  ============================================

In einops terms::

    weight_ih  (g h) i  <-  kernel[:I]   "i (g h) -> g h i"
    weight_hh  (g h) j  <-  kernel[I:]   "j (g h) -> g h j"
    bias_ih    (g h)    <-  bias         "(g h) -> g h"     (+ forget_bias on f)
    weight_hr  p h      <-  projection/kernel  "h p -> p h"

``LSTMCell`` adds ``forget_bias`` (default 1.0) to the ``f`` pre-activation at
run time; it is not stored in the checkpoint. Import adds it to ``bias_ih``'s
``f`` block, export subtracts it again. Use ``forget_bias=0`` for weights
restored from ``CudnnLSTM``/``CudnnCompatibleLSTMCell`` checkpoints.

A layer is a mapping of bare variable names (the part after the cell's scope,
e.g. ``kernel`` for ``rnn/multi_rnn_cell/cell_0/lstm_cell/kernel``); a stack is
a list of layers, bottom first; a bidirectional layer is ``{"fw": layer, "bw":
layer}``, as ``stack_bidirectional_rnn`` builds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np

from ..engine import to_array
from ..errors import LayoutError
from ..spec import RNNSpec
from .base import Axis, Layout, Piece

__all__ = ["TF1Layout", "TF1"]

# --------------------------------------------------------------------------------------
# declarations
# --------------------------------------------------------------------------------------

#: TF1 gate order per cell, in torch letters (LSTM i,j,f,o; GRU r,u then the candidate).
GATES = {"LSTM": "igfo", "GRU": "rzn", "RNN": "h"}

#: The TF1 cell each numpyrnn cell is read from, for messages.
CELL_NAMES = {"LSTM": "LSTMCell/BasicLSTMCell", "GRU": "CudnnCompatibleGRUCell", "RNN": "BasicRNNCell"}
CLASSES = {"GRU": "NumpyGRU", "LSTM": "NumpyLSTM", "RNN": "NumpyRNN"}

#: Variables of one cell: name -> required.
VARIABLES: dict[str, dict[str, bool]] = {
    "LSTM": {"kernel": True, "bias": True, "projection/kernel": False},
    "RNN": {"kernel": True, "bias": True},
    "GRU": {
        "gates/kernel": True, "gates/bias": True,
        "candidate/input_projection/kernel": True, "candidate/input_projection/bias": True,
        "candidate/hidden_projection/kernel": True, "candidate/hidden_projection/bias": True,
    },
}

#: Variables of the cells only :mod:`numpyrnn.variants` computes (read with ``variants=True``).
VARIANT_VARIABLES: dict[str, dict[str, bool]] = {
    "GRUCell": {"gates/kernel": True, "gates/bias": True, "candidate/kernel": True, "candidate/bias": True},
    "peepholes": {**VARIABLES["LSTM"], "w_i_diag": True, "w_f_diag": True, "w_o_diag": True},
}

#: Variables of TF1 cells torch cannot compute, and why.
REFUSES = {
    "GRUCell": (
        "TF1's GRUCell (variables gates/kernel, gates/bias, candidate/kernel, candidate/bias) applies the "
        "reset gate before the candidate matmul, concat([x, r * h]) @ K_c, but nn.GRU applies it after: "
        "r * (W_hn h + b_hn); no choice of weights makes the two equal. Only CudnnCompatibleGRUCell weights "
        "(candidate/input_projection and candidate/hidden_projection) compute what nn.GRU does"
    ),
    "peepholes": (
        "LSTMCell(use_peepholes=True) adds w_i_diag * c, w_f_diag * c and w_o_diag * c to the gates; "
        "nn.LSTM has no peephole connections"
    ),
    "independent stacks": (
        "{'fw': [...], 'bw': [...]} is two independent stacks (bidirectional_dynamic_rnn over MultiRNNCell): "
        "each direction's layer k reads only its own direction below, while every torch bidirectional layer "
        "reads both directions' outputs. Load each direction as its own unidirectional stack instead"
    ),
}

#: Peephole variable names of LSTMCell.
PEEPHOLES = ("w_i_diag", "w_f_diag", "w_o_diag")

#: Torch parameter, TF1 variable, row range of the fused kernel ("x", "h" or None), gates, pattern.
#: ``fold`` marks a single bias whose torch counterpart on the recurrent side is zero.
_W, _B = "{x} (g h) -> g h {x}", "(g h) -> g h"
PIECES: dict[str, list[tuple[str, str, str | None, str, str, bool]]] = {
    "LSTM": [
        ("weight_ih", "kernel", "x", "igfo", _W, False),
        ("weight_hh", "kernel", "h", "igfo", _W, False),
        ("bias_ih", "bias", None, "igfo", _B, True),
    ],
    "RNN": [
        ("weight_ih", "kernel", "x", "h", _W, False),
        ("weight_hh", "kernel", "h", "h", _W, False),
        ("bias_ih", "bias", None, "h", _B, True),
    ],
    "GRU": [
        ("weight_ih", "gates/kernel", "x", "rz", _W, False),
        ("weight_hh", "gates/kernel", "h", "rz", _W, False),
        ("bias_ih", "gates/bias", None, "rz", _B, True),
        ("weight_ih", "candidate/input_projection/kernel", None, "n", _W, False),
        ("weight_hh", "candidate/hidden_projection/kernel", None, "n", _W, False),
        ("bias_ih", "candidate/input_projection/bias", None, "n", _B, False),
        ("bias_hh", "candidate/hidden_projection/bias", None, "n", _B, False),
    ],
}


def _cell(mode: str) -> str:
    return "RNN" if mode.startswith("RNN") else mode


def key(spec: RNNSpec, layer: int, d: int, name: str) -> str:
    """The leaf key of one variable: its path in the source, e.g. ``source[1]['bw']['kernel']``."""
    path = "source" + (f"[{layer}]" if spec.num_layers > 1 else "")
    if spec.bidirectional:
        path += "['bw']" if d else "['fw']"
    return f"{path}[{name!r}]"


def _shape(spec: RNNSpec, layer: int, name: str) -> tuple[Axis, ...]:
    """The TF1 shape of one variable, in named axes."""
    H, R, G = spec.hidden_size, spec.rec, spec.gates
    x = spec.layer_input(layer)
    rec = "proj" if spec.proj_size else "units"
    inp = "input" if layer == 0 else (f"2*{rec}" if spec.bidirectional else rec)
    table = {
        "kernel": (Axis(f"{inp}+{rec}", x + R), Axis(f"{G}*units" if G > 1 else "units", G * H)),
        "bias": (Axis(f"{G}*units" if G > 1 else "units", G * H),),
        "projection/kernel": (Axis("units", H), Axis("proj", spec.proj_size)),
        "gates/kernel": (Axis(f"{inp}+units", x + H), Axis("2*units", 2 * H)),
        "gates/bias": (Axis("2*units", 2 * H),),
        "candidate/input_projection/kernel": (Axis(inp, x), Axis("units", H)),
        "candidate/input_projection/bias": (Axis("units", H),),
        "candidate/hidden_projection/kernel": (Axis("units", H), Axis("units", H)),
        "candidate/hidden_projection/bias": (Axis("units", H),),
    }
    return table[name]


def _names(spec: RNNSpec) -> list[str]:
    names = [n for n, required in VARIABLES[spec.cell].items() if required]
    return names + (["projection/kernel"] if spec.proj_size else [])


# --------------------------------------------------------------------------------------
# reading a source
# --------------------------------------------------------------------------------------

def _split(source: Any) -> list[tuple[str, list[tuple[str, Mapping]]]]:
    """Per layer: ``(path, [(path, variables) per direction])``."""
    if isinstance(source, Mapping):
        entries = [("source", source)]
    elif isinstance(source, (list, tuple)):
        if not source:
            raise LayoutError("source: empty list; expected a mapping of TF1 variables per layer, bottom first")
        entries = [(f"source[{k}]", layer) for k, layer in enumerate(source)]
    else:
        raise TypeError(
            f"from_tf1 takes a mapping of TF1 variables (kernel, bias, ...), a list of them for a stack, or "
            f"{{'fw': ..., 'bw': ...}} for a bidirectional layer; got {type(source).__name__}"
        )
    layers = []
    for path, entry in entries:
        if not isinstance(entry, Mapping):
            raise LayoutError(
                f"{path}: expected a mapping of TF1 variables (or {{'fw': ..., 'bw': ...}}), got {type(entry).__name__}"
                + ("; a stack is one flat list of layers, bottom first" if isinstance(entry, (list, tuple)) else "")
            )
        if "fw" in entry or "bw" in entry:
            extra = sorted(set(entry) - {"fw", "bw"})
            missing = sorted({"fw", "bw"} - set(entry))
            if extra or missing:
                raise LayoutError(
                    f"{path}: a bidirectional layer is exactly {{'fw': ..., 'bw': ...}}; "
                    + (f"missing {missing}" if missing else f"unexpected keys {extra}")
                )
            if any(isinstance(entry[d], (list, tuple)) for d in ("fw", "bw")):
                raise LayoutError(f"{path}: cannot be loaded into torch: " + REFUSES["independent stacks"])
            for d in ("fw", "bw"):
                if not isinstance(entry[d], Mapping):
                    raise LayoutError(f"{path}[{d!r}]: expected a mapping of TF1 variables, got {type(entry[d]).__name__}")
            layers.append((path, [(f"{path}['fw']", entry["fw"]), (f"{path}['bw']", entry["bw"])]))
        else:
            layers.append((path, [(path, entry)]))
    return layers


def _check_names(path: str, variables: Mapping, mode: str, variants: Any = None) -> dict[str, Any]:
    """The variables of one cell, checked against what ``mode`` reads; ``None`` values dropped.

    With ``variants`` (a :class:`numpyrnn.variants.loading.Found`) a ``GRUCell`` and
    peepholes are noted there instead of refused.
    """
    cell = _cell(mode)
    names = {str(k): v for k, v in variables.items() if v is not None}
    table = VARIABLES[cell]
    if {"candidate/kernel", "candidate/bias"} & set(names) and variants is not None and cell == "GRU":
        variants.note(path, "reset_after", False)
        table = VARIANT_VARIABLES["GRUCell"]
    elif {"candidate/kernel", "candidate/bias"} & set(names):
        raise LayoutError(f"{path}: cannot be loaded into torch: " + REFUSES["GRUCell"])
    peepholes = sorted(set(PEEPHOLES) & set(names))
    if peepholes and variants is not None and cell == "LSTM":
        variants.note(path, "peepholes", True)
        table = VARIANT_VARIABLES["peepholes"]
    elif peepholes:
        raise LayoutError(f"{path}: {peepholes} cannot be loaded into torch: " + REFUSES["peepholes"])
    known = set(table)
    if cell != "GRU" and "gates/kernel" in names:
        raise LayoutError(
            f"{path}: these are CudnnCompatibleGRUCell variables (gates/..., candidate/...); use NumpyGRU.from_tf1"
        )
    if cell == "GRU" and "kernel" in names:
        raise LayoutError(
            f"{path}: these are LSTMCell or BasicRNNCell variables (kernel, bias); use NumpyLSTM.from_tf1 or "
            f"NumpyRNN.from_tf1. NumpyGRU.from_tf1 reads CudnnCompatibleGRUCell variables only: "
            + REFUSES["GRUCell"]
        )
    unknown = sorted(set(names) - known)
    if unknown:
        strip = ""
        tails = [k for k in unknown if "/" in k and any(k.endswith("/" + n) for n in known)]
        if tails:
            name = next(n for n in sorted(known, key=len, reverse=True) if tails[0].endswith("/" + n))
            strip = f"; strip the scope prefix, e.g. {tails[0][: -len(name)]!r}"
        raise LayoutError(
            f"{path}: unknown keys {unknown} for a TF1 {CELL_NAMES[cell]}; expected "
            f"{sorted(known)} (bare variable names){strip}"
        )
    missing = sorted(n for n, required in table.items() if required and n not in names)
    if missing:
        raise LayoutError(f"{path}: missing {missing}; a TF1 {CELL_NAMES[cell]} has {sorted(known)}")
    return names


# --------------------------------------------------------------------------------------
# the layout
# --------------------------------------------------------------------------------------

class TF1Layout(Layout):
    """TF1 cell variables (see the module docstring)."""

    name = "tf1"
    gates = GATES
    refuses = REFUSES

    def infer(self, source: Any, *, mode: str, forget_bias: float = 1.0, variants: Any = None,
              **_: Any) -> tuple[RNNSpec, dict[str, Any]]:
        """Read the variables of every layer and direction; ``I``, ``H``, ``P`` from layer 0.

        Every shape is then checked by the engine against :meth:`shapes`.
        """
        _check_forget_bias(forget_bias)
        cell = _cell(mode)
        layers = _split(source)
        D = len(layers[0][1])
        read: list[list[dict[str, Any]]] = []
        for path, units in layers:
            if len(units) != D:
                raise LayoutError(
                    f"{path}: {'bidirectional' if len(units) == 2 else 'unidirectional'}, but source[0] is "
                    f"{'bidirectional' if D == 2 else 'unidirectional'}; every layer of a torch module has the "
                    f"same number of directions"
                )
            read.append([_check_names(p, v, mode, variants) for p, v in units])
        has_proj = ["projection/kernel" in u for lay in read for u in lay]
        if any(has_proj) and not all(has_proj):
            at = has_proj.index(not has_proj[0])
            raise LayoutError(
                f"{layers[at // D][1][at % D][0]}: {'has' if has_proj[at] else 'lacks'} projection/kernel, unlike "
                f"{layers[0][1][0][0]}; torch projects in every layer or in none"
            )
        first, path0 = read[0][0], layers[0][1][0][0]
        kname = "gates/kernel" if cell == "GRU" else "kernel"
        kernel = to_array(first[kname], f"{path0}[{kname!r}]")
        G = {"GRU": 2, "LSTM": 4, "RNN": 1}[cell]
        if kernel.ndim != 2 or int(kernel.shape[1]) % G or int(kernel.shape[1]) < G:
            raise LayoutError(
                f"{path0}[{kname!r}]: expected [input+units, {G}*units] for a TF1 {CELL_NAMES[cell]}, got shape "
                f"{tuple(kernel.shape)}"
            )
        H = int(kernel.shape[1]) // G
        P = 0
        if has_proj[0]:
            proj = to_array(first["projection/kernel"], f"{path0}['projection/kernel']")
            if proj.ndim != 2 or not 0 < int(proj.shape[1]) < H:
                raise LayoutError(
                    f"{path0}['projection/kernel']: expected [units={H}, proj] with 0 < proj < units (torch requires "
                    f"proj_size < hidden_size), got shape {tuple(proj.shape)}"
                )
            P = int(proj.shape[1])
        R = P or H
        I = int(kernel.shape[0]) - R
        if I < 1:
            raise LayoutError(
                f"{path0}[{kname!r}]: {kernel.shape[0]} rows leave no input features after the {R} recurrent ones "
                f"(rows are input then {'proj' if P else 'units'}); is this the kernel of another cell?"
            )
        spec = RNNSpec(mode=mode, input_size=I, hidden_size=H, num_layers=len(layers), bidirectional=D == 2,
                       bias=True, proj_size=P)
        leaves = {key(spec, k, d, n): v for k, lay in enumerate(read) for d, u in enumerate(lay) for n, v in u.items()}
        return spec, leaves

    def shapes(self, spec: RNNSpec, **_: Any) -> dict[str, Sequence[Axis]]:
        return {key(spec, layer, d, n): _shape(spec, layer, n) for layer, d in spec.units() for n in _names(spec)}

    def pieces(self, spec: RNNSpec, *, forget_bias: float = 1.0, **_: Any) -> list[Piece]:
        _check_forget_bias(forget_bias)
        out: list[Piece] = []
        for layer, d in spec.units():
            s, cut = spec.suffix(layer, d), spec.layer_input(layer)
            rows = {"x": (slice(0, cut),), "h": (slice(cut, None),), None: ()}
            for param, var, part, gates, pattern, fold in PIECES[spec.cell]:
                if param.startswith("bias") and not spec.bias:
                    continue
                offsets = {"f": float(forget_bias)} if spec.cell == "LSTM" and param == "bias_ih" else {}
                out.append(Piece(
                    param + s, key(spec, layer, d, var), rows[part],
                    pattern.format(x="j" if part == "h" else "i"), {"g": len(gates)}, gates,
                    offsets=offsets, fold=("bias_hh" + s) if fold else None,
                ))
            if spec.proj_size:
                out.append(Piece("weight_hr" + s, key(spec, layer, d, "projection/kernel"), (), "h p -> p h"))
        return out

    def hint(self, spec: RNNSpec, **_: Any) -> Callable[[str, tuple], str]:
        H, R, G = spec.hidden_size, spec.rec, spec.gates
        where = {key(spec, layer, d, n): (layer, n) for layer, d in spec.units() for n in _names(spec)}

        def hint(name: str, got: tuple) -> str:
            layer, var = where.get(name, (0, ""))
            if var not in ("kernel", "gates/kernel") or len(got) != 2:
                return ""
            width = G * H if var == "kernel" else 2 * H
            if got[1] != width:
                return f"that is a layer of {got[1] * H // width} units, layer 0 has {H}: every layer of a torch module has the same size"
            if layer and spec.bidirectional and got[0] == R + (R if var == "kernel" else H):
                return "the layer below is bidirectional and outputs 2*units features; is this layer's input from a unidirectional layer?"
            if layer and not spec.bidirectional and got[0] == 2 * R + (R if var == "kernel" else H):
                return "that input width is the output of a bidirectional layer; pass {'fw': ..., 'bw': ...} layers"
            return ""

        return hint

    def assemble(self, arrays: dict[str, Any], spec: RNNSpec, *, forget_bias: float = 1.0, **_: Any) -> list:
        """One mapping per layer (``{"fw", "bw"}`` when bidirectional), bottom first."""
        H = spec.hidden_size
        if not spec.bias and spec.cell == "LSTM" and forget_bias:
            # no bias in torch is a zero bias; TF1 will add forget_bias at run time, so store its negative
            for layer, d in spec.units():
                arrays[key(spec, layer, d, "bias")][2 * H:3 * H] -= np.asarray(forget_bias, arrays[key(spec, layer, d, "bias")].dtype)
        out = []
        for layer in range(spec.num_layers):
            units = [{n: arrays[key(spec, layer, d, n)] for n in _names(spec)} for d in range(spec.directions)]
            out.append({"fw": units[0], "bw": units[1]} if spec.bidirectional else units[0])
        return out


def _check_forget_bias(forget_bias: Any) -> None:
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, np.floating, np.integer)):
        raise TypeError(f"forget_bias must be a number (TF1's default is 1.0), got {type(forget_bias).__name__}")
    if not np.isfinite(forget_bias):
        raise LayoutError(f"forget_bias must be finite, got {forget_bias}")


TF1 = TF1Layout()
