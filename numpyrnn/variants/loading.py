r"""Loading foreign layers into the variant modules, and exporting them back.

``NumpyGRU.from_keras(source, variants=True)`` (and ``from_onnx``/``from_tf1``)
reads the source with the format's own layout, which, given a :class:`Found`,
notes what torch's modules cannot compute instead of refusing it. From those
notes one variant configuration is chosen for the whole stack; the weights go
through the engine once, with the format's own pieces (plus the peepholes and
the single bias of a reset-before GRU), into the variant module. A
:class:`VariantWarning` names the module built. When nothing was noted the
source is a plain torch module and the ordinary loader builds it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .. import engine
from ..engine import Axis, Piece
from ..errors import LayoutError
from ..spec import RNNSpec
from .gru import ResetAfterGRU, ResetBeforeGRU
from .lstm import PeepholeLSTM
from .wrap import Directions

__all__ = ["Found", "VariantWarning", "VariantSpec", "KerasName", "load", "export", "is_variant", "variant_config",
           "build_variant", "describe"]


class VariantWarning(UserWarning):
    """Issued when a loader builds a variant module instead of a torch one (opt-in with ``variants=True``)."""


class Found:
    """What a layout found in a source that only a variant module computes, per layer.

    Layouts call :meth:`note` where they would otherwise refuse. ``layer`` is the
    layer's path in the source (a Keras ``Bidirectional``'s two halves count as
    one layer); ``"*"`` applies to every layer.
    """

    def __init__(self) -> None:
        self.notes: dict[str, dict[str, Any]] = {}

    def note(self, layer: str, key: str, value: Any) -> None:
        for half in (".forward_layer", ".backward_layer", "['fw']", "['bw']"):
            layer = layer.split(half)[0]
        got = self.notes.setdefault(layer, {})
        if key in got and got[key] is not value and _text(got[key]) != _text(value):
            raise LayoutError(f"{layer}: {key} differs between the two directions ({_text(got[key])} and "
                              f"{_text(value)}); a variant module has one {key} for every direction")
        got[key] = value

    def __bool__(self) -> bool:
        return bool(self.notes)

    def values(self, key: str, num_layers: int) -> list[Any]:
        """The one value of ``key`` shared by every layer; ``[]`` when no layer noted it.

        Raises:
            LayoutError: some layers noted it and others did not, or with different values.
        """
        if "*" in self.notes and key in self.notes["*"]:
            return [self.notes["*"][key]]
        where = {layer: n[key] for layer, n in self.notes.items() if key in n}
        if not where:
            return []
        texts = {_text(v) for v in where.values()}
        if len(where) != num_layers or len(texts) > 1:
            listed = ", ".join(f"{layer}: {_text(v)}" for layer, v in where.items())
            raise LayoutError(
                f"source: {key} is not the same in every layer ({listed}; {num_layers} layers in all); one module "
                f"computes one way in every layer: load the layers one by one"
            )
        return [next(iter(where.values()))]

    def top(self, key: str, num_layers: int) -> list[Any]:
        """The value of ``key`` noted on the top layer only (``source`` or ``source[L-1]``); ``[]`` if none.

        Raises:
            LayoutError: a layer below the top noted it.
        """
        where = {layer: n[key] for layer, n in self.notes.items() if key in n}
        top = "source" if num_layers == 1 else f"source[{num_layers - 1}]"
        below = sorted(set(where) - {top})
        if below:
            raise LayoutError(
                f"{below[0]}: {key}={where[below[0]]!r} below the top layer; only the top layer of a stack may merge "
                f"its directions other than by concatenation (the layer above reads both): load the layers one by one"
            )
        return [where[top]] if top in where else []


def _text(value: Any) -> str:
    if isinstance(value, KerasName):
        return repr(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str) and hasattr(value[0], "shape"):
        return "an array"  # peepholes: only whether a layer has them matters
    name = getattr(value, "__name__", None)
    if callable(value) and name:
        return f"{name} (from {getattr(value, '__module__', '?')})"
    return repr(value)


@dataclass(frozen=True)
class VariantSpec(RNNSpec):
    """An :class:`~numpyrnn.spec.RNNSpec` plus the variant's extra parameters (peepholes)."""

    peepholes: bool = False

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().param_shapes()
        if self.peepholes:
            for layer, d in self.units():
                s = self.suffix(layer, d)
                for g in "ifo":
                    shapes[f"weight_c{g}" + s] = (self.hidden_size,)
        return shapes


