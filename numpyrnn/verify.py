"""``numpyrnn.verify``: run a converted module next to the source's own framework and compare.

The oracle is the framework the weights came from, running the source's own
arrays: Keras layers for Keras, onnxruntime for ONNX, a flax linen module
rebuilt from the params' structure for Flax, TensorFlow's ``tf.compat.v1``
``LSTMCell``/``BasicRNNCell`` for TF1 variables. Where that framework is not
importable (and for block arrays, and TF1's ``CudnnCompatibleGRUCell``, which
TensorFlow 2 no longer has) the oracle is :mod:`numpyrnn.reference`, the
plain-numpy forward pass written from the formulas, over the source's arrays;
``report.oracle`` says which ran, and why.

A path is read through the format registry: the modules checked are those
:func:`numpyrnn.load_all` builds, under the same names, and the oracle runs on
the arrays each module's entry was read from. A TensorFlow checkpoint's TF1 cell
scopes are TF1 variables (``CudnnLSTM`` an ``LSTMCell`` without forget bias, over
its summed bias), its TF2 Keras layers Keras weights (a Keras 2 ``CuDNNGRU`` is
``GRU(reset_after=True)``, a ``CuDNNLSTM`` ``LSTM`` with both halves of its bias
summed); a ``.pdparams`` file runs in paddle's own layer where paddle imports (not
after TensorFlow), and otherwise in the reference with torch's formulas, which
are Paddle's.

With ``variants=True`` the :mod:`numpyrnn.variants` modules the loaders build
are checked the same way: the source's framework runs the layer as the file
configures it (Keras ``reset_after``, activations, ``go_backwards``,
``merge_mode``; the ONNX node with its attributes and peepholes; TensorFlow's
``GRUCell``/``LSTMCell`` with peepholes and clips), and otherwise the reference's
variant formulas with the same direction and merge.

Inputs are seeded random sequences and initial states shaped from the
configuration (or given). Compared: the output ``y`` and every final state,
``h_n`` and ``c_n``, per layer and direction.
"""

from __future__ import annotations

import copy
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import LayoutError
from .spec import RNNSpec

__all__ = ["verify", "VerifyReport", "VerifyRow", "TOLERANCES"]

#: Default ``(atol, rtol)`` per dtype: the coarser of the module's and the oracle's is used.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 0.0),
    "float32": (1e-5, 0.0),
    "float16": (1e-2, 0.0),
    "bfloat16": (5e-2, 0.0),
}
_PRECISION = ["float64", "float32", "float16", "bfloat16"]  # finest first

_BLOCK_KEYS = ("w0", "w", "b0", "b", "proj")
_CLASSES = {"GRU": "NumpyGRU", "LSTM": "NumpyLSTM", "RNN": "NumpyRNN"}
_N, _T = 2, 5  # random inputs: batch and time steps

# Oracle outputs: y batch-major (N, T, D*R); h_n (L*D, N, R); c_n (L*D, N, H) or None.
Outputs = dict[str, Any]
Runner = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], Outputs]


@dataclass(frozen=True)
class VerifyRow:
    """One compared output.

    Attributes:
        module: the module's name in the source.
        output: ``"y"``, or a final state of one layer and direction, e.g. ``"h_n[layer 1, backward]"``.
        shape: the compared array's shape.
        max_error: ``max |module - oracle|``.
        atol, rtol: the tolerance: every element must satisfy ``|a - b| <= atol + rtol * |b|``.
        ok: whether it does.
    """

    module: str
    output: str
    shape: tuple[int, ...]
    max_error: float
    atol: float
    rtol: float
    ok: bool


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        source: what was checked (a path or the source's type).
        oracle: the framework that computed the expected values, or ``numpyrnn.reference``.
        rows: one :class:`VerifyRow` per compared output.
        atol, rtol: the tolerance used (defaults from the dtype, see ``dtype``).
        dtype: the precision the tolerance was chosen for.
        inputs: a one-line description of the inputs.
        modules: the checked modules' configurations, by name.
    """

    source: str
    oracle: str
    rows: list[VerifyRow]
    atol: float
    rtol: float
    dtype: str
    inputs: str
    modules: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every row within tolerance."""
        return bool(self.rows) and all(r.ok for r in self.rows)

    @property
    def max_error(self) -> float:
        """The largest error of any row."""
        return max((r.max_error for r in self.rows), default=float("nan"))

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = [f"source: {self.source}", f"oracle: {self.oracle}"]
        for name, config in self.modules.items():
            lines.append(f"module: {name}: {config}")
        lines.append(f"inputs: {self.inputs}")
        lines.append(f"tolerance: |error| <= {self.atol:g} + {self.rtol:g} * |expected| ({self.dtype} default"
                     f"{'' if (self.atol, self.rtol) == TOLERANCES.get(self.dtype) else ', overridden'})")
        wm = max([len("module")] + [len(r.module) for r in self.rows])
        wo = max([len("output")] + [len(r.output) for r in self.rows])
        ws = max([len("shape")] + [len(str(r.shape)) for r in self.rows])
        lines.append("")
        lines.append(f"{'module':<{wm}}  {'output':<{wo}}  {'shape':<{ws}}  {'max |error|':>11}  result")
        for r in self.rows:
            lines.append(f"{r.module:<{wm}}  {r.output:<{wo}}  {str(r.shape):<{ws}}  {r.max_error:>11.2e}  "
                         f"{'ok' if r.ok else 'FAIL'}")
        lines.append("")
        bad = [r for r in self.rows if not r.ok]
        if self.ok:
            lines.append(f"OK: {len(self.rows)} output(s) within tolerance, max error {self.max_error:.2e}")
        else:
            lines.append(f"FAILED: {len(bad)} of {len(self.rows)} output(s) beyond tolerance, "
                         f"max error {self.max_error:.2e}")
        return "\n".join(lines)


@dataclass
class _Case:
    """One module of the source with its oracle."""

    name: str
    module: nn.Module | None  # numpyrnn's conversion (None until built)
    run: Runner
    oracle: str
    dtype: str  # the oracle's precision


# --------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------


def verify(source: Any, module: Any = None, *, inputs: Any = None, atol: float | None = None,
           rtol: float | None = None, seed: int = 0, oracle: str | None = None, **options: Any) -> VerifyReport:
    """Check a converted module against the source's own framework.

    Args:
        source: a path in a format numpyrnn reads (``format=`` names it when the suffix
            does not): its modules are those of ``numpyrnn.load_all(source, **options)``,
            one group of rows per module under the source's name; or a Keras layer, list of layers or model, an ``onnx.ModelProto``,
            Flax params, TF1 variables (``{"kernel", "bias"}``, lists, ``{"fw", "bw"}``)
            or a dict of block arrays (``w0``, ``w``, ``b0``, ``b``, ``proj``).
        module: the torch module to check, or a path to a converted ``.pt``/``.safetensors``
            file; any ``nn.GRU``/``nn.LSTM``/``nn.RNN`` works. Default: numpyrnn's own
            conversion of ``source``. For a source with several modules: a converted file
            holding modules of the same names (what ``numpyrnn convert`` writes), or a
            mapping of the source's names to modules (only those are checked).
        inputs: ``x`` in the module's own layout (``batch_first`` as the module), or
            ``(x, h0)`` / ``(x, (h0, c0))`` as the module's ``forward`` takes them. Default:
            seeded random ``x`` of 2 sequences of 5 steps, and random initial states.
        atol, rtol: the tolerance; defaults from the dtype (see :data:`TOLERANCES`).
        seed: seed of the random inputs.
        oracle: ``None`` runs the source's framework where it is importable and
            :mod:`numpyrnn.reference` otherwise; ``"reference"`` always uses the reference,
            over the source's arrays read with the framework's documented layout.
        **options: reading options: ``cell`` (``"gru"``, ``"lstm"``, ``"rnn"``: needed for
            block arrays without biases and for TF1 RNN cells), ``nonlinearity``, ``gates``,
            ``rowwise`` (block arrays), ``forget_bias`` (TF1); for paths also ``format``,
            ``stack`` (Flax), ``layer`` (a name or a list of names: only those modules, as
            :func:`numpyrnn.load` picks them) and the other options of :func:`numpyrnn.load_all`;
            ``variants=True`` (Keras, ONNX and TF1 paths and in-memory sources): check the
            :mod:`numpyrnn.variants` module a layer torch cannot compute converts to, and take
            such modules (or their ``Directions`` wrapper) as ``module``.

    Returns:
        A :class:`VerifyReport`; ``report.ok`` tells whether every output is within tolerance.

    Raises:
        LayoutError: the source cannot be read or converted, or ``module`` does not have
            the source's configuration.
        TypeError: ``source`` is of no kind numpyrnn reads.
    """
    if oracle not in (None, "framework", "reference"):
        raise LayoutError(f"oracle={oracle!r}: expected None (the source's framework) or 'reference'")
    options = {**options, "_reference": oracle == "reference"}
    if "variants" in options and not isinstance(options["variants"], bool):
        raise TypeError(f"variants should be of type bool, got: {type(options['variants']).__name__}")
    with warnings.catch_warnings():  # the report names every variant module it checks
        from .variants import VariantWarning

        warnings.simplefilter("ignore", VariantWarning)
        label, cases = _cases(source, module, options)
        if module is not None:
            _replace_modules(label, cases, module)
    rows: list[VerifyRow] = []
    configs: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    dtypes = {_dtype_name(_param_dtype(c.module)) for c in cases} | {c.dtype for c in cases}
    dtype = max(dtypes, key=_PRECISION.index)
    default = TOLERANCES[dtype]
    a = default[0] if atol is None else float(atol)
    r = default[1] if rtol is None else float(rtol)
    described = ""
    for case in cases:
        mod = case.module
        if mod is None:  # pragma: no cover - every reader sets it
            raise LayoutError(f"{label}: no module for {case.name}")
        spec = _spec(mod)
        configs[case.name] = (_variant_text(mod) if _is_variant(mod) else spec.describe()) + \
            (", batch_first" if mod.batch_first else "")
        x_bm, h0, c0, described = _inputs(spec, mod, inputs, rng)
        expected = case.run(x_bm.astype(np.float32) if case.dtype == "float32" else x_bm, h0, c0)
        got = _run_module(mod, x_bm, h0, c0)
        rows.extend(_compare(case.name, spec, got, expected, a, r))
    oracles = sorted({c.oracle for c in cases})
    return VerifyReport(source=label, oracle="; ".join(oracles), rows=rows, atol=a, rtol=r, dtype=dtype,
                        inputs=described, modules=configs)


# --------------------------------------------------------------------------------------
# inputs, running, comparing
# --------------------------------------------------------------------------------------

def _param_dtype(module: Any) -> torch.dtype:
    p = next(iter(module.parameters()), None)
    return torch.float32 if p is None else p.dtype


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).replace("torch.", "")
    return name if name in TOLERANCES else "float32"


