r"""The numpy block layout: one ``(H, G*in + G*R)`` row block per layer and direction.

Shape symbols as in :mod:`numpyrnn.spec` (``G`` gates, ``D`` directions, ``H``
hidden, ``I`` input, ``R`` recurrent width, ``P`` projection, ``L`` layers).

=========  ==============================  ===============================================
array      shape                           meaning
=========  ==============================  ===============================================
``w0``     ``(D, H, G*I + G*R)``           ``w0[d, h, g*I + i]``: input feature ``i`` into
                                           gate ``g`` of unit ``h``;
                                           ``w0[d, h, G*I + g*R + j]``: recurrent feature
                                           ``j`` into that gate
``w``      ``(L-1, D, H, G*D*R + G*R)``    the same for layers ``1..L-1``, whose input is
                                           the ``D*R``-wide output below
``b0``     ``(D, H, 2*G)``                 ``b0[d, h, g]`` input-side bias of gate ``g``,
                                           ``b0[d, h, G+g]`` its recurrent-side bias
``b``      ``(L-1, D, H, 2*G)``            the same for layers ``1..L-1``
``proj``   ``(L, D, P, H)``                LSTM ``weight_hr`` per layer and direction
=========  ==============================  ===============================================

In einops terms, for gate order ``gates`` (torch's ``rzn``/``ifgo`` by default)::

    weight_ih  (g h) x  <-  w0[d][:, :G*I]        "h (g x) -> g h x"
    weight_hh  (g h) x  <-  w0[d][:, G*I:]        "h (g x) -> g h x"
    bias_ih    (g h)    <-  b0[d][:, :G]          "h g -> g h"
    bias_hh    (g h)    <-  b0[d][:, G:]          "h g -> g h"

``rowwise=True`` reads the torch rows as ``(h g)`` instead of ``(g h)``: the
plain row-major reshape of each ``(H, G*width)`` block to ``(G*H, width)`` that
the original row-by-row loop performed. It exists for weights saved through
that loop; it is not what the formulas above say.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import LayoutError
from ..spec import TORCH_GATES, RNNSpec, gate_order
from .base import Axis, Layout, Piece

__all__ = ["BlockLayout", "BLOCKS"]

_KEYS = ("w0", "w", "b0", "b", "proj")


def _g(spec: RNNSpec) -> str:
    return "" if spec.gates == 1 else f"{spec.gates}*"


class BlockLayout(Layout):
    """The block layout of :func:`numpyrnn.NumpyGRU.from_numpy`."""

    name = "block"
    gates = {"GRU": "rzn", "LSTM": "ifgo", "RNN": "h"}
    refuses = {}

    # -- declarations ---------------------------------------------------------------
    def shapes(self, spec: RNNSpec, *, biases: bool = True, **_: Any) -> dict[str, Sequence[Axis]]:
        G, D, H, R, L = spec.gates, spec.directions, spec.hidden_size, spec.rec, spec.num_layers
        g = _g(spec)
        rec = "proj" if spec.proj_size else "hidden"
        dirs = Axis("directions", D)
        shapes: dict[str, Sequence[Axis]] = {
            "w0": (dirs, Axis("hidden", H), Axis(f"{g}(input+{rec})", G * (spec.input_size + R))),
        }
        if L > 1:
            shapes["w"] = (Axis("layers-1", L - 1), dirs, Axis("hidden", H),
                           Axis(f"{g}({D}*{rec}+{rec})", G * (D * R + R)))
        if spec.bias and biases:
            shapes["b0"] = (dirs, Axis("hidden", H), Axis(f"2*{G}", 2 * G))
            if L > 1:
                shapes["b"] = (Axis("layers-1", L - 1), dirs, Axis("hidden", H), Axis(f"2*{G}", 2 * G))
        if spec.proj_size:
            shapes["proj"] = (Axis("layers", L), dirs, Axis("proj", spec.proj_size), Axis("hidden", H))
        return shapes

    def pieces(self, spec: RNNSpec, *, gates: str | None = None, rowwise: bool = False,
               biases: bool = True, **_: Any) -> list[Piece]:
        G, R = spec.gates, spec.rec
        if not isinstance(rowwise, (bool, np.bool_)):
            raise TypeError(f"rowwise should be of type bool, got: {type(rowwise).__name__}")
        order = gate_order(spec.mode, gates)
        out: list[Piece] = []
        for layer, d in spec.units():
            s = spec.suffix(layer, d)
            w, b, at = ("w0", "b0", (d,)) if layer == 0 else ("w", "b", (layer - 1, d))
            cut = G * spec.layer_input(layer)
            common: dict[str, Any] = dict(sizes={"g": G}, gates=order, interleaved=rowwise)
            out.append(Piece("weight_ih" + s, w, at + (slice(None), slice(0, cut)), "h (g x) -> g h x", **common))
            out.append(Piece("weight_hh" + s, w, at + (slice(None), slice(cut, cut + G * R)), "h (g x) -> g h x", **common))
            if spec.bias and biases:
                out.append(Piece("bias_ih" + s, b, at + (slice(None), slice(0, G)), "h g -> g h", **common))
                out.append(Piece("bias_hh" + s, b, at + (slice(None), slice(G, 2 * G)), "h g -> g h", **common))
            if spec.proj_size:
                out.append(Piece("weight_hr" + s, "proj", (layer, d)))
        return out

    def hint(self, spec: RNNSpec, **_: Any) -> Callable[[str, tuple], str]:
        G, R, D = spec.gates, spec.rec, spec.directions

        def hint(key: str, got: tuple) -> str:
            if key == "w" and len(got) == 4:
                other = 3 - D
                if got[3] == G * (other * R + R):
                    kind = "unidirectional" if D == 2 else "bidirectional"
                    return f"this is the width of a {kind} stack: did you pass a {kind} stack to a {'bi' if D == 2 else 'uni'}directional module?"
            if key == "w0" and len(got) == 3 and got[0] != D:
                return f"axis 0 counts directions: the module is {'bi' if D == 2 else 'uni'}directional"
            if key == "w0" and len(got) == 3 and got[2] != G * (spec.input_size + R) and got[2] > G * R and (got[2] - G * R) % G == 0:
                return f"that is input_size={(got[2] - G * R) // G}, the module has input_size={spec.input_size}"
            if key in ("b0", "b") and got and got[-1] == G:
                return f"the last axis holds input-side then recurrent-side biases, 2*{G}={2 * G} values; pad with zeros for a single-bias source"
            return ""

        return hint

    # -- structure ------------------------------------------------------------------
    def infer(self, source: dict[str, Any], *, mode: str, num_layers: int | None = None,
              bias: bool | None = None, **_: Any) -> tuple[RNNSpec, dict[str, Any]]:
        """Infer ``D``, ``H``, ``I``, ``P`` from ``w0``/``proj`` and ``L`` from ``w``."""
        from ..engine import _check_dtype, to_array

        cell = "RNN" if mode.startswith("RNN") else mode
        G = len(TORCH_GATES[mode])
        arrays = {k: to_array(v, k) for k, v in source.items() if v is not None}
        for key, arr in arrays.items():  # a wrong dtype is named before any shape, as when loading
            _check_dtype(key, arr)
        if "w0" not in arrays:
            raise TypeError("w0: expected an array of shape (directions, hidden, G*(input+hidden)), got None")
        w0 = arrays["w0"]
        if w0.ndim != 3:
            raise LayoutError(
                f"w0: expected 3 axes (directions, hidden, {G}*(input+hidden)), got {w0.ndim} axes {tuple(w0.shape)}"
                + ("; add the directions axis with w0[None]" if w0.ndim == 2 else "")
            )
        D, H, width = (int(n) for n in w0.shape)
        if D not in (1, 2):
            raise LayoutError(f"w0: axis 0 (directions) must be 1 or 2, got {D} (shape {tuple(w0.shape)})")
        if H < 1:
            raise LayoutError(f"w0: axis 1 (hidden) must be at least 1, got {H}")
        P = 0
        if "proj" in arrays:
            if mode != "LSTM":
                raise LayoutError(f"proj: only an LSTM has a projection (weight_hr); got proj for a {cell}")
            proj = arrays["proj"]
            if proj.ndim != 4:
                raise LayoutError(f"proj: expected 4 axes (layers, directions, proj, hidden={H}), got {proj.ndim} axes {tuple(proj.shape)}")
            P = int(proj.shape[2])
            if not 0 < P < H:
                raise LayoutError(f"proj: axis 2 (proj) must be between 1 and hidden-1={H - 1} (torch requires proj_size < hidden_size), got {P}")
        R = P or H
        rec = "proj" if P else "hidden"
        rest = width - G * R
        if rest <= 0 or rest % G:
            raise LayoutError(
                f"w0: axis 2 should be {G}*(input+{rec}) = {G}*input + {G * R} for {rec}={R}, got {width}, "
                f"which leaves {rest} for {G}*input" + (" (not positive)" if rest <= 0 else f" (not a multiple of {G})")
                + ("; is this a different cell type?" if rest > 0 else "")
            )
        I = rest // G
        if "w" in arrays:
            w = arrays["w"]
            if w.ndim != 4:
                raise LayoutError(
                    f"w: expected 4 axes (layers-1, directions={D}, hidden={H}, {G}*({D}*{rec}+{rec})={G * (D * R + R)}), "
                    f"got {w.ndim} axes {tuple(w.shape)}" + ("; for a single extra layer use w[None]" if w.ndim == 3 else "")
                )
            inferred = 1 + int(w.shape[0])
        else:
            inferred = 1
        if num_layers is None:
            num_layers = inferred
        elif not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise LayoutError(f"num_layers must be a positive integer, got {num_layers!r}")
        elif num_layers != inferred:
            if "w" not in arrays:
                raise LayoutError(f"w: missing; num_layers={num_layers} needs w of shape "
                                  f"(layers-1={num_layers - 1}, directions={D}, hidden={H}, {G * (D * R + R)})")
            raise LayoutError(f"w: axis 0 (layers-1) is {inferred - 1}, but num_layers={num_layers} needs {num_layers - 1}")
        has_b = "b0" in arrays
        if bias is not None and not isinstance(bias, bool):
            raise TypeError(f"bias must be True, False or None, got {type(bias).__name__} {bias!r}")
        if bias is None:
            bias = has_b
        elif bias is False and (has_b or "b" in arrays):
            raise LayoutError("bias=False, but b0/b were given; drop them, or pass bias=True (or None) to load them")
        if "b" in arrays and not has_b:
            raise LayoutError("b: given without b0; layer 0's biases go in b0 of shape (directions, hidden, 2*G)")
        spec = RNNSpec(mode=mode, input_size=I, hidden_size=H, num_layers=num_layers,
                       bidirectional=D == 2, bias=bool(bias), proj_size=P)
        return spec, arrays

    def leaves_for(self, source: dict[str, Any], spec: RNNSpec, **_: Any) -> dict[str, Any]:
        arrays = {k: v for k, v in source.items() if v is not None}
        if "proj" in arrays and not spec.proj_size:
            raise LayoutError(f"proj: the module has no projection (proj_size=0); got an array of shape {tuple(getattr(arrays['proj'], 'shape', ()))}")
        if not spec.bias and ("b0" in arrays or "b" in arrays):
            raise LayoutError("b0: the module was built with bias=False, so it has no biases to load; rebuild it with bias=True")
        if spec.bias and "b0" not in arrays:
            raise LayoutError("b0: missing; the module has biases (bias=True) and loading weights alone would leave "
                              f"them stale: pass b0 of shape (directions={spec.directions}, hidden={spec.hidden_size}, "
                              f"2*{spec.gates}={2 * spec.gates}) (zeros if the source has none)")
        return arrays

    def assemble(self, arrays: dict[str, Any], spec: RNNSpec, **_: Any) -> dict[str, Any]:
        return {k: arrays.get(k) for k in _KEYS}


BLOCKS = BlockLayout()