@dataclass
class Plan:
    """The variant chosen for a source: class, its options, the wrapper, extra leaves and pieces."""

    cls: type
    options: dict[str, Any] = field(default_factory=dict)
    merge_mode: str | None = "concat"
    time: str = "forward"
    peepholes: bool = False


# --------------------------------------------------------------------------------------
# activations, as each source names them
# --------------------------------------------------------------------------------------

#: Keras activation function names -> variant names. Keras 3's hard_sigmoid is relu6(x + 3) / 6,
#: Keras 2's (tf_keras) 0.2 x + 0.5.
KERAS_ACTIVATIONS = {
    "keras": {"sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid_keras3", "tanh": "tanh", "relu": "relu",
              "linear": "linear"},
    "tf_keras": {"sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid", "tanh": "tanh", "relu": "relu",
                 "linear": "linear"},
}


@dataclass(frozen=True)
class KerasName:
    """An activation as a Keras file's config names it, with the Keras that wrote the file.

    ``package`` is ``"keras"`` for Keras 3 files and ``"tf_keras"`` for Keras 2 ones:
    the two compute ``hard_sigmoid`` differently.
    """

    name: str
    package: str

    def __repr__(self) -> str:
        return f"{self.name!r} ({'Keras 3' if self.package == 'keras' else 'Keras 2'})"


def keras_activation(fn: Any, where: str) -> str:
    from ..layouts.keras import _activation_name

    if isinstance(fn, KerasName):
        name, package = fn.name, fn.package
    else:
        name = _activation_name(fn)
        package = (getattr(fn, "__module__", "") or "").split(".")[0]
    table = KERAS_ACTIVATIONS.get(package, {})
    if name not in table:
        raise LayoutError(f"{where}: activation {name} has no variant module: the variants compute "
                          f"{sorted(KERAS_ACTIVATIONS['keras'])} (Keras 3) and tf_keras's hard_sigmoid")
    return table[name]


def onnx_activation(name: str, alpha: float | None, beta: float | None, where: str) -> str:
    low = name.lower()
    if low in ("sigmoid", "tanh", "relu"):
        return low
    if low == "hardsigmoid":
        a = 0.2 if alpha is None else float(alpha)
        b = 0.5 if beta is None else float(beta)
        if math.isclose(a, 0.2, rel_tol=1e-6) and math.isclose(b, 0.5, rel_tol=1e-6):
            return "hard_sigmoid"
        if math.isclose(a, 1 / 6, rel_tol=1e-6) and math.isclose(b, 0.5, rel_tol=1e-6):
            return "hard_sigmoid_keras3"
        raise LayoutError(f"{where}: HardSigmoid with alpha={a}, beta={b}: the variants compute HardSigmoid with "
                          f"alpha 0.2 (ONNX's default) or 1/6 (Keras 3), beta 0.5")
    raise LayoutError(f"{where}: activation {name!r} has no variant module: the variants compute Sigmoid, Tanh, "
                      f"Relu and HardSigmoid")


# --------------------------------------------------------------------------------------
# choosing the variant
# --------------------------------------------------------------------------------------