def _inputs(spec: RNNSpec, module: nn.Module, inputs: Any, rng: np.random.Generator):
    """``(x batch-major float64, h0, c0, description)``."""
    LD, R, H = spec.num_layers * spec.directions, spec.rec, spec.hidden_size
    h0 = c0 = None
    given = inputs is not None
    if given:
        x = inputs
        if isinstance(inputs, tuple):
            if len(inputs) != 2:
                raise LayoutError(f"inputs: expected x, (x, h0) or (x, (h0, c0)), got a tuple of {len(inputs)}")
            x, state = inputs
            if isinstance(state, tuple):
                if spec.mode != "LSTM" or len(state) != 2:
                    raise LayoutError("inputs: a (h0, c0) pair is for an LSTM; other cells take h0 alone")
                h0, c0 = (np.asarray(_np(s), dtype=np.float64) for s in state)
            elif state is not None:
                h0 = np.asarray(_np(state), dtype=np.float64)
        x = np.asarray(_np(x), dtype=np.float64)
        if x.ndim != 3 or x.shape[-1] != spec.input_size:
            order = "(batch, time, input)" if module.batch_first else "(time, batch, input)"
            raise LayoutError(f"inputs: x must be {order} with input={spec.input_size} (the module's "
                              f"input_size), got shape {tuple(x.shape)}")
        x_bm = x if module.batch_first else x.transpose(1, 0, 2)
    else:
        x_bm = rng.uniform(-1.0, 1.0, (_N, _T, spec.input_size))
    N = x_bm.shape[0]
    states_given = h0 is not None
    for name, s, width in (("h0", h0, R), ("c0", c0, H)):
        if s is not None and s.shape != (LD, N, width):
            raise LayoutError(f"inputs: {name} must be (layers*directions={LD}, batch={N}, {width}), got {tuple(s.shape)}")
    if h0 is None:
        h0 = rng.uniform(-0.5, 0.5, (LD, N, R))
    if spec.mode == "LSTM" and c0 is None:
        c0 = rng.uniform(-0.5, 0.5, (LD, N, H))
    what = "given x" if given else f"random x uniform in [-1, 1] (seeded), batch {N}, {x_bm.shape[1]} steps"
    states = "h0" + (", c0" if spec.mode == "LSTM" else "")
    how = "given " + states if states_given else f"random {states} uniform in [-0.5, 0.5]"
    return x_bm, h0, c0, f"{what}; {how}"


def _np(a: Any) -> Any:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a


def _is_variant(module: Any) -> bool:
    from .variants import loading

    return loading.is_variant(module)


def _spec(module: Any) -> RNNSpec:
    """The spec of a torch module, or of the module a variant (or its Directions wrapper) runs."""
    if _is_variant(module):
        from .variants import loading

        return loading.spec_of(loading._unwrap(module)[0])
    return RNNSpec.of(module)


def _variant_text(module: Any) -> str:
    """``ResetBeforeGRU(recurrent_activation='hard_sigmoid_keras3') GRU(3, 4)``: a variant module on one line."""
    from .variants import loading

    v = loading.variant_config(module, source="")["variant"]
    parts = [f"{k}={val!r}" for k, val in v["options"].items()]
    parts += [f"{k}={v[k]!r}" for k, default in (("merge_mode", "concat"), ("time", "forward")) if v[k] != default]
    return f"{v['class']}({', '.join(parts)}): {_spec(module).describe()}"


def _run_module(module: nn.Module, x_bm: np.ndarray, h0: np.ndarray, c0: np.ndarray | None) -> Outputs:
    p = next(iter(module.parameters()))
    dt, dev = p.dtype, p.device
    x = x_bm if module.batch_first else x_bm.transpose(1, 0, 2)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=dev, dtype=dt)

    with torch.no_grad():
        state: Any = (t(h0), t(c0)) if c0 is not None else t(h0)
        y, hn = module(t(x), state)
    if isinstance(y, tuple):  # a Directions wrapper with merge_mode=None: (y_forward, y_backward)
        y = torch.cat(list(y), dim=-1)
    y = y.double().cpu().numpy()
    if not module.batch_first:
        y = y.transpose(1, 0, 2)
    if isinstance(hn, tuple):
        return {"y": y, "h_n": hn[0].double().cpu().numpy(), "c_n": hn[1].double().cpu().numpy()}
    return {"y": y, "h_n": hn.double().cpu().numpy(), "c_n": None}


def _compare(name: str, spec: RNNSpec, got: Outputs, expected: Outputs, atol: float, rtol: float) -> list[VerifyRow]:
    D = spec.directions
    dirs = ("forward", "backward")

    def row(output: str, a: np.ndarray, b: np.ndarray) -> VerifyRow:
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise LayoutError(f"{name}: {output} has shape {a.shape} from the module and {b.shape} from the oracle")
        err = np.abs(a - b)
        finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
        max_err = float(err.max()) if err.size else 0.0
        ok = finite and bool((err <= atol + rtol * np.abs(b)).all())
        return VerifyRow(name, output, tuple(a.shape), max_err if finite else float("inf"), atol, rtol, ok)

    rows = [row("y", got["y"], expected["y"])]
    for key in ("h_n", "c_n"):
        if expected.get(key) is None:
            continue
        for k in range(spec.num_layers):
            for d in range(D):
                label = f"{key}[layer {k}" + (f", {dirs[d]}]" if D == 2 else "]")
                rows.append(row(label, got[key][k * D + d], expected[key][k * D + d]))
    return rows


# --------------------------------------------------------------------------------------
# sources -> cases
# --------------------------------------------------------------------------------------

def _cls(cell: str) -> Any:
    from . import modules

    return getattr(modules, _CLASSES["RNN" if cell.upper().startswith("RNN") else cell.upper()])


def _cases(source: Any, module: Any, options: dict) -> tuple[str, list[_Case]]:
    if isinstance(source, (str, os.PathLike)):
        return _path_cases(Path(source), module, options)
    kind = _kind(source)
    if kind == "blocks":
        return "block arrays", [_blocks_case("blocks", source, options, build=True)]
    if kind == "keras":
        return _keras_label(source), _keras_cases(source, options)
    if kind == "onnx":
        return "onnx.ModelProto", [_onnx_case(source, options)]
    if kind == "flax":
        return "Flax params", [_flax_case(source, options)]
    return "TF1 variables", [_tf1_case(source, options, build=True)]


def _kind(source: Any) -> str:
    if isinstance(source, Mapping):
        keys = set(source)
        if "w0" in keys:
            return "blocks"
        if keys & {"kernel", "fw", "bw"} or any(str(k).endswith("/kernel") for k in keys):
            return "tf1"
        return "flax"
    if type(source).__name__ == "ModelProto" and hasattr(source, "graph"):
        return "onnx"
    items = source if isinstance(source, (list, tuple)) else [source]
    if items and all(_is_keras_layer(i) or _is_keras_model(i) for i in items):
        return "keras"
    if items and all(isinstance(i, Mapping) for i in items):
        first = items[0]
        return "tf1" if set(first) & {"kernel", "fw", "bw"} or any(str(k).endswith("/kernel") for k in first) \
            else "flax"
    raise TypeError(f"verify: cannot read a source of type {type(source).__name__}: expected a path, a Keras "
                    "layer or model, an onnx.ModelProto, Flax params, TF1 variables or a dict of block arrays")


def _given_module(module: Any, case: _Case) -> nn.Module:
    if _is_variant(module) or _is_variant(case.module):
        return _given_variant(module, case)
    if not isinstance(module, nn.RNNBase):
        raise TypeError(f"module: expected a torch.nn.GRU/LSTM/RNN, a mapping of names to them, or a path, "
                        f"got {type(module).__name__}")
    ours, theirs = RNNSpec.of(case.module), RNNSpec.of(module)  # type: ignore[arg-type]
    # biases or none only change the numbers, which the comparison judges (a module with
    # random biases where the source has none is wrong by its outputs, not its shape)
    if ours.replace(bias=theirs.bias) != theirs:
        raise LayoutError(f"module for {case.name!r}: {theirs.describe()} does not have the source's configuration "
                          f"{ours.describe()}")
    return module


def _given_variant(module: Any, case: _Case) -> nn.Module:
    """A variant module given for a source whose conversion is one: the same class, options and sizes."""
    from .variants import loading

    def config(m: Any) -> dict:
        c = loading.variant_config(m, source="")
        return {k: v for k, v in c.items() if k not in ("source", "dtype", "batch_first", "bias")}

    if not _is_variant(module):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected a torch module, a mapping of names to them, or a path, "
                            f"got {type(module).__name__}")
        raise LayoutError(f"module for {case.name!r}: a {type(module).__name__} cannot compute what the source "
                          f"does; numpyrnn converts it to {_variant_text(case.module)} (numpyrnn.variants)")
    if case.module is None or not _is_variant(case.module):
        got = "nothing" if case.module is None else RNNSpec.of(case.module).describe()
        raise LayoutError(f"module for {case.name!r}: {_variant_text(module)} is a numpyrnn.variants module, but "
                          f"the source converts to {got} (pass variants=True where the source needs a variant)")
    ours, theirs = config(case.module), config(module)
    if ours != theirs:
        diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        raise LayoutError(f"module for {case.name!r}: {_variant_text(module)} does not have the source's "
                          f"configuration {_variant_text(case.module)} (differs in {', '.join(diff)})")
    return module


def _replace_modules(label: str, cases: list[_Case], module: Any) -> None:
    """Put the given module (or a converted file's modules, by name) in place of numpyrnn's conversion.

    A mapping of names to modules checks those modules only (``cases`` keeps the source's order).
    """
    if isinstance(module, Mapping):
        names = [c.name for c in cases]
        unknown = [n for n in module if n not in names]
        if unknown or not module:
            raise LayoutError(f"module: {label} holds no module named {', '.join(map(repr, unknown))}; it holds "
                              f"{', '.join(map(repr, names))}" if module else "module: an empty mapping")
        cases[:] = [c for c in cases if c.name in module]
        for case in cases:
            case.module = _given_module(module[case.name], case)
        return
    if not isinstance(module, (str, os.PathLike)):
        if len(cases) != 1:
            raise LayoutError(f"{label}: holds {len(cases)} recurrent modules "
                              f"({', '.join(repr(c.name) for c in cases)}); module= can only replace one "
                              f"(pass a converted file holding modules of the same names to check them all)")
        cases[0].module = _given_module(module, cases[0])
        return
    from .api import load_all

    path = Path(module)
    loaded = load_all(path)
    if len(cases) == 1 and len(loaded) == 1:
        cases[0].module = _given_module(next(iter(loaded.values())), cases[0])
        return
    names = [c.name for c in cases]
    if not set(loaded) <= set(names):
        raise LayoutError(f"{path.name}: holds the module(s) {', '.join(map(repr, loaded))}, but the source "
                          f"{label} holds {', '.join(map(repr, names))}; a converted file is checked module by "
                          f"module under the source's names")
    cases[:] = [c for c in cases if c.name in loaded]  # a file of some of the modules checks those
    for case in cases:
        case.module = _given_module(loaded[case.name], case)


# -- paths: the modules numpyrnn.load_all builds, the oracle over the same entries' arrays

#: What the oracle reads for each format whose entries keep the source's arrays.
_ORACLES = {"blocks": "numpyrnn.reference", "keras": "keras", "onnx": "onnxruntime", "flax": "flax",
            "tf1": "TensorFlow (or numpyrnn.reference)", "tfckpt": "TensorFlow or Keras (or numpyrnn.reference)",
            "paddle": "paddle (or numpyrnn.reference)"}


def _path_cases(path: Path, module: Any, options: dict) -> tuple[str, list[_Case]]:
    """One case per module of ``numpyrnn.load_all(path, **options)``, under the same names."""
    from .api import _build_options, load_all, read_model

    if not path.exists() and not path.with_name(path.name + ".index").is_file():  # a TF checkpoint's prefix
        raise FileNotFoundError(f"{path}: no such file or folder")
    opts = {k: v for k, v in options.items() if not k.startswith("_") and (k != "format" or v)}
    build = _build_options(opts)
    wanted = opts.pop("layer", None)
    try:
        mf = read_model(path, **opts)
        if wanted is not None:  # as numpyrnn.load(path, layer=...): the others may not convert
            entries = [mf.entry(n) for n in dict.fromkeys([wanted] if isinstance(wanted, str) else wanted)]
        else:
            if mf.problems:  # load_all refuses such a file, with its message
                load_all(path, **opts, **build)
            entries = list(mf.modules)
    except LayoutError as exc:
        if path.name in str(exc):
            raise
        raise LayoutError(f"{path.name}: {exc}") from None
    if mf.format not in _ORACLES:
        raise LayoutError(f"{path.name}: a {mf.format} file holds converted modules, not a source to check them "
                          f"against; verify reads {', '.join(_ORACLES)} sources (pass the converted file as "
                          f"the module to check)")
    cases = []
    for entry in entries:
        if entry.arrays is None:  # pragma: no cover - every reader of _ORACLES keeps them
            raise LayoutError(f"{path.name}: module {entry.name!r}: the reader kept no arrays to check against")
        case = _entry_case(mf.format, entry, options)
        case.module = entry.build(**build)
        cases.append(case)
    return str(path), cases


def _entry_case(fmt: str, entry: Any, options: dict) -> _Case:
    """The oracle of one :class:`~numpyrnn.formats.Entry`, over the arrays its reader kept."""
    config = entry.config
    opts = {**options, "cell": entry.cell}
    if "variant" in config:
        opts["_variant"] = config["variant"]
    if config.get("nonlinearity") and entry.cell == "rnn":
        opts["nonlinearity"] = config["nonlinearity"]
    arrays = entry.arrays
    if fmt in ("tfckpt", "paddle") and entry.cell == "rnn" and options.get("nonlinearity"):
        opts["nonlinearity"] = options["nonlinearity"]  # these files do not record it: the option rules
    if fmt == "paddle":
        return _paddle_case(entry.name, arrays, config, opts)
    if fmt == "tfckpt":  # TF1 cell scopes are TF1 variables; TF2 object-graph layers are Keras weights
        if isinstance(arrays, Mapping) or isinstance(arrays[0], Mapping):
            fmt = "tf1"
            if options.get("forget_bias") is not None:  # not stored in a checkpoint: the option rules
                config = {**config, "forget_bias": options["forget_bias"]}
        else:
            fmt = "keras"
            arrays = [np.asarray(a) for a in arrays]
            if config.get("keras_layer"):  # Keras 2 CuDNNLSTM/CuDNNGRU: the plain layer that computes it
                arrays = _cudnn_as_keras(str(config["keras_layer"]), arrays, entry.name)
    if fmt == "blocks":
        return _blocks_case(entry.name, arrays, opts, build=False)
    if fmt == "keras":
        layers = [arrays] if isinstance(arrays[0], np.ndarray) else list(arrays)
        return _keras_arrays_case(entry.name, layers, {"activation": config.get("nonlinearity")}, opts)
    if fmt == "onnx":
        case = _onnx_case(arrays, opts, build=False)
    elif fmt == "flax":
        case = _flax_case(arrays, opts, build=False)
    else:
        if config.get("forget_bias") is not None:
            opts["forget_bias"] = config["forget_bias"]
        case = _tf1_case(arrays, opts, build=False)
    case.name = entry.name
    return case


def _cudnn_as_keras(class_name: str, weights: list, name: str) -> list:
    """A Keras 2 cuDNN layer's weights as the plain Keras layer computing the same: ``CuDNNGRU`` is
    ``GRU(reset_after=True)`` with the flat bias as its ``(2, 3H)`` bias; ``CuDNNLSTM`` is ``LSTM`` with the
    two halves of the flat bias summed (cuDNN adds both to every gate)."""
    from .formats import keras2

    out, recurrent = keras2.cudnn_weights(class_name, weights, where=f"module {name!r}")
    for d, b in enumerate(recurrent):  # LSTM only: [kernel, recurrent_kernel, bias] per direction
        out[3 * d + 2] = np.asarray(out[3 * d + 2]) + np.asarray(b)
    return out


# -- PaddlePaddle (oracle: paddle when importable, else numpyrnn.reference) ------------

_PADDLE_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ho")