def _plan(found: Found, spec: RNNSpec, fmt: str, extra: dict[str, Any]) -> Plan:
    L = spec.num_layers
    one = {k: found.values(k, L) for k in ("reset_after", "recurrent_activation", "activation", "go_backwards",
                                           "clip", "input_forget", "direction", "activations",
                                           "P", "peepholes")}
    options: dict[str, Any] = {}
    plan = Plan(cls=ResetAfterGRU if spec.cell == "GRU" else PeepholeLSTM)
    if spec.cell == "GRU" and one["reset_after"]:
        plan.cls = ResetBeforeGRU
    for key in ("recurrent_activation", "activation"):
        if one[key]:
            options[key] = keras_activation(one[key][0], f"source: {key}")
    if one["activations"]:
        chunks, alphas, betas = one["activations"][0]
        # ONNX: activation_alpha/beta are consumed in order by the activations that take them
        alpha_iter, beta_iter = iter(list(alphas or [])), iter(list(betas or []))
        per_direction = []
        for chunk in chunks:
            per_direction.append([
                onnx_activation(a, next(alpha_iter, None), next(beta_iter, None), "source")
                if a.lower() == "hardsigmoid" else onnx_activation(a, None, None, "source")
                for a in chunk
            ])
        if any(d != per_direction[0] for d in per_direction):
            raise LayoutError(f"source: activations differ between directions ({per_direction}, from "
                              f"activations={chunks}, activation_alpha={alphas}, activation_beta={betas}); a variant "
                              f"module computes the same in both directions")
        names = per_direction[0]
        if spec.cell == "LSTM" and names[1] != names[2]:
            raise LayoutError(f"source: activations {list(chunks[0])}: the cell input and output activations "
                              f"(g and h) differ; PeepholeLSTM has one activation for both")
        options["recurrent_activation"], options["activation"] = names[0], names[1]
    if one["clip"]:
        options["preactivation_clip"] = float(one["clip"][0])
    if one["input_forget"]:
        options["input_forget"] = True
    if one["P"] or one["peepholes"]:
        options["peepholes"] = plan.peepholes = True
    for key in ("cell_clip", "proj_clip"):
        if extra.get(key) is not None:
            options[key] = extra[key]
    merge = found.top("merge_mode", L)
    if merge:
        plan.merge_mode = merge[0]
    if one["go_backwards"]:
        if L > 1:
            raise LayoutError("source: go_backwards=True in a stack; each such layer returns its output in "
                              "reversed time order to the next: load the layers one by one")
        plan.time = "go_backwards"
    if one["direction"]:
        plan.time = "reverse"
    plan.options = options
    return plan


# --------------------------------------------------------------------------------------
# the format-specific declarations the variants add
# --------------------------------------------------------------------------------------

def _peephole_pieces(fmt: str, spec: RNNSpec, found: Found) -> tuple[dict[str, Any], dict[str, Any], list[Piece]]:
    """Leaves, shapes and pieces of the peephole weights, per format."""
    H = spec.hidden_size
    leaves: dict[str, Any] = {}
    shapes: dict[str, Any] = {}
    pieces: list[Piece] = []
    if fmt == "onnx":
        paths = [n["P"] for n in found.notes.values() if "P" in n]
        for k, (array, path) in enumerate(paths):
            leaves[path] = array
            shapes[path] = (Axis("directions", spec.directions), Axis("3*hidden", 3 * H))
            for d in range(spec.directions):
                for j, g in enumerate("iof"):  # ONNX P holds i, o, f
                    pieces.append(Piece(f"weight_c{g}" + spec.suffix(k, d), path, (d, slice(j * H, (j + 1) * H))))
    return leaves, shapes, pieces


class _KerasVariants:
    """The Keras layout, with a reset-before GRU's one ``(3*units,)`` bias folded like an LSTM's."""

    def __init__(self, reset_before: bool) -> None:
        from ..layouts.keras import KERAS

        self.base = KERAS
        self.name = KERAS.name
        self.reset_before = reset_before

    def shapes(self, spec: RNNSpec, **_: Any) -> dict[str, Any]:
        from ..layouts.keras import key

        out = dict(self.base.shapes(spec))
        if self.reset_before and spec.bias:
            for layer, d in spec.units():
                out[key(spec, layer, d, "bias")] = (Axis("3*units", 3 * spec.hidden_size),)
        return out

    def pieces(self, spec: RNNSpec, **_: Any) -> list[Piece]:
        from ..layouts.keras import GATES, key

        out = self.base.pieces(spec)
        if not (self.reset_before and spec.bias):
            return out
        out = [p for p in out if not p.param.startswith("bias")]
        for layer, d in spec.units():
            s = spec.suffix(layer, d)
            out.append(Piece("bias_ih" + s, key(spec, layer, d, "bias"), (), "(g h) -> g h", {"g": 3}, GATES["GRU"],
                             fold="bias_hh" + s))
        return out

    def hint(self, spec: RNNSpec, **_: Any) -> Any:
        return self.base.hint(spec)