def _paddle_reference(cell: str, layers: list, nonlinearity: str) -> Runner:
    """The reference over Paddle's per-cell arrays: torch's layout and formulas (``weight_ih (G*H, I)``,
    gates GRU ``r, z, c`` with ``bias_hh`` inside the reset product, LSTM ``i, f, c, o``;
    ``weight_ho (H, P)`` the projection)."""
    G = {"gru": 3, "lstm": 4, "rnn": 1}[cell]
    units = [[(np.asarray(u["weight_ih"], dtype=np.float64), np.asarray(u["weight_hh"], dtype=np.float64),
               u.get("bias_ih"), u.get("bias_hh")) for u in layer] for layer in layers]
    a = _stack_blocks(units, G)
    if "weight_ho" in layers[0][0]:
        a["proj"] = np.stack([np.stack([np.asarray(u["weight_ho"], dtype=np.float64).T for u in layer])
                              for layer in layers])
    return _reference_runner(cell, a, {"gru": "rzn", "lstm": "ifgo", "rnn": None}[cell], nonlinearity)


def _paddle_runner(paddle: Any, cell: str, layers: list, config: dict, nonlinearity: str) -> Runner:
    """``paddle.nn.LSTM``/``GRU``/``SimpleRNN`` of the file's configuration, its cells given the file's arrays."""
    import re

    built: list[Any] = []

    def make() -> Any:
        kw: dict[str, Any] = dict(num_layers=config["num_layers"], time_major=False,
                                  direction="bidirect" if config["bidirectional"] else "forward")
        if cell == "lstm":
            if config.get("proj_size"):
                kw["proj_size"] = int(config["proj_size"])
            layer = paddle.nn.LSTM(config["input_size"], config["hidden_size"], **kw)
        elif cell == "gru":
            layer = paddle.nn.GRU(config["input_size"], config["hidden_size"], **kw)
        else:
            layer = paddle.nn.SimpleRNN(config["input_size"], config["hidden_size"], activation=nonlinearity, **kw)
        found = 0
        for key, sub in layer.named_sublayers():  # the cells: "0.cell", or "0.cell_fw" and "0.cell_bw"
            m = re.fullmatch(r"(\d+)\.cell(_fw|_bw)?", key)
            if m is None:
                continue
            unit = layers[int(m[1])][1 if m[2] == "_bw" else 0]
            for param in _PADDLE_PARAMS:
                if getattr(sub, param, None) is None:
                    continue
                if param not in unit:
                    raise LayoutError(f"paddle oracle: the file holds no {key}.{param}, which "
                                      f"paddle.nn.{type(layer).__name__} has")
                getattr(sub, param).set_value(np.asarray(unit[param], dtype=np.float32))
                found += 1
        if found != sum(len(u) for layer in layers for u in layer):
            raise LayoutError(f"paddle oracle: paddle.nn.{type(layer).__name__} takes {found} of the file's "
                              f"{sum(len(u) for layer in layers for u in layer)} arrays")
        layer.eval()
        return layer

    def run(x, h0, c0):
        if not built:
            built.append(make())
        layer = built[0]
        t = paddle.to_tensor
        states: Any = (t(h0.astype(np.float32)), t(c0.astype(np.float32))) if cell == "lstm" \
            else t(h0.astype(np.float32))
        with paddle.no_grad():
            y, final = layer(t(np.asarray(x, dtype=np.float32)), initial_states=states)
        if cell == "lstm":
            return {"y": y.numpy(), "h_n": final[0].numpy(), "c_n": final[1].numpy()}
        return {"y": y.numpy(), "h_n": final.numpy(), "c_n": None}

    return run


def _paddle_case(name: str, layers: list, config: dict, options: dict) -> _Case:
    cell = str(config["cell"])
    nonlinearity = options.get("nonlinearity") or config.get("nonlinearity") or "tanh"
    reference = _paddle_reference(cell, layers, nonlinearity)
    why = None
    if options.get("_reference"):
        why = "asked for"
    elif not config.get("bias", True):
        why = "paddle's layers cannot be built without biases to match the file"
    elif sys.modules.get("tensorflow") is not None:
        why = "paddle cannot be imported into a process that has imported tensorflow"
    else:
        try:
            import paddle
        except ImportError:
            why = "paddle is not installed"
    if why is not None:
        return _Case(name, None, reference, f"numpyrnn.reference (numpy, float64; {why}), over the source's arrays "
                     "read with Paddle's layout (torch's gate order and formulas)", "float64")
    paddle.set_device("cpu")
    kind = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}[cell]
    return _Case(name, None, _paddle_runner(paddle, cell, layers, config, nonlinearity),
                 f"paddle {paddle.__version__} (paddle.nn.{kind})", "float32")


# -- numpyrnn.reference over any source's arrays --------------------------------------

def _unit_block(wi: np.ndarray, wh: np.ndarray, bi: np.ndarray | None, bh: np.ndarray | None, G: int):
    """One unit's block row and biases from gate-major ``(G*H, width)`` matrices (source gate order)."""
    H = wi.shape[0] // G

    def rows(m: np.ndarray) -> np.ndarray:  # block[h, g*width + i] = m[g*H + h, i]
        return m.reshape(G, H, m.shape[1]).transpose(1, 0, 2).reshape(H, G * m.shape[1])

    def cols(v: np.ndarray | None) -> np.ndarray:
        return np.zeros((H, G)) if v is None else np.asarray(v, dtype=np.float64).reshape(G, H).T

    block = np.concatenate([rows(np.asarray(wi, dtype=np.float64)), rows(np.asarray(wh, dtype=np.float64))], axis=1)
    return block, np.concatenate([cols(bi), cols(bh)], axis=1)


def _stack_blocks(units: list[list[tuple]], G: int) -> dict[str, Any]:
    """Block arrays from ``units[layer][direction] = (wi, wh, bi, bh)``."""
    blocks = [[_unit_block(u[0], u[1], u[2], u[3], G) for u in layer] for layer in units]
    w = [np.stack([b for b, _ in layer]) for layer in blocks]
    b = [np.stack([c for _, c in layer]) for layer in blocks]
    return {"w0": w[0], "w": np.stack(w[1:]) if len(w) > 1 else None,
            "b0": b[0], "b": np.stack(b[1:]) if len(b) > 1 else None, "proj": None}


def _reference_runner(cell: str, a: Mapping[str, Any], gates: str | None, nonlinearity: str = "tanh",
                      rowwise: bool = False) -> Runner:
    from . import reference

    def run(x, h0, c0):
        common = dict(b0=a.get("b0"), b=a.get("b"), h0=h0, batch_first=True, rowwise=rowwise)
        if cell == "lstm":
            y, (hn, cn) = reference.lstm(x, a["w0"], a.get("w"), proj=a.get("proj"), c0=c0, gates=gates, **common)
            return {"y": y, "h_n": hn, "c_n": cn}
        if cell == "gru":
            y, hn = reference.gru(x, a["w0"], a.get("w"), gates=gates, **common)
        else:
            y, hn = reference.rnn(x, a["w0"], a.get("w"), nonlinearity=nonlinearity, **common)
        return {"y": y, "h_n": hn, "c_n": None}

    return run


def _variant_of(module: Any, options: dict) -> dict | None:
    """The variant record (class, options, merge_mode, time) of the module checked, or ``None``."""
    if options.get("_variant") is not None:
        return dict(options["_variant"])
    if module is not None and _is_variant(module):
        from .variants import loading

        return dict(loading.variant_config(module, source="")["variant"])
    return None


def _directions(run: Callable[[np.ndarray, np.ndarray, Any], Outputs], variant: Mapping, R: int) -> Runner:
    """A runner of the inner module with the variant's time direction and output merge, as the
    sources define them: Keras ``go_backwards`` reads the sequence from its end and keeps the output in
    the order computed; ONNX ``direction="reverse"`` reads from the end and returns the output in input
    time order; Keras ``Bidirectional`` ``merge_mode`` combines the forward and backward halves."""
    time, merge = variant.get("time", "forward"), variant.get("merge_mode", "concat")

    def wrapped(x, h0, c0):
        if time != "forward":
            out = run(np.ascontiguousarray(x[:, ::-1]), h0, c0)
            if time == "reverse":
                out["y"] = np.ascontiguousarray(out["y"][:, ::-1])
            return out
        out = run(x, h0, c0)
        y = out["y"]
        fwd, bwd = y[..., :R], y[..., R:]
        if merge == "sum":
            out["y"] = fwd + bwd
        elif merge == "mul":
            out["y"] = fwd * bwd
        elif merge == "ave":
            out["y"] = (fwd + bwd) / 2
        return out  # concat, and None: the pair, compared side by side

    return wrapped