class _TF1Variants:
    """The TF1 layout, plus ``GRUCell``'s ``gates``/``candidate`` kernels and ``LSTMCell``'s peepholes."""

    #: GRUCell: torch parameter, variable, rows of the fused kernel, gates, single bias (folded)
    GRUCELL = [
        ("weight_ih", "gates/kernel", "x", "rz"), ("weight_hh", "gates/kernel", "h", "rz"),
        ("bias_ih", "gates/bias", None, "rz"),
        ("weight_ih", "candidate/kernel", "x", "n"), ("weight_hh", "candidate/kernel", "h", "n"),
        ("bias_ih", "candidate/bias", None, "n"),
    ]

    def __init__(self, reset_before: bool, peepholes: bool) -> None:
        from ..layouts.tf1 import TF1

        self.base = TF1
        self.name = TF1.name
        self.reset_before = reset_before
        self.peepholes = peepholes

    def shapes(self, spec: RNNSpec, **options: Any) -> dict[str, Any]:
        from ..layouts.tf1 import key

        if not self.reset_before:
            out = dict(self.base.shapes(spec))
        else:
            out = {}
            for layer, d in spec.units():
                x, H = spec.layer_input(layer), spec.hidden_size
                inp = "input" if layer == 0 else ("2*units" if spec.bidirectional else "units")
                out[key(spec, layer, d, "gates/kernel")] = (Axis(f"{inp}+units", x + H), Axis("2*units", 2 * H))
                out[key(spec, layer, d, "gates/bias")] = (Axis("2*units", 2 * H),)
                out[key(spec, layer, d, "candidate/kernel")] = (Axis(f"{inp}+units", x + H), Axis("units", H))
                out[key(spec, layer, d, "candidate/bias")] = (Axis("units", H),)
        if self.peepholes:
            for layer, d in spec.units():
                for name in ("w_i_diag", "w_f_diag", "w_o_diag"):
                    out[key(spec, layer, d, name)] = (Axis("units", spec.hidden_size),)
        return out

    def pieces(self, spec: RNNSpec, **options: Any) -> list[Piece]:
        from ..layouts.tf1 import key

        out: list[Piece] = [] if self.reset_before else list(self.base.pieces(spec, **options))
        for layer, d in spec.units():
            s, cut = spec.suffix(layer, d), spec.layer_input(layer)
            if self.reset_before:
                rows = {"x": (slice(0, cut),), "h": (slice(cut, None),), None: ()}
                for param, var, part, gates in self.GRUCELL:
                    pattern = "(g h) -> g h" if part is None else "{x} (g h) -> g h {x}".format(x="j" if part == "h" else "i")
                    out.append(Piece(param + s, key(spec, layer, d, var), rows[part], pattern, {"g": len(gates)},
                                     gates, fold=("bias_hh" + s) if param == "bias_ih" else None))
            if self.peepholes:
                for g in "ifo":
                    out.append(Piece(f"weight_c{g}" + s, key(spec, layer, d, f"w_{g}_diag")))
        return out

    def hint(self, spec: RNNSpec, **options: Any) -> Any:
        return None if self.reset_before else self.base.hint(spec)

    def assemble(self, arrays: dict[str, Any], spec: RNNSpec, **options: Any) -> list:
        """One mapping of bare TF1 variable names per layer (``{"fw", "bw"}`` when bidirectional)."""
        from ..layouts.tf1 import key

        if self.reset_before:
            names = ["gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"]
            out: list = []
            for layer in range(spec.num_layers):
                units = [{n: arrays[key(spec, layer, d, n)] for n in names} for d in range(spec.directions)]
                out.append({"fw": units[0], "bw": units[1]} if spec.bidirectional else units[0])
        else:
            out = self.base.assemble({k: v for k, v in arrays.items() if "_diag'" not in k}, spec, **options)
        if self.peepholes:
            for layer, d in spec.units():
                unit = out[layer] if not spec.bidirectional else out[layer]["bw" if d else "fw"]
                for name in ("w_i_diag", "w_f_diag", "w_o_diag"):
                    unit[name] = arrays[key(spec, layer, d, name)]
        return out


def _layout(fmt: str, plan: Plan) -> Any:
    if fmt == "tf1":
        return _TF1Variants(plan.cls is ResetBeforeGRU, plan.peepholes)
    if fmt == "keras":
        return _KerasVariants(plan.cls is ResetBeforeGRU)
    if fmt == "onnx":
        from ..layouts.onnx import ONNX

        return ONNX
    raise LayoutError(f"{fmt}: no variant loader for this format")


# --------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------