def _variant_runner(cell: str, a: Mapping[str, Any], gates: str | None, variant: Mapping,
                    peepholes: np.ndarray | None = None) -> Runner:
    """:func:`numpyrnn.reference.gru_variant`/:func:`~numpyrnn.reference.lstm_variant` over block arrays
    (``peepholes`` ``(L, D, 3, H)`` in ``i, f, o`` order), with the variant's direction and merge."""
    from . import reference

    opts = dict(variant.get("options") or {})
    acts = dict(recurrent_activation=opts.get("recurrent_activation", "sigmoid"),
                activation=opts.get("activation", "tanh"), preactivation_clip=opts.get("preactivation_clip"))
    H = int(np.shape(a["w0"])[-2])
    R = H if a.get("proj") is None else int(np.shape(a["proj"])[-2])

    def run(x, h0, c0):
        common = dict(b0=a.get("b0"), b=a.get("b"), h0=h0, batch_first=True, gates=gates, **acts)
        if cell == "gru":
            y, hn = reference.gru_variant(x, a["w0"], a.get("w"), reset_after=variant["class"] == "ResetAfterGRU",
                                          **common)
            return {"y": y, "h_n": hn, "c_n": None}
        y, (hn, cn) = reference.lstm_variant(x, a["w0"], a.get("w"), proj=a.get("proj"), peepholes=peepholes, c0=c0,
                                             cell_clip=opts.get("cell_clip"), proj_clip=opts.get("proj_clip"),
                                             input_forget=bool(opts.get("input_forget", False)), **common)
        return {"y": y, "h_n": hn, "c_n": cn}

    return _directions(run, variant, R)


def _variant_reference(cell: str, a: Mapping[str, Any], gates: str | None, variant: Mapping | None,
                       nonlinearity: str = "tanh", peepholes: np.ndarray | None = None) -> Runner:
    if variant is not None:
        return _variant_runner(cell, a, gates, variant, peepholes)
    return _reference_runner(cell, a, gates, nonlinearity)


def _fallback(what: str, options: dict) -> str:
    why = "asked for" if options.get("_reference") else f"{what} is not installed"
    return f"numpyrnn.reference (numpy, float64; {why}), over the source's arrays"


# -- block arrays (oracle: numpyrnn.reference) ---------------------------------------

def _block_cell(arrays: Mapping, options: dict) -> str:
    cell = options.get("cell")
    if cell:
        cell = str(cell).lower()
        if cell not in ("gru", "lstm", "rnn"):
            raise LayoutError(f"cell={cell!r}: expected 'gru', 'lstm' or 'rnn'")
        return cell
    b0 = arrays.get("b0")
    if arrays.get("proj") is not None:
        return "lstm"
    if b0 is not None and np.ndim(b0) == 3 and int(np.shape(b0)[-1]) in (2, 6, 8):
        return {2: "rnn", 6: "gru", 8: "lstm"}[int(np.shape(b0)[-1])]
    raise LayoutError("block arrays: the cell cannot be told from w0 alone (no b0 or proj); pass cell='gru', "
                      "'lstm' or 'rnn'")


def _blocks_module(arrays: Mapping, options: dict) -> nn.Module:
    cell = _block_cell(arrays, options)
    kw: dict[str, Any] = {k: arrays.get(k) for k in _BLOCK_KEYS if arrays.get(k) is not None}
    if cell != "lstm":
        kw.pop("proj", None)
    if cell == "rnn":
        kw["nonlinearity"] = options.get("nonlinearity") or "tanh"
    return _cls(cell).from_numpy(**kw, gates=options.get("gates"), rowwise=bool(options.get("rowwise", False)))


def _blocks_case(name: str, arrays: Mapping, options: dict, *, build: bool) -> _Case:
    from . import reference

    cell = _block_cell(arrays, options)
    a = {k: (None if arrays.get(k) is None else np.asarray(arrays[k], dtype=np.float64)) for k in _BLOCK_KEYS}
    gates, rowwise = options.get("gates"), bool(options.get("rowwise", False))
    nonlinearity = options.get("nonlinearity") or "tanh"

    def run(x, h0, c0):
        common = dict(b0=a["b0"], b=a["b"], h0=h0, batch_first=True, rowwise=rowwise)
        if cell == "lstm":
            y, (hn, cn) = reference.lstm(x, a["w0"], a["w"], proj=a["proj"], c0=c0, gates=gates, **common)
            return {"y": y, "h_n": hn, "c_n": cn}
        if cell == "gru":
            y, hn = reference.gru(x, a["w0"], a["w"], gates=gates, **common)
        else:
            y, hn = reference.rnn(x, a["w0"], a["w"], nonlinearity=nonlinearity, **common)
        return {"y": y, "h_n": hn, "c_n": None}

    module = _blocks_module(arrays, options) if build else None
    return _Case(name, module, run, "numpyrnn.reference (numpy, float64, from the block-layout formulas)", "float64")


# -- Keras (oracle: Keras itself) ----------------------------------------------------

def _is_keras_layer(x: Any) -> bool:
    return any(c.__module__.startswith("keras") and c.__name__ == "Layer" for c in type(x).__mro__)


def _is_keras_model(x: Any) -> bool:
    return any(c.__module__.startswith("keras") and c.__name__ == "Model" for c in type(x).__mro__)


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


def _keras_label(source: Any) -> str:
    items = source if isinstance(source, (list, tuple)) else [source]
    return "Keras " + ", ".join(f"{type(i).__name__} {getattr(i, 'name', '')!r}" for i in items)


def _keras_recurrent(model: Any) -> list[Any]:
    keras = _keras()
    return [layer for layer in model.layers if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))]


def _keras_cases(source: Any, options: dict) -> list[_Case]:
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    if len(items) == 1 and _is_keras_model(items[0]):
        layers = _keras_recurrent(items[0])
        if not layers:
            raise LayoutError(f"Keras model {items[0].name!r}: no recurrent layer (GRU, LSTM, SimpleRNN, "
                              "Bidirectional)")
        # each recurrent layer of a model is its own module: what feeds it is the model's business
        return [_keras_case(layer.name, [layer], options) for layer in layers]
    name = items[0].name if len(items) == 1 else "+".join(i.name for i in items)
    return [_keras_case(name, items, options)]


def _keras_cell(layer: Any) -> str:
    keras = _keras()
    inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
    kind = type(inner).__name__
    return {"GRU": "gru", "LSTM": "lstm", "SimpleRNN": "rnn"}.get(kind, kind)


def _keras_case(name: str, layers: list[Any], options: dict) -> _Case:
    keras = _keras()
    cell = _keras_cell(layers[0])
    cls = _cls(cell)
    module = cls.from_keras(layers if len(layers) > 1 else layers[0], variants=bool(options.get("variants")))
    if options.get("_reference"):
        act = "relu" if getattr(module, "nonlinearity", "tanh") == "relu" else "tanh"
        run = _keras_reference(cell, [layer.get_weights() for layer in layers], act, _variant_of(module, options))
        return _Case(name, module, run, _fallback("keras", options), "float64")
    clones = [_keras_clone(keras, layer) for layer in layers]
    return _Case(name, module, _keras_runner(keras, clones), f"keras {keras.__version__} "
                 f"(backend {keras.backend.backend()})", _dtype_name(layers[0].get_weights()[0].dtype))


def _keras_clone(keras: Any, layer: Any) -> Any:
    """The layer rebuilt from its own config, returning sequences and states, with its weights."""
    cfg = copy.deepcopy(layer.get_config())
    if isinstance(layer, keras.layers.Bidirectional):
        for key in ("layer", "backward_layer"):
            if cfg.get(key):
                cfg[key]["config"].update(return_sequences=True, return_state=True)
        clone = keras.layers.Bidirectional.from_config(cfg)
    else:
        cfg.update(return_sequences=True, return_state=True)
        clone = type(layer).from_config(cfg)
    weights = layer.get_weights()
    clone.build((None, None, int(weights[0].shape[0])))
    clone.set_weights(weights)
    return clone


def _keras_runner(keras: Any, layers: list[Any]) -> Runner:
    def run(x, h0, c0):
        bidirectional = isinstance(layers[0], keras.layers.Bidirectional)
        D = 2 if bidirectional else 1
        y = np.asarray(x, dtype=np.float32)
        hs, cs = [], []
        for k, layer in enumerate(layers):
            init = []
            for d in range(D):
                init.append(h0[k * D + d].astype(np.float32))
                if c0 is not None:
                    init.append(c0[k * D + d].astype(np.float32))
            out = layer(y, initial_state=init)
            n_y = 2 if bidirectional and getattr(layer, "merge_mode", "concat") is None else 1
            ys = [np.asarray(keras.ops.convert_to_numpy(o)) for o in out[:n_y]]
            y = np.concatenate(ys, axis=-1)  # merge_mode=None: the pair, side by side
            states = [np.asarray(keras.ops.convert_to_numpy(s)) for s in out[n_y:]]
            per = len(states) // D
            for d in range(D):
                hs.append(states[d * per])
                if per == 2:
                    cs.append(states[d * per + 1])
        return {"y": y, "h_n": np.stack(hs), "c_n": np.stack(cs) if cs else None}

    return run


def _keras_reference(cell: str, layers: list[list], activation: str | None, variant: Mapping | None = None) -> Runner:
    """The reference over Keras arrays: ``kernel (in, G*H)``, ``recurrent_kernel (R, G*H)`` and
    ``bias`` (GRU ``(2, 3H)`` input then recurrent; else ``(G*H,)``), gates GRU ``z, r, h``,
    LSTM ``i, f, c, o``; a ``Bidirectional`` holds the forward list, then the backward one."""
    G = {"gru": 3, "lstm": 4, "rnn": 1}[cell]
    units = []
    for ws in layers:
        D = 2 if len(ws) in (4, 6) else 1
        per = len(ws) // D
        layer = []
        for d in range(D):
            kernel, rec, *rest = ws[d * per:(d + 1) * per]
            bias = np.asarray(rest[0], dtype=np.float64) if rest else None
            bi, bh = (bias[0], bias[1]) if bias is not None and bias.ndim == 2 else (bias, None)
            layer.append((np.asarray(kernel).T, np.asarray(rec).T, bi, bh))
        units.append(layer)
    gates = {"gru": "zrn", "lstm": "ifgo", "rnn": None}[cell]
    return _variant_reference(cell, _stack_blocks(units, G), gates, variant, activation or "tanh")