def load(fmt: str, source: Any, *, mode: str, options: dict[str, Any], batch_first: bool, dropout: float,
         device: Any, dtype: Any, freeze: bool, fallback: Any, extra: dict[str, Any] | None = None,
         caller: str = "", notes: dict[str, dict[str, Any]] | None = None) -> nn.Module:
    """Read ``source`` in format ``fmt``; build the variant it needs, or call ``fallback()``.

    ``notes`` are what the source's file records beside the arrays (a Keras
    config's activations, ``go_backwards``, ``merge_mode``), as
    ``{layer path: {key: value}}`` (``"*"`` for every layer), noted before the
    layout reads the arrays.

    Returns:
        The variant module (in a :class:`~numpyrnn.variants.Directions` wrapper
        for a merge mode or a time direction), or what ``fallback()`` builds when
        the source computes nothing torch's modules cannot.
    """
    layout_name = {"keras": "keras", "onnx": "onnx", "tf1": "tf1"}.get(fmt)
    if layout_name is None:
        raise LayoutError(f"{fmt}: no variant loader for this format")
    from importlib import import_module

    base = getattr(import_module(f"..layouts.{layout_name}", __package__), layout_name.upper())
    found = Found()
    for layer, given in (notes or {}).items():
        for key, value in given.items():
            found.note(layer, key, value)
    spec, leaves = base.infer(source, mode=mode, variants=found, **options)
    extra = {k: v for k, v in (extra or {}).items() if v is not None}
    if not found and not extra:
        return fallback()
    plan = _plan(found, spec, fmt, extra)
    layout = _layout(fmt, plan)
    vspec = VariantSpec(**{f: getattr(spec, f) for f in ("mode", "input_size", "hidden_size", "num_layers",
                                                          "bidirectional", "bias", "proj_size")},
                        peepholes=plan.peepholes)
    shapes = dict(layout.shapes(spec, **options))
    pieces = list(layout.pieces(spec, **options))
    if plan.peepholes and fmt == "onnx":
        p_leaves, p_shapes, p_pieces = _peephole_pieces(fmt, spec, found)
        leaves.update(p_leaves)
        shapes.update(p_shapes)
        pieces += p_pieces
    checked = engine.check_leaves(leaves, shapes, layout=layout.name, hint=layout.hint(spec, **options), finite=False)
    module = _build(plan, vspec, batch_first=batch_first, dropout=dropout, device=device, dtype=dtype)
    engine.load(module, pieces, checked, fresh=True, spec=vspec)  # type: ignore[arg-type]
    if freeze:
        module.requires_grad_(False)
    built: nn.Module = module
    if plan.merge_mode != "concat" or plan.time != "forward":
        built = Directions(module, merge_mode=plan.merge_mode, time=plan.time)
    warnings.warn(f"{caller or fmt}: built {_describe(built)} (numpyrnn.variants): the source computes what "
                  f"torch.nn.{spec.cell} cannot", VariantWarning, stacklevel=4)
    return built


def _describe(module: nn.Module) -> str:
    return repr(module).replace("\n", " ").replace("  ", "")


def _build(plan: Plan, spec: VariantSpec, *, batch_first: bool, dropout: float, device: Any, dtype: Any) -> nn.Module:
    import torch

    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype}")
    device = torch.device(device) if device is not None else torch.empty(0).device
    kwargs = spec.module_kwargs()
    if spec.cell != "LSTM":
        kwargs.pop("proj_size", None)
    module = plan.cls(**kwargs, batch_first=batch_first, dropout=dropout, device="meta", dtype=dtype, **plan.options)
    return module._apply(lambda t: engine.empty(t.shape, t.dtype, device))


def spec_of(module: nn.Module) -> VariantSpec:
    """The :class:`VariantSpec` of a variant module."""
    if not isinstance(module, (ResetBeforeGRU, ResetAfterGRU, PeepholeLSTM)):
        raise TypeError(f"expected a numpyrnn.variants module, got {type(module).__name__}")
    return VariantSpec(mode=module.mode, input_size=module.input_size, hidden_size=module.hidden_size,
                       num_layers=module.num_layers, bidirectional=module.bidirectional, bias=module.bias,
                       proj_size=module.proj_size, peepholes=bool(getattr(module, "peepholes", False)))


def _unwrap(module: nn.Module) -> tuple[nn.Module, str | None, str]:
    if isinstance(module, Directions):
        return module.module, module.merge_mode, module.time
    return module, "concat", "forward"


def export(fmt: str, module: nn.Module, **options: Any) -> tuple[Any, dict[str, Any]]:
    """The module's weights in ``fmt`` and the layer configuration the source needs to compute the same.

    Returns:
        ``(weights, config)``: Keras: ``set_weights`` lists per layer and the
        layer's constructor arguments (``reset_after``, activations,
        ``go_backwards``, ``merge_mode``); ONNX: ``{"W", "R", "B"[, "P"]}`` per
        node and the node attributes.

    Raises:
        LayoutError: the module computes something the format cannot express.
    """
    inner, merge_mode, time = _unwrap(module)
    spec = spec_of(inner)
    reset_before = isinstance(inner, ResetBeforeGRU)
    if fmt == "keras":
        return _export_keras(inner, spec, reset_before, merge_mode, time)
    if fmt == "onnx":
        return _export_onnx(inner, spec, reset_before, merge_mode, time)
    if fmt == "tf1":
        return _export_tf1(inner, spec, reset_before, merge_mode, time, **options)
    raise LayoutError(f"{fmt}: no variant exporter for this format")


_TO_KERAS3 = {"sigmoid": "sigmoid", "hard_sigmoid_keras3": "hard_sigmoid", "tanh": "tanh", "relu": "relu",
              "linear": "linear"}
_TO_ONNX = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "hard_sigmoid": "HardSigmoid",
            "hard_sigmoid_keras3": "HardSigmoid"}


def _export_keras(m: nn.Module, spec: VariantSpec, reset_before: bool, merge_mode: Any, time: str):
    for name in ("peepholes", "input_forget", "cell_clip", "proj_clip", "preactivation_clip"):
        if getattr(m, name, None):
            raise LayoutError(f"{name}={getattr(m, name)!r}: Keras recurrent layers have no such option")
    if time == "reverse":
        raise LayoutError("time='reverse' (ONNX direction='reverse') has no Keras layer; Keras's go_backwards "
                          "returns the output in reversed time order")
    config: dict[str, Any] = {}
    for attr in ("recurrent_activation", "activation"):
        name = getattr(m, attr)
        if name not in _TO_KERAS3:
            raise LayoutError(f"{attr}={name!r}: Keras 3 has no such activation (its hard_sigmoid is "
                              f"hard_sigmoid_keras3, x/6 + 0.5)")
        config[attr] = _TO_KERAS3[name]
    if spec.cell == "GRU":
        config["reset_after"] = not reset_before
    if time == "go_backwards":
        config["go_backwards"] = True
    if spec.bidirectional:
        config["merge_mode"] = merge_mode
    layout = _KerasVariants(reset_before)
    arrays = engine.export(m, layout.pieces(spec), layout.shapes(spec), spec=spec)  # type: ignore[arg-type]
    return layout.base.assemble(arrays, spec), config


def _export_onnx(m: nn.Module, spec: VariantSpec, reset_before: bool, merge_mode: Any, time: str):
    from ..layouts.onnx import ONNX, _key

    if merge_mode != "concat":
        raise LayoutError(f"merge_mode={merge_mode!r}: an ONNX node always outputs both directions; merge Y yourself")
    if time == "go_backwards":
        raise LayoutError("time='go_backwards' (Keras) has no ONNX node; direction='reverse' returns Y in input "
                          "time order")
    attrs: dict[str, Any] = dict(hidden_size=spec.hidden_size,
                                 direction="reverse" if time == "reverse" else
                                 "bidirectional" if spec.bidirectional else "forward")
    if spec.cell == "GRU":
        attrs["linear_before_reset"] = 0 if reset_before else 1
    if getattr(m, "preactivation_clip", 0.0):
        attrs["clip"] = float(m.preactivation_clip)  # type: ignore[arg-type]
    if getattr(m, "input_forget", False):
        attrs["input_forget"] = 1
    for name in ("cell_clip", "proj_clip"):
        if getattr(m, name, 0.0):
            raise LayoutError(f"{name}={getattr(m, name)}: an ONNX LSTM has no {name} (its clip bounds the "
                              f"gate pre-activations: preactivation_clip)")
    gate, act = str(getattr(m, "recurrent_activation")), str(getattr(m, "activation"))  # noqa: B009
    if (gate, act) != ("sigmoid", "tanh"):
        names = [gate, act] + ([act] if spec.cell == "LSTM" else [])
        if "linear" in names:
            raise LayoutError("activation 'linear' is written Affine(alpha=1, beta=0) in ONNX; not exported")
        attrs["activations"] = [_TO_ONNX[n] for n in names] * spec.directions
        hs = [n for n in names if n.startswith("hard_sigmoid")]
        if len(set(hs)) > 1:
            raise LayoutError("two different hard sigmoids cannot share ONNX's one activation_alpha list")
        if hs:  # one (alpha, beta) per HardSigmoid, consumed in order
            alpha = 0.2 if hs[0] == "hard_sigmoid" else 1 / 6
            count = attrs["activations"].count("HardSigmoid")
            attrs["activation_alpha"] = [alpha] * count
            attrs["activation_beta"] = [0.5] * count
    pieces = ONNX.pieces(spec)
    shapes = dict(ONNX.shapes(spec))
    H = spec.hidden_size
    if spec.peepholes:
        for k in range(spec.num_layers):
            path = _key(k, "P")
            shapes[path] = (Axis("directions", spec.directions), Axis("3*hidden", 3 * H))
            for d in range(spec.directions):
                for j, g in enumerate("iof"):
                    pieces.append(Piece(f"weight_c{g}" + spec.suffix(k, d), path, (d, slice(j * H, (j + 1) * H))))
    arrays = engine.export(m, pieces, shapes, spec=spec)  # type: ignore[arg-type]
    layers = ONNX.assemble(arrays, spec)
    if spec.peepholes:
        for k, layer in enumerate(layers):
            layer["P"] = arrays[_key(k, "P")]
    return layers, attrs