def _keras_arrays_case(name: str, layers: list, info: dict, options: dict) -> _Case:
    """A Keras file: fresh Keras layers of the recorded kinds, given the file's arrays.

    The layers' sizes come from the converted module (set on the case before it runs);
    their numbers are the file's own arrays, run by Keras.
    """
    try:
        if options.get("_reference"):
            raise ImportError("keras")
        keras = _keras()
    except ImportError:
        cell = str(options["cell"])
        act = "relu" if info.get("activation") == "relu" or options.get("nonlinearity") == "relu" else "tanh"
        return _Case(name, None, _keras_reference(cell, layers, act, options.get("_variant")),
                     _fallback("keras", options), "float64")
    variant = options.get("_variant")
    why = _keras_cannot(variant)
    if why:
        return _Case(name, None, _keras_reference(str(options["cell"]), layers, None, variant),
                     f"numpyrnn.reference (numpy, float64; Keras has no layer computing {why}), over the source's "
                     f"arrays", "float64")
    built: list[Any] = []

    def run(x, h0, c0):
        if not built:
            spec = _spec(case.module)
            built.extend(_keras_layer_for(keras, spec, k, ws, info, variant, top=k == len(layers) - 1)
                         for k, ws in enumerate(layers))
        return _keras_runner(keras, built)(x, h0, c0)

    case = _Case(name, None, run, f"keras {keras.__version__} (backend {keras.backend.backend()})",
                 _dtype_name(np.asarray(layers[0][0]).dtype))
    return case


_KERAS_ACTIVATIONS = {"sigmoid": "sigmoid", "hard_sigmoid_keras3": "hard_sigmoid", "tanh": "tanh", "relu": "relu",
                      "linear": "linear", "hard_sigmoid": None}  # Keras 2's 0.2x + 0.5: a function below


def _keras_cannot(variant: Mapping | None) -> str:
    """What of a variant no Keras layer computes (``""``: Keras computes all of it)."""
    if variant is None:
        return ""
    opts = variant.get("options") or {}
    odd = [f"{k}={v!r}" for k, v in opts.items() if k not in ("recurrent_activation", "activation")]
    odd += [f"{k}={v!r}" for k, v in opts.items() if k in ("recurrent_activation", "activation")
            and v not in _KERAS_ACTIVATIONS]
    if variant.get("time") == "reverse":
        odd.append("time='reverse'")
    return ", ".join(odd)


def _keras_activation(keras: Any, name: str) -> Any:
    if name == "hard_sigmoid":  # Keras 2 and tf.keras 1.x: clip(0.2 x + 0.5, 0, 1), as Keras 2 wrote it
        return lambda v: keras.ops.clip(0.2 * v + 0.5, 0.0, 1.0)
    return _KERAS_ACTIVATIONS[name]


def _keras_layer_for(keras: Any, spec: RNNSpec, k: int, weights: list, info: dict, variant: Mapping | None = None,
                     *, top: bool = True) -> Any:
    kwargs: dict[str, Any] = dict(return_sequences=True, return_state=True, use_bias=spec.bias)
    if spec.mode == "RNN_RELU" or info.get("activation") == "relu":
        kwargs["activation"] = "relu"
    merge = "concat"
    if variant is not None:
        opts = variant.get("options") or {}
        kwargs["recurrent_activation"] = _keras_activation(keras, opts.get("recurrent_activation", "sigmoid"))
        kwargs["activation"] = _keras_activation(keras, opts.get("activation", "tanh"))
        if spec.mode == "GRU":
            kwargs["reset_after"] = variant["class"] == "ResetAfterGRU"
        kwargs["go_backwards"] = variant.get("time") == "go_backwards"
        merge = variant.get("merge_mode", "concat") if top else "concat"
    make = {"GRU": keras.layers.GRU, "LSTM": keras.layers.LSTM}.get(spec.mode, keras.layers.SimpleRNN)
    layer = make(spec.hidden_size, **kwargs)
    if spec.bidirectional:
        layer = keras.layers.Bidirectional(layer, merge_mode=merge)
    width = spec.input_size if k == 0 else spec.directions * spec.hidden_size
    layer.build((None, None, width))
    layer.set_weights([np.asarray(w) for w in weights])
    return layer


# -- ONNX (oracle: onnxruntime) -------------------------------------------------------

def _onnx_case(model: Any, options: dict, *, build: bool = True) -> _Case:
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = [n for n in graph.node if n.op_type in ("GRU", "LSTM", "RNN") and n.domain in ("", "ai.onnx")]
    if not nodes:
        raise LayoutError(f"ONNX model: no GRU, LSTM or RNN node (ops: {', '.join(sorted({n.op_type for n in graph.node}))})")
    cell = nodes[0].op_type.lower()
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    module = None
    if build:
        extra = {"nonlinearity": options["nonlinearity"]} if cell == "rnn" and options.get("nonlinearity") else {}
        module = _cls(cell).from_onnx(model, **extra, variants=bool(options.get("variants")))
    variant = _variant_of(module, options)
    name = getattr(graph, "name", "") or "onnx"
    try:
        if options.get("_reference"):
            raise ImportError("onnxruntime")
        import onnxruntime
    except ImportError:
        return _Case(name, module, _onnx_reference(cell, nodes, init, options, variant),
                     _fallback("onnxruntime", options), "float64")
    opset = next((o.version for o in getattr(model, "opset_import", ()) if o.domain in ("", "ai.onnx")), 14)
    sessions: list[tuple[Any, bool, int]] = []

    def session(node: Any) -> tuple[Any, bool, int]:
        import onnxruntime as ort

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        layout = int(attrs.get("layout", 0))
        D = 2 if attrs.get("direction", b"forward") in (b"bidirectional", "bidirectional") else 1
        names = list(node.input) + [""] * (8 - len(node.input))
        weights = []
        for slot, what in ((1, "W"), (2, "R"), (3, "B"), (7, "P")):
            if names[slot]:
                if names[slot] not in init:
                    raise LayoutError(f"ONNX node {node.name!r}: input {names[slot]!r} is not an initializer")
                weights.append(numpy_helper.from_array(init[names[slot]], what))
        inputs = ["X", "W", "R", "B" if names[3] else "", "", "initial_h"] + (["initial_c"] if cell == "lstm" else [])
        if cell == "lstm" and names[7]:  # the peepholes
            inputs.append("P")
        outputs = ["Y", "Y_h"] + (["Y_c"] if cell == "lstm" else [])
        sub = helper.make_node(node.op_type, inputs, outputs, **attrs)
        dt = helper.np_dtype_to_tensor_dtype(init[names[1]].dtype)
        vin = [helper.make_tensor_value_info(n, dt, None) for n in ["X", "initial_h"] + (["initial_c"] if cell == "lstm" else [])]
        vout = [helper.make_tensor_value_info(n, dt, None) for n in outputs]
        g = helper.make_graph([sub], "verify", vin, vout, initializer=weights)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = min(getattr(model, "ir_version", 0) or 8, m.ir_version)
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]), layout == 1, D

    def run(x, h0, c0):
        if not sessions:
            sessions.extend(session(n) for n in nodes)
        y = np.asarray(x, dtype=np.float32)  # (N, T, F)
        hs, cs = [], []
        row = 0
        for sess, batch_major, D in sessions:
            feed = {"X": y if batch_major else y.transpose(1, 0, 2)}
            h = h0[row:row + D].astype(np.float32)
            feed["initial_h"] = h.transpose(1, 0, 2) if batch_major else h
            if c0 is not None:
                c = c0[row:row + D].astype(np.float32)
                feed["initial_c"] = c.transpose(1, 0, 2) if batch_major else c
            outs = sess.run(None, feed)
            Y = outs[0]  # [T, D, N, H] or [N, T, D, H]
            Y = Y if batch_major else Y.transpose(2, 0, 1, 3)
            y = Y.reshape(Y.shape[0], Y.shape[1], -1)
            hs.append(outs[1].transpose(1, 0, 2) if batch_major else outs[1])
            if c0 is not None:
                cs.append(outs[2].transpose(1, 0, 2) if batch_major else outs[2])
            row += D
        return {"y": y, "h_n": np.concatenate(hs), "c_n": np.concatenate(cs) if cs else None}

    return _Case(name, module, run, f"onnxruntime {onnxruntime.__version__}",
                 _dtype_name(init[nodes[0].input[1]].dtype) if nodes[0].input[1] in init else "float32")


def _onnx_reference(cell: str, nodes: list, init: dict, options: dict, variant: Mapping | None = None) -> Runner:
    """The reference over ONNX arrays: ``W [D, G*H, in]``, ``R [D, G*H, H]``, ``B [D, 2*G*H]``
    (input then recurrent), gates GRU ``z, r, h`` (``linear_before_reset=1``; a variant's record says
    otherwise), LSTM ``i, o, f, c``, peepholes ``P [D, 3*H]`` ``i, o, f``."""
    G = {"gru": 3, "lstm": 4, "rnn": 1}[cell]
    units = []
    peeps = []
    act = "tanh"
    for node in nodes:
        names = list(node.input) + [""] * 8
        if names[7] and names[7] in init:
            P = init[names[7]].astype(np.float64)
            H = P.shape[1] // 3
            peeps.append(np.stack([P[:, :H], P[:, 2 * H:], P[:, H:2 * H]], axis=1))  # i, o, f -> i, f, o
        W, R = init[names[1]].astype(np.float64), init[names[2]].astype(np.float64)
        B = init[names[3]].astype(np.float64) if names[3] in init else None
        GH = W.shape[1]
        for a in node.attribute:
            if a.name == "activations" and a.strings and a.strings[0].decode().lower() == "relu":
                act = "relu"
        units.append([(W[d], R[d], None if B is None else B[d][:GH], None if B is None else B[d][GH:])
                      for d in range(W.shape[0])])
    gates = {"gru": "zrn", "lstm": "iofg", "rnn": None}[cell]
    if peeps and len(peeps) != len(nodes):
        raise LayoutError("ONNX model: some LSTM nodes of the module have peepholes (P) and others do not")
    return _variant_reference(cell, _stack_blocks(units, G), gates, variant, options.get("nonlinearity") or act,
                              np.stack(peeps) if peeps else None)


# -- Flax (oracle: flax linen, rebuilt from the params' structure) --------------------

_FLAX_CELLS = {
    frozenset({"ir", "iz", "in", "hr", "hz", "hn"}): ("gru", "GRUCell"),
    frozenset({"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"}): ("lstm", "LSTMCell"),
    frozenset({"i", "h"}): ("rnn", "SimpleCell"),
}


def _flax_cell(params: Mapping) -> tuple[str, str]:
    found = _FLAX_CELLS.get(frozenset(params))
    if found is None:
        raise LayoutError(f"Flax params: keys {sorted(params)} are not those of a GRUCell, LSTMCell or SimpleCell")
    return found


def _flax_cells(layer: Mapping) -> list[Mapping]:
    """A layer's cell params, forward first."""
    if set(layer) == {"params"}:
        layer = layer["params"]
    if "forward_rnn" in layer:
        return [layer["forward_rnn"]["cell"], layer["backward_rnn"]["cell"]]
    if "cell" in layer:
        return [layer["cell"]]
    return [layer]


def _flax_reference(layers: list) -> tuple[str, Runner]:
    """The reference over Flax params: one ``Dense`` per gate, ``kernel (in, H)``; GRU biases on
    ``ir``, ``iz``, ``in`` and ``hn`` (inside the reset product), LSTM biases on ``hi..ho``,
    ``SimpleCell`` bias on ``i``."""
    cell = _flax_cell(_flax_cells(layers[0])[0])[0]
    ins, hs = {"gru": ("ir", "iz", "in"), "lstm": ("ii", "if", "ig", "io"), "rnn": ("i",)}[cell], \
        {"gru": ("hr", "hz", "hn"), "lstm": ("hi", "hf", "hg", "ho"), "rnn": ("h",)}[cell]

    def stack(p: Mapping, keys: tuple) -> tuple[np.ndarray, np.ndarray]:
        w = np.concatenate([np.asarray(p[k]["kernel"], dtype=np.float64).T for k in keys])
        H = w.shape[0] // len(keys)
        b = np.concatenate([np.asarray(p[k]["bias"], dtype=np.float64) if "bias" in p[k] else np.zeros(H)
                            for k in keys])
        return w, b

    units = []
    for lp in layers:
        layer = []
        for p in _flax_cells(lp):
            (wi, bi), (wh, bh) = stack(p, ins), stack(p, hs)
            layer.append((wi, wh, bi, bh))
        units.append(layer)
    return cell, _reference_runner(cell, _stack_blocks(units, len(ins)), None)


def _flax_case(params: Any, options: dict, *, build: bool = True) -> _Case:
    from .formats.flax import flax_layers

    if isinstance(params, Mapping):
        layers = flax_layers(dict(params))
    else:
        layers = [(lp["params"] if isinstance(lp, Mapping) and set(lp) == {"params"} else lp) for lp in params]
    try:
        if options.get("_reference"):
            raise ImportError("flax")
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import flax
        import flax.linen as fnn
        import jax.numpy as jnp
    except ImportError:
        cell, ref_run = _flax_reference(layers)
        module = _cls(cell).from_flax(layers) if build else None
        return _Case("flax", module, ref_run, _fallback("flax", options), "float64")
    built = []
    for lp in layers:
        cells = _flax_cells(lp)
        cell, cls_name = _flax_cell(cells[0])
        H = int(np.shape(cells[0]["hn" if cell == "gru" else ("hi" if cell == "lstm" else "h")]["kernel"])[1])
        make = getattr(fnn, cls_name)
        mod: Any
        p: dict[str, Any]
        if len(cells) == 2:
            mod = fnn.Bidirectional(fnn.RNN(make(H)), fnn.RNN(make(H)), return_carry=True)
            p = {"forward_rnn": {"cell": cells[0]}, "backward_rnn": {"cell": cells[1]}}
        else:
            mod = fnn.RNN(make(H), return_carry=True)
            p = {"cell": cells[0]}
        built.append((mod, p, cell, len(cells)))

    def run(x, h0, c0):
        y: Any = jnp.asarray(np.asarray(x, dtype=np.float32))
        hs, cs = [], []
        row = 0
        for mod, p, cell, D in built:
            carries = []
            for d in range(D):
                h = jnp.asarray(h0[row + d].astype(np.float32))
                carries.append((jnp.asarray(c0[row + d].astype(np.float32)), h) if cell == "lstm" else h)
            carry = tuple(carries) if D == 2 else carries[0]
            out_carry, y = mod.apply({"params": p}, y, initial_carry=carry)
            outs = list(out_carry) if D == 2 else [out_carry]
            for c in outs:
                if cell == "lstm":
                    cs.append(np.asarray(c[0]))
                    hs.append(np.asarray(c[1]))
                else:
                    hs.append(np.asarray(c))
            row += D
        return {"y": np.asarray(y), "h_n": np.stack(hs), "c_n": np.stack(cs) if cs else None}

    module = _cls(built[0][2]).from_flax(layers) if build else None
    dt = _dtype_name(np.asarray(_flax_cells(layers[0])[0][next(iter(_flax_cells(layers[0])[0]))]["kernel"]).dtype)
    return _Case("flax", module, run, f"flax {flax.__version__} (linen, rebuilt from the params)", dt)


# -- TF1 (oracle: TensorFlow's tf.compat.v1 cells when importable, else numpyrnn.reference)

def _tf1_layers(source: Any) -> list[list[Mapping]]:
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    out = []
    for item in items:
        if not isinstance(item, Mapping):
            raise TypeError(f"TF1 variables: expected mappings, got {type(item).__name__}")
        out.append([item["fw"], item["bw"]] if "fw" in item else [item])
    return out


_TF1_GRU = ("gates/kernel", "gates/bias", "candidate/input_projection/kernel", "candidate/input_projection/bias",
            "candidate/hidden_projection/kernel", "candidate/hidden_projection/bias")


def _tf1_cell(layers: list[list[Mapping]], options: dict) -> str:
    if options.get("cell"):
        return str(options["cell"]).lower()
    return "gru" if "gates/kernel" in layers[0][0] else "lstm"


def _tf1_unit(unit: Mapping, cell: str, fb: float, where: str) -> tuple[tuple, np.ndarray | None]:
    """``((wi, wh, bi, bh), proj)`` of one TF1 cell: gate-major ``(G*H, width)`` matrices in TF1's gate order
    (LSTM ``i, j, f, o`` with the run-time forget bias added to ``f``; GRU ``r, u`` then the candidate)."""

    def get(key: str) -> np.ndarray:
        if key not in unit:
            raise LayoutError(f"TF1 variables ({where}): no {key!r}; the cell holds {sorted(unit)}")
        return np.asarray(unit[key], dtype=np.float64)

    if cell == "gru" and "candidate/kernel" in unit:  # GRUCell: candidate = tanh([x, r * h] K_c + b_c)
        gk, gb = get("gates/kernel"), get("gates/bias")
        kc, bc = get("candidate/kernel"), get("candidate/bias")
        H = kc.shape[1]
        n_in = gk.shape[0] - H
        wi = np.concatenate([gk[:n_in].T, kc[:n_in].T])
        wh = np.concatenate([gk[n_in:].T, kc[n_in:].T])
        return (wi, wh, np.concatenate([gb, bc]), None), None
    if cell == "gru":
        gk, gb = get("gates/kernel"), get("gates/bias")
        ki, bi_n = get("candidate/input_projection/kernel"), get("candidate/input_projection/bias")
        kh, bh_n = get("candidate/hidden_projection/kernel"), get("candidate/hidden_projection/bias")
        H = kh.shape[0]
        n_in = gk.shape[0] - H
        wi = np.concatenate([gk[:n_in].T, ki.T])
        wh = np.concatenate([gk[n_in:].T, kh.T])
        return (wi, wh, np.concatenate([gb, bi_n]), np.concatenate([np.zeros(2 * H), bh_n])), None
    kernel = get("kernel")
    G = 4 if cell == "lstm" else 1
    H = kernel.shape[1] // G
    pk = unit.get("projection/kernel")
    R = H if pk is None else int(np.shape(pk)[1])
    n_in = kernel.shape[0] - R
    bias = np.asarray(unit["bias"], dtype=np.float64).copy() if "bias" in unit else np.zeros(G * H)
    if cell == "lstm":
        bias[2 * H:3 * H] += fb  # LSTMCell adds forget_bias to f (slot 2 of i, j, f, o) at run time
    proj = None if pk is None else np.asarray(pk, dtype=np.float64).T  # (R, H)
    return (kernel[:n_in].T, kernel[n_in:].T, bias, None), proj