def _export_tf1(m: nn.Module, spec: VariantSpec, reset_before: bool, merge_mode: Any, time: str,
                forget_bias: float = 1.0):
    if merge_mode != "concat" or time != "forward":
        raise LayoutError("TF1 cells have no merge mode or time direction of their own; export the inner module")
    for name in ("input_forget", "preactivation_clip"):
        if getattr(m, name, None):
            raise LayoutError(f"{name}={getattr(m, name)!r}: TF1's LSTMCell has no such option")
    for attr, want in (("recurrent_activation", "sigmoid"), ("activation", "tanh")):
        if getattr(m, attr) != want:
            raise LayoutError(f"{attr}={getattr(m, attr)!r}: TF1's cells use {want} there")
    if spec.cell == "GRU" and not reset_before:
        raise LayoutError("a ResetAfterGRU with torch's activations is an nn.GRU: use NumpyGRU.to_tf1")
    config: dict[str, Any] = {}
    if spec.cell == "LSTM":
        config = dict(use_peepholes=spec.peepholes, forget_bias=forget_bias,
                      cell_clip=getattr(m, "cell_clip", 0.0) or None, proj_clip=getattr(m, "proj_clip", 0.0) or None,
                      num_proj=spec.proj_size or None)
    layout = _TF1Variants(reset_before, spec.peepholes)
    options = dict(forget_bias=forget_bias)
    arrays = engine.export(m, layout.pieces(spec, **options), layout.shapes(spec, **options), spec=spec)  # type: ignore[arg-type]
    return layout.assemble(arrays, spec, **options), config


# --------------------------------------------------------------------------------------
# variants in model files: their machine-readable configuration, and rebuilding them
# --------------------------------------------------------------------------------------

_CLASSES = {"ResetBeforeGRU": ResetBeforeGRU, "ResetAfterGRU": ResetAfterGRU, "PeepholeLSTM": PeepholeLSTM}

#: The variant options each class takes (beyond nn.GRU's/nn.LSTM's arguments).
_OPTIONS = {
    "ResetBeforeGRU": ("recurrent_activation", "activation", "preactivation_clip"),
    "ResetAfterGRU": ("recurrent_activation", "activation", "preactivation_clip"),
    "PeepholeLSTM": ("recurrent_activation", "activation", "preactivation_clip", "peepholes", "input_forget",
                     "cell_clip", "proj_clip"),
}


def is_variant(module: Any) -> bool:
    """Whether ``module`` is a :mod:`numpyrnn.variants` module (or its :class:`Directions` wrapper)."""
    return isinstance(_unwrap(module)[0], tuple(_CLASSES.values()))


def describe(module: nn.Module) -> str:
    """The module's repr on one line, e.g. ``ResetBeforeGRU(3, 4, batch_first=True)``."""
    return _describe(module)


def variant_config(module: nn.Module, *, source: str, **extra: Any) -> dict[str, Any]:
    """The machine-readable configuration of a variant module, as :func:`numpyrnn.formats.config_of` gives.

    The torch-like keys (``cell``, sizes, ``batch_first``, ``dtype``, ...) plus
    ``variant``: ``{"class", "options", "merge_mode", "time"}``, everything
    :func:`build_variant` needs to rebuild the module.
    """
    inner, merge_mode, time = _unwrap(module)
    if not isinstance(inner, tuple(_CLASSES.values())):
        raise TypeError(f"expected a numpyrnn.variants module, got {type(module).__name__}")
    name = type(inner).__name__
    options = {"recurrent_activation": inner.recurrent_activation, "activation": inner.activation,
               **inner._variant_options()}  # type: ignore[operator]
    dtype = str(next(inner.parameters()).dtype).replace("torch.", "")
    return {"cell": str(inner.mode).lower(), "input_size": inner.input_size, "hidden_size": inner.hidden_size,
            "num_layers": inner.num_layers, "bidirectional": inner.bidirectional, "bias": inner.bias,
            "proj_size": inner.proj_size, "batch_first": bool(inner.batch_first), "nonlinearity": "tanh",
            "dtype": dtype, "source": source,
            "variant": {"class": name, "options": options, "merge_mode": merge_mode, "time": time}, **extra}


def build_variant(config: dict[str, Any], state: dict[str, Any] | None = None, *, where: str = "record",
                  batch_first: bool | None = None, dtype: Any = None, device: Any = None, dropout: float = 0.0,
                  freeze: bool = False) -> nn.Module:
    """The variant module a :func:`variant_config` describes, holding ``state`` (its ``state_dict``) if given.

    Raises:
        LayoutError: the record names no variant class or an unknown option, or
            ``state`` does not fit (missing, extra or misshapen tensors, NaN/Inf).
    """
    import torch

    variant = config.get("variant")
    if not isinstance(variant, dict) or variant.get("class") not in _CLASSES:
        got = variant.get("class") if isinstance(variant, dict) else variant
        raise LayoutError(f"{where}: variant class {got!r} is not one of {', '.join(_CLASSES)}")
    name = str(variant["class"])
    options = variant.get("options") or {}
    if not isinstance(options, dict) or set(options) - set(_OPTIONS[name]):
        bad = sorted(set(options) - set(_OPTIONS[name])) if isinstance(options, dict) else options
        raise LayoutError(f"{where}: {name} takes the options {', '.join(_OPTIONS[name])}, the record has {bad!r}")
    kwargs: dict[str, Any] = {k: config[k] for k in ("input_size", "hidden_size", "num_layers", "bias",
                                                     "bidirectional") if k in config}
    if name == "PeepholeLSTM":
        kwargs["proj_size"] = int(config.get("proj_size") or 0)
    bf = bool(config.get("batch_first", False)) if batch_first is None else bool(batch_first)
    saved = None
    if state:
        saved = next(iter(state.values())).dtype
    want = dtype or saved or torch.get_default_dtype()
    try:
        inner = _CLASSES[name](**kwargs, batch_first=bf, dropout=dropout, device="meta", dtype=want, **options)
        module: nn.Module = inner
        merge_mode, time = variant.get("merge_mode", "concat"), variant.get("time", "forward")
        if merge_mode != "concat" or time != "forward":
            module = Directions(inner, merge_mode=merge_mode, time=time)
    except (TypeError, ValueError) as exc:
        raise LayoutError(f"{where}: the record does not describe a {name} ({exc})") from None
    target = torch.device(device) if device is not None else torch.device("cpu")
    module = module.to_empty(device=target)
    if state is not None:
        expected = {k: tuple(Axis(f"{k}[{i}]", n) for i, n in enumerate(v.shape))
                    for k, v in module.state_dict().items()}
        extra = sorted(set(state) - set(expected))
        if extra:
            raise LayoutError(f"{where}: unexpected tensor(s) {', '.join(map(repr, extra[:4]))} for a {name}; it "
                              f"holds {', '.join(expected)}")
        checked = engine.check_leaves(dict(state), expected, layout="state_dict")
        with torch.no_grad():
            own = module.state_dict()
            for k, t in checked.items():
                own[k].copy_(torch.as_tensor(t))
    if freeze:
        module.requires_grad_(False)
    return module