_TF1_PEEPHOLES = ("w_i_diag", "w_f_diag", "w_o_diag")


def _tf1_reference(layers: list[list[Mapping]], cell: str, fb: float, nonlinearity: str,
                   variant: Mapping | None = None) -> Runner:
    units, projs, peeps = [], [], []
    for k, layer in enumerate(layers):
        got = [_tf1_unit(u, cell, fb, f"layer {k}") for u in layer]
        units.append([u for u, _ in got])
        if got[0][1] is not None:
            projs.append(np.stack([p for _, p in got if p is not None]))
        if all(n in u for u in layer for n in _TF1_PEEPHOLES):  # LSTMCell(use_peepholes=True)
            peeps.append(np.stack([np.stack([np.asarray(u[n], dtype=np.float64) for n in _TF1_PEEPHOLES])
                                   for u in layer]))
    a = _stack_blocks(units, {"gru": 3, "lstm": 4, "rnn": 1}[cell])
    a["proj"] = np.stack(projs) if projs else None
    return _variant_reference(cell, a, {"gru": "rzn", "lstm": "igfo", "rnn": None}[cell], variant, nonlinearity,
                              np.stack(peeps) if peeps and len(peeps) == len(layers) else None)


def _tensorflow_cells() -> Any:
    """``tf.compat.v1.nn.rnn_cell`` and TensorFlow's version.

    Raises:
        ImportError: TensorFlow is not installed, or its ``rnn_cell`` is not available
            (with Keras 3, TensorFlow offers it only under ``TF_USE_LEGACY_KERAS=1`` with tf_keras).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        cells = tf.compat.v1.nn.rnn_cell
        cells.LSTMCell  # noqa: B018 - raises where Keras 3 hides it
    except Exception as exc:  # noqa: BLE001 - TensorFlow raises AttributeError or ImportError here
        raise ImportError(f"TensorFlow {tf.__version__} offers no tf.compat.v1.nn.rnn_cell ({_one_line(exc)}; "
                          "TF_USE_LEGACY_KERAS=1 with tf_keras installed brings it back)") from None
    return tf, cells


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _tf1_tensorflow(tf: Any, cells: Any, layers: list[list[Mapping]], cell: str, fb: float,
                    nonlinearity: str, variant: Mapping | None = None) -> Runner:
    """TensorFlow's own ``LSTMCell``/``BasicRNNCell`` holding the variables, stepped eagerly over time;
    a bidirectional layer runs its ``bw`` cell over the reversed sequence, as ``bidirectional_rnn`` does."""
    built: list[list[tuple[Any, bool]]] = []

    opts = dict((variant or {}).get("options") or {})

    def make(unit: Mapping, width: int) -> tuple[Any, bool]:
        if cell == "gru":  # GRUCell (reset before the candidate's matmul)
            values = {k: np.asarray(unit[k], np.float32) for k in ("gates/kernel", "gates/bias", "candidate/kernel",
                                                                    "candidate/bias")}
            with warnings.catch_warnings():  # TensorFlow says the TF1 cells are deprecated
                warnings.simplefilter("ignore", UserWarning)
                c = cells.GRUCell(int(values["candidate/bias"].shape[0]))
            c.build((None, width))
            for var in c.weights:
                leaf = next(k for k in values if var.name.split(":")[0].endswith(k))
                var.assign(values[leaf])
            return c, False
        kernel = np.asarray(unit["kernel"], dtype=np.float32)
        if cell == "lstm":
            H = kernel.shape[1] // 4
            pk = unit.get("projection/kernel")
            c = cells.LSTMCell(H, forget_bias=fb, num_proj=None if pk is None else int(np.shape(pk)[1]),
                               use_peepholes=bool(opts.get("peepholes", False)), cell_clip=opts.get("cell_clip"),
                               proj_clip=opts.get("proj_clip"), state_is_tuple=True)
        else:
            H = kernel.shape[1]
            c = cells.BasicRNNCell(H, activation=tf.nn.relu if nonlinearity == "relu" else tf.tanh)
        c.build((None, width))
        values = {"kernel": kernel, "bias": np.asarray(unit.get("bias", np.zeros(kernel.shape[1])), np.float32)}
        if unit.get("projection/kernel") is not None:
            values["projection/kernel"] = np.asarray(unit["projection/kernel"], np.float32)
        for n in _TF1_PEEPHOLES:
            if opts.get("peepholes") and n in unit:
                values[n] = np.asarray(unit[n], np.float32)
        for var in c.weights:
            leaf = next(k for k in sorted(values, key=len, reverse=True) if var.name.split(":")[0].endswith(k))
            var.assign(values[leaf])
        return c, cell == "lstm"

    def run(x, h0, c0):
        if not built:
            width = x.shape[-1]
            for layer in layers:
                built.append([make(u, width) for u in layer])
                width = sum(int(np.asarray(b[0].output_size)) for b in built[-1])
        y = np.asarray(x, dtype=np.float32)
        hs, cs = [], []
        row = 0
        for cells_of_layer in built:
            outs = []
            for d, (c, lstm) in enumerate(cells_of_layer):
                h = tf.constant(h0[row + d].astype(np.float32))
                state = cells.LSTMStateTuple(tf.constant(c0[row + d].astype(np.float32)), h) if lstm else h
                steps = range(y.shape[1]) if d == 0 else range(y.shape[1] - 1, -1, -1)
                seq: list[Any] = [None] * y.shape[1]
                for t in steps:
                    out, state = c(tf.constant(y[:, t]), state)
                    seq[t] = np.asarray(out)
                outs.append(np.stack(seq, axis=1))
                if lstm:
                    cs.append(np.asarray(state.c))
                    hs.append(np.asarray(state.h))
                else:
                    hs.append(np.asarray(state))
            y = np.concatenate(outs, axis=-1)
            row += len(cells_of_layer)
        return {"y": y, "h_n": np.stack(hs), "c_n": np.stack(cs) if cs else None}

    return run


def _tf1_case(source: Any, options: dict, *, build: bool) -> _Case:
    layers = _tf1_layers(source)
    cell = _tf1_cell(layers, options)
    fb = float(options.get("forget_bias", 1.0))
    nonlinearity = options.get("nonlinearity") or "tanh"
    module = None
    if build:
        extra: dict[str, Any] = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        extra.update({k: options[k] for k in ("cell_clip", "proj_clip") if options.get(k) is not None})
        module = _cls(cell).from_tf1(source, forget_bias=fb, **extra, variants=bool(options.get("variants")))
    variant = _variant_of(module, options)
    kind = _dtype_name(np.asarray(layers[0][0].get("kernel", layers[0][0].get("gates/kernel"))).dtype)
    reference = _tf1_reference(layers, cell, fb, nonlinearity, variant)
    why = None
    vopts = dict((variant or {}).get("options") or {})
    odd = sorted(f"{k}={v!r}" for k, v in vopts.items() if k not in ("peepholes", "cell_clip", "proj_clip")
                 and {"recurrent_activation": "sigmoid", "activation": "tanh"}.get(k) != v)
    grucell = cell == "gru" and "candidate/kernel" in layers[0][0]
    if options.get("_reference"):
        why = "asked for"
    elif odd:
        why = f"TF1's cells have no {', '.join(odd)}"
    elif cell == "gru" and not grucell:
        why = ("TensorFlow has no CudnnCompatibleGRUCell: it was in tf.contrib, which TensorFlow 2 removed; "
               "its formulas are the reference's")
    else:
        try:
            tf, cells = _tensorflow_cells()
        except ImportError as exc:
            why = "TensorFlow is not installed" if isinstance(exc, ModuleNotFoundError) else str(exc)
    if why is not None:
        return _Case("tf1", module, reference, f"numpyrnn.reference (numpy, float64; {why}), over the source's "
                     "arrays read with TF1's formulas", "float64")
    kinds = {"lstm": "LSTMCell", "gru": "GRUCell"}.get(cell, "BasicRNNCell")
    return _Case("tf1", module, _tf1_tensorflow(tf, cells, layers, cell, fb, nonlinearity, variant),
                 f"tensorflow {tf.__version__} (tf.compat.v1.nn.rnn_cell.{kinds}, eager)", kind)
