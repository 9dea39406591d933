"""The ``numpyrnn`` command: ``demo``, ``convert``, ``export``, ``inspect``, ``verify`` and ``detect``.

Each subcommand is one ``_add_<name>`` function in :data:`SUBCOMMANDS`; the
commands that read model files find formats through :mod:`numpyrnn.formats`.

Exit codes: 0 success, 1 bad weights or files (one-line cause; ``--debug``
shows the traceback), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

CELLS = ("gru", "lstm", "rnn")


class UsageError(Exception):
    """A combination of options that makes no sense; exit code 2."""


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------

def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from torch import nn

    from ._seed import row_loop, seed_arrays
    from .modules import NumpyGRU
    from .verify import verify

    I, H, L, D, T, N = args.input_size, args.hidden_size, 2, 2, 6, 3
    w0, w = seed_arrays(I, H, L, D)
    x = np.random.RandomState(0).randn(T, N, I).astype(np.float32)
    h0 = np.zeros((L * D, N, H), np.float32)

    def timed(*fns, rounds: int = 9, budget: float = 0.5) -> list[float]:
        """Medians of interleaved rounds (the order alternates) after a warm-up round.

        At least ``rounds`` rounds, more while they fit in ``budget`` seconds (up to 101),
        so that what else the machine does falls on every method alike.
        """
        for fn in fns:
            fn()  # warm-up: first-call costs (imports, allocator, cached plans) are not the load's
        times: list[list[float]] = [[] for _ in fns]
        start = time.perf_counter()
        k = 0
        while k < rounds or (k < 101 and time.perf_counter() - start < budget):
            order = list(enumerate(fns))
            for i, fn in order if k % 2 else order[::-1]:
                t0 = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - t0)
            k += 1
        return [sorted(ts)[len(ts) // 2] for ts in times]

    gru = NumpyGRU.from_numpy(w0, w)
    torch.manual_seed(0)
    plain = row_loop(nn.GRU(I, H, L, bias=True, bidirectional=True), w0, w)
    state = gru.state_dict()
    native = nn.GRU(I, H, L, bias=False, bidirectional=True)  # the arrays hold no biases
    native.load_state_dict(state)

    def torch_way() -> nn.GRU:
        m = nn.GRU(I, H, L, bias=False, bidirectional=True)
        m.load_state_dict(state)
        return m

    t_np, t_loop, t_torch = timed(lambda: NumpyGRU.from_numpy(w0, w),
                                  lambda: row_loop(nn.GRU(I, H, L, bias=True, bidirectional=True), w0, w),
                                  torch_way)

    rows = []
    reports = []
    for name, mod, t in (("numpyrnn NumpyGRU.from_numpy", gru, t_np), ("original row loop", plain, t_loop),
                         ("nn.GRU + load_state_dict**", native, t_torch)):
        report = verify({"w0": w0, "w": w}, mod, inputs=(x, h0), cell="gru")
        hn = max(r.max_error for r in report.rows if r.output.startswith("h_n"))
        rows.append((name, report.rows[0].max_error, hn, t))
        reports.append(report)

    print(f"numpyrnn demo: a GRU (input {I}, hidden {H}, {L} layers, bidirectional) filled from numpy block arrays "
          f"drawn with np.random.RandomState(313), by numpyrnn and by the row-by-row loop numpyrnn was written "
          f"to replace; x of shape {x.shape}")
    print("reference: numpyrnn.reference.gru, plain numpy from the layout's formulas (float64), "
          "compared by numpyrnn.verify\n")
    print(f"{'method':<30} {'max|y - ref|':>13} {'max|h_n - ref|':>15} {'load time*':>11}")
    for name, ey, eh, t in rows:
        print(f"{name:<30} {ey:>13.2e} {eh:>15.2e} {t * 1e3:>9.3f} ms")
    ok = reports[0].ok
    print("* median of interleaved rounds after a warm-up; the loop's and torch's times include building "
          "the nn.GRU (random init) they fill")
    print("** the weights already in torch's layout: what loading costs torch itself")
    if args.grow:
        print(f"\nload time as the model grows (input = hidden, {L} layers, bidirectional; median of 3 interleaved):")
        print(f"{'hidden':>8} {'weights':>10} {'row loop':>11} {'numpyrnn':>11} {'ratio':>7}")
        for h in args.grow:
            a0, a = seed_arrays(h, h, L, D)
            tl, tn = timed(lambda h=h, a0=a0, a=a: row_loop(nn.GRU(h, h, L, bias=True, bidirectional=True), a0, a),
                           lambda a0=a0, a=a: NumpyGRU.from_numpy(a0, a), rounds=3, budget=0.0)
            print(f"{h:>8} {(a0.nbytes + a.nbytes) / 1e6:>8.1f}MB {tl * 1e3:>9.1f}ms {tn * 1e3:>9.1f}ms {tl / tn:>6.1f}x")
    print("\nnumpyrnn.verify for NumpyGRU.from_numpy:\n" + str(reports[0]))
    print("\nnumpyrnn matches the reference" + (" " if ok else " NOT ") + "to float32 tolerance (1e-5).")
    print("The row loop scrambles gates across hidden units and leaves the biases random: "
          f"its error is {rows[1][1]:.2g}.")
    return 0 if ok else 1


# --------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------

def _mode(args: argparse.Namespace) -> str:
    cell = args.cell.upper()
    if args.nonlinearity == "relu":
        if cell != "RNN":
            raise UsageError(f"--nonlinearity relu applies to --cell rnn only, not --cell {args.cell}")
        return "RNN_RELU"
    return "RNN_TANH" if cell == "RNN" else cell


def _spec(module: Any) -> Any:
    from .spec import RNNSpec

    return RNNSpec.of(module)


def _summary(verb: str, path: Path, spec: Any, nbytes: int, seconds: float, extra: str = "") -> None:
    print(f"{verb} {path}: {spec.describe()}{extra}, {nbytes} bytes, {seconds:.2f} s")


def _check_output(path: Path, allowed: Sequence[str], what: str) -> None:
    name = path.name.lower()
    if not any(name.endswith(s) for s in allowed):
        raise UsageError(f"{what} must end in {' or '.join(allowed)}, got {str(path)!r}")


def _read_options(args: argparse.Namespace) -> dict:
    """The options of ``convert``/``inspect`` as :func:`numpyrnn.read_model` takes them."""
    opts: dict[str, Any] = {}
    for key in ("cell", "nonlinearity", "gates", "forget_bias", "dtype"):
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
    for key in ("rowwise", "stack", "variants"):
        if getattr(args, key, False):
            opts[key] = True
    if getattr(args, "batch_first", False):
        opts["batch_first"] = True
    return opts


# Formats whose modules are what ``from_<layout>`` builds, handed on untouched: ``convert`` to
# .safetensors reads them under numpyrnn.engine.deferring and writes their parameters straight
# into the file (numpyrnn.streaming).
_STREAMED = ("blocks",)


def _read(args: argparse.Namespace, path: Path, deferred: dict | None = None) -> Any:
    """The :class:`~numpyrnn.formats.ModelFile` of ``path``, after the option checks.

    With ``deferred``, a format of :data:`_STREAMED` is read under
    :func:`numpyrnn.engine.deferring` into it.
    """
    from . import engine, formats
    from .errors import LayoutError

    if args.nonlinearity == "relu" and args.cell not in (None, "rnn"):
        raise UsageError(f"--nonlinearity relu applies to --cell rnn only, not --cell {args.cell}")
    try:
        fmt = formats.detect_format(path, args.source_format)
    except LayoutError:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder") from None
        raise
    if fmt.name != "blocks" and (args.gates or args.rowwise):
        raise UsageError("--gates and --rowwise apply to the block layout (--from blocks) only")
    if fmt.name not in ("tf1", "tfckpt") and args.forget_bias is not None:
        raise UsageError("--forget-bias applies to --from tf1 only (and to TF checkpoints, --from tfckpt)")
    if fmt.name not in ("keras", "onnx", "tf1", "tfckpt", "numpyrnn") and getattr(args, "variants", False):
        raise UsageError(f"--variants applies to Keras, ONNX and TF1 files (--from keras, onnx, tf1 or tfckpt), not to "
                         f"--from {fmt.name}")
    if fmt.name not in ("flax",) and getattr(args, "stack", False):
        raise UsageError(f"--stack applies to --from flax only (a {fmt.name} file records its graph, or has one "
                         f"module)")
    try:
        if deferred is not None and fmt.name in _STREAMED:
            with engine.deferring(deferred):
                return fmt.read(path, **_read_options(args))
        return fmt.read(path, **_read_options(args))
    except formats.NeedsOption as exc:
        raise UsageError(str(exc)) from None


def _variant_text(config: dict) -> str:
    """``ResetBeforeGRU(recurrent_activation='hard_sigmoid', merge_mode='sum')``: a recorded variant, on one line."""
    v = config["variant"]
    parts = [f"{k}={val!r}" for k, val in v.get("options", {}).items()]
    parts += [f"{k}={v[k]!r}" for k, default in (("merge_mode", "concat"), ("time", "forward"))
              if v.get(k, default) != default]
    return f"{v['class']}({', '.join(parts)})"


def _build_quietly(entries: Sequence[Any]) -> dict:
    """Build each entry; a variant module is named in the output instead of by a VariantWarning."""
    import warnings

    from .variants import VariantWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantWarning)
        return {e.name: e.build() for e in entries}


def _config_text(config: dict) -> str:
    return (f"cell={config['cell']} input={config['input_size']} hidden={config['hidden_size']} "
            f"layers={config['num_layers']} directions={2 if config['bidirectional'] else 1} "
            f"bias={'yes' if config['bias'] else 'no'} projection={config['proj_size'] or 'none'} "
            f"batch_first={'yes' if config['batch_first'] else 'no'} nonlinearity={config['nonlinearity']} "
            f"dtype={config['dtype']}")


# --------------------------------------------------------------------------------------
# convert: model file -> .pt / .safetensors
# --------------------------------------------------------------------------------------

def _convert(args: argparse.Namespace) -> int:
    from .errors import LayoutError
    from .formats import config_of, native

    t0 = time.perf_counter()
    src, out = Path(args.input), Path(args.output)
    _check_output(out, (".pt", ".safetensors"), "the output of convert")
    verifying = getattr(args, "verify", False)
    # straight into the file where nothing runs the modules first (see numpyrnn.streaming)
    sink: dict | None = {} if out.suffix.lower() == ".safetensors" and not verifying and sys.byteorder == "little" \
        else None
    mf = _read(args, src, sink)
    if args.layer:
        entries = [mf.entry(name) for name in dict.fromkeys(args.layer)]
    else:
        if mf.problems:
            raise LayoutError(f"{src.name}: " + "; ".join(mf.problems)
                              + (f" (convert the others with --layer {' --layer '.join(mf.names())})"
                                 if mf.modules else ""))
        entries = list(mf.modules)
    modules = _build_quietly(entries)
    deferred = _deferred(entries, modules, sink)
    if verifying and not _verify_converted(src, mf.format, args, entries, modules):
        print(f"numpyrnn convert: {out} not written: the conversion does not match the source", file=sys.stderr)
        return 1
    configs = {}
    for e in entries:
        extra = {k: v for k, v in e.config.items() if k in ("layers", "forget_bias")}
        configs[e.name] = config_of(modules[e.name], source=e.config["source"], format=mf.format, **extra)
    names, skipped = [e.name for e in entries], list(mf.skipped)
    del mf, entries  # memory-mapped inputs are unmapped before the output is written (but deferred ones)
    sink = None
    nbytes = native.write(out, modules, configs, deferred=deferred)
    del deferred
    seconds = time.perf_counter() - t0

    def text(name: str) -> str:
        c = configs[name]
        what = _variant_text(c) if "variant" in c else _spec(modules[name]).describe()
        return f"{what} {c['dtype']}" + (", batch_first" if c["batch_first"] else "")

    if len(names) == 1:
        print(f"wrote {out}: {names[0]!r} {text(names[0])}, {nbytes} bytes, {seconds:.2f} s")
    else:
        print(f"wrote {out}: {len(names)} modules, {nbytes} bytes, {seconds:.2f} s")
        for name in names:
            print(f"  {name!r}: {text(name)}")
    for name, kind in skipped:
        print(f"not converted: {name} ({kind})")
    return 0


def _deferred(entries: Sequence[Any], modules: dict, sink: dict | None) -> dict:
    """The modules of ``modules`` that :mod:`numpyrnn.streaming` writes, with what was recorded for
    them; any other module built under deferral (it holds no values) is built again, for real."""
    from .streaming import streamable

    out = {}
    for e in entries:
        m = modules[e.name]
        d = sink.get(m) if sink else None
        if d is None:
            continue
        if streamable(m, d):
            out[m] = d
        else:
            modules[e.name] = e.build()  # outside deferral: a module with its values
    return out


# --------------------------------------------------------------------------------------
# export: .pt / .safetensors -> foreign file
# --------------------------------------------------------------------------------------

def _export(args: argparse.Namespace) -> int:
    from . import files
    from .formats import blocks, flax, keras, native, onnx, tf1

    t0 = time.perf_counter()
    src, out = Path(args.input), Path(args.output)
    target = args.target
    if target != "blocks" and (args.gates or args.rowwise):
        raise UsageError("--gates and --rowwise apply to --to blocks only")
    if target != "tf1" and args.forget_bias is not None:
        raise UsageError("--forget-bias applies to --to tf1 only")
    suffixes = {"blocks": (".npz",), "keras": (".npz",), "onnx": (".onnx",), "flax": (".msgpack",), "tf1": (".npz",)}
    _check_output(out, suffixes[target], f"the output of export --to {target}")
    _check_output(src, (".pt", ".pth", ".bin", ".safetensors"), "the input of export")
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file")
    mode = _mode(args)
    module = native.module_from_state_dict(files.read_state_dict(src), mode)
    spec = _spec(module)
    if target == "blocks":
        nbytes = blocks.write(out, module, gates=args.gates, rowwise=args.rowwise)
    elif target == "keras":
        nbytes = keras.write(out, module)
    elif target == "onnx":
        nbytes = onnx.write(out, module)
    elif target == "flax":
        nbytes = flax.write(out, module)
    else:
        nbytes = tf1.write(out, module, forget_bias=1.0 if args.forget_bias is None else args.forget_bias)
    _summary("wrote", out, spec, nbytes, time.perf_counter() - t0, f" as {target}")
    return 0


# --------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------

def _inspect(args: argparse.Namespace) -> int:
    from .errors import LayoutError

    path = Path(args.file)
    tries: list[tuple[str | None, Any]] = []
    try:
        tries.append((None, _read(args, path)))
    except UsageError as exc:
        if args.cell is not None or "--cell" not in str(exc):
            raise
        for cell in CELLS:  # the file does not record its cell: what do its shapes fit?
            try:
                tries.append((cell, _read(argparse.Namespace(**{**vars(args), "cell": cell}), path)))
            except (LayoutError, TypeError, ValueError) as err:
                tries.append((cell, err))
    except (LayoutError, TypeError, ValueError) as exc:
        tries.append((None, exc))
    good = [(cell, mf) for cell, mf in tries if not isinstance(mf, Exception)]
    fmt = good[0][1].format if good else (args.source_format or "?")
    print(f"{path} ({fmt})")
    for _cell, mf in good:
        for e in mf.modules:
            print(f"module {e.name!r}: {_config_text(e.config)}")
            if "variant" in e.config:
                print(f"  variant module: numpyrnn.variants.{_variant_text(e.config)}")
            if e.config.get("layers"):
                print(f"  stacks the layers {', '.join(e.config['layers'])}")
    if len(good) > 1:
        print("  (the shapes fit more than one cell: pass --cell to convert)")
    if good:
        mf = good[0][1]
        for name, kind in mf.skipped:
            print(f"not converted: {name} ({kind})")
        for note in mf.notes:
            print(f"note: {note}")
    problems = [p for _, mf in good for p in mf.problems]
    if not good:
        for tried, failure in tries:
            print(f"problem{f' ({tried})' if tried else ''}: {_first_line(failure)}")
        causes = list(dict.fromkeys(_first_line(failure) for _, failure in tries))
        _inspect_error(path, causes[0] if len(causes) == 1 else "no cell fits its arrays (see the problems listed)")
        return 1
    for p in problems:
        print(f"problem: {p}")
    if problems:
        _inspect_error(path, problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        return 1
    print("problems: none")
    return 0


def _inspect_error(path: Path, cause: str) -> None:
    """The one line on stderr that says why ``inspect`` exits 1 (the listing above says the rest)."""
    text = cause if cause.startswith(f"{path.name}") else f"{path.name}: {cause}"
    print(f"numpyrnn inspect: error: {text}", file=sys.stderr)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ValueError) or not text else text


# --------------------------------------------------------------------------------------
# verify and detect
# --------------------------------------------------------------------------------------

def _format_options(args: argparse.Namespace, fmt: str | None) -> dict:
    """The reading options of ``verify``/``convert --verify``, after the usage checks."""
    if fmt not in (None, "blocks") and (args.gates or args.rowwise):
        raise UsageError("--gates and --rowwise apply to the block layout (--from blocks) only")
    if fmt not in (None, "tf1") and args.forget_bias is not None:
        raise UsageError("--forget-bias applies to --from tf1 only (and to TF checkpoints, --from tfckpt)")
    if args.nonlinearity == "relu" and args.cell not in (None, "rnn"):
        raise UsageError(f"--nonlinearity relu applies to --cell rnn only, not --cell {args.cell}")
    options: dict[str, Any] = {"format": fmt, "cell": args.cell, "gates": args.gates, "rowwise": args.rowwise}
    if args.nonlinearity == "relu":
        options["nonlinearity"] = "relu"
    if args.forget_bias is not None:
        options["forget_bias"] = args.forget_bias
    return {k: v for k, v in options.items() if v not in (None, False)}


def _verify_converted(src: Path, fmt: str, args: argparse.Namespace, entries: Sequence[Any],
                      modules: dict) -> bool:
    """``convert --verify``: the modules just built, checked against the source's framework."""
    from .verify import verify

    options = _format_options(args, fmt)
    options["format"] = fmt
    if getattr(args, "stack", False):
        options["stack"] = True
    if getattr(args, "variants", False):
        options["variants"] = True
    # the modules about to be written, by their names in the source, each against its own oracle
    report = verify(src, {e.name: modules[e.name] for e in entries}, **options)
    print(report)
    return report.ok


def _verify(args: argparse.Namespace) -> int:
    from . import files
    from .verify import verify

    src = Path(args.source)
    if args.converted:
        _check_output(Path(args.converted), (".pt", ".pth", ".safetensors"), "CONVERTED")
    fmt = args.source_format
    if fmt is None and src.exists():  # the usage checks by the format the file is read as
        from .formats import detect_format

        fmt = detect_format(src).name
    options = _format_options(args, fmt)
    if args.stack:
        if fmt != "flax":
            raise UsageError(f"--stack applies to --from flax only (a {fmt} file records its graph, or has one "
                             f"module)")
        options["stack"] = True
    if args.layer:
        options["layer"] = list(args.layer)
    if args.variants:
        if fmt not in ("keras", "onnx", "tf1"):
            raise UsageError(f"--variants applies to Keras, ONNX and TF1 files (--from keras, onnx or tf1), not to "
                             f"--from {fmt}")
        options["variants"] = True
    inputs = files.read_npy(args.input, mmap=False) if args.input else None
    report = verify(src, args.converted, inputs=inputs, atol=args.atol, rtol=args.rtol, seed=args.seed,
                    oracle=None if args.oracle == "framework" else args.oracle, **options)
    print(report)
    return 0 if report.ok else 1


def _detect(args: argparse.Namespace) -> int:
    from . import files
    from .detect import detect

    src = Path(args.arrays)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if args.save:
        _check_output(Path(args.save), (".npz",), "--save")
    arrays = files.read_blocks(src)
    unknown = sorted(set(arrays) - set(files.BLOCK_KEYS))
    if unknown:
        raise UsageError(f"{src}: unexpected arrays {unknown}; block arrays are named {', '.join(files.BLOCK_KEYS)}")
    load = {name: (files.read_npy(p, mmap=False) if p else None)
            for name, p in (("x", args.input), ("y", args.output), ("h0", args.h0), ("c0", args.c0))}
    found = detect(**{k: v for k, v in arrays.items()}, x=load["x"], y=load["y"], h0=load["h0"], c0=load["c0"],
                   cell=args.cell, atol=args.atol, batch_first=args.batch_first)
    print(f"match: {found.reading}")
    print(f"  max |y - y'| = {found.error:.2e} (atol {found.atol:g}), {found.tried} readings tried")
    target = src
    if found.rewrites_biases:
        what = "the summed biases split" if found.bias.startswith("summed") else "no biases stored"
        if found.forget_bias:
            what += f" and the run-time forget bias {found.forget_bias:g} folded in"
        if not args.save:
            print(f"  the match rewrites the biases ({what}): pass --save FIXED.npz to write arrays that "
                  "convert reads as they are")
            return 0
        fixed = {k: v for k, v in arrays.items() if v is not None}
        fixed.update({k: found[k] for k in ("b0", "b") if k in found})
        files.write_npz(args.save, fixed)
        print(f"  wrote {args.save} with the biases rewritten ({what})")
        target = Path(args.save)
    cmd = f"numpyrnn convert {target} -o converted.pt --cell {args.cell}"
    if found.get("nonlinearity") == "relu":
        cmd += " --nonlinearity relu"
    if found["gates"] != {"gru": "rzn", "lstm": "ifgo", "rnn": "h"}[args.cell]:
        cmd += f" --gates {found['gates']}"
    if found["rowwise"]:
        cmd += " --rowwise"
    print(f"convert with:\n  {cmd} --verify")
    return 0


# --------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------

_CONVERT_EXAMPLES = """examples:
  numpyrnn convert model.keras -o model.safetensors
  numpyrnn convert model.keras -o decoder.pt --layer decoder
  numpyrnn convert model.onnx -o model.pt
  numpyrnn convert params.msgpack -o stack.pt --stack
  numpyrnn convert weights.npz -o gru.pt --cell gru
  numpyrnn convert ckpt.npz -o lstm.pt --from tf1 --forget-bias 1.0
  numpyrnn convert old.npz -o gru.pt --cell gru --gates zrn --rowwise

then, in Python:
  modules = numpyrnn.load_all("model.safetensors")   # {name: NumpyLSTM, ...}, configured as recorded"""

_EXPORT_EXAMPLES = """examples:
  numpyrnn export gru.pt -o gru.onnx --cell gru --to onnx
  numpyrnn export lstm.safetensors -o lstm.npz --cell lstm --to blocks --gates ifgo
  numpyrnn export lstm.pt -o ckpt.npz --cell lstm --to tf1"""

_INSPECT_EXAMPLES = """examples:
  numpyrnn inspect model.keras
  numpyrnn inspect weights.npz
  numpyrnn inspect model.safetensors
  numpyrnn inspect ckpt.npz --from tf1"""

_FMT = argparse.RawDescriptionHelpFormatter

_VERIFY_EXAMPLES = """examples:
  numpyrnn verify model.keras
  numpyrnn verify model.onnx lstm.safetensors
  numpyrnn verify weights.npz --cell gru --gates zrn --rowwise
  numpyrnn verify ckpt.npz --from tf1 --cell lstm --input x.npy --atol 1e-4"""

_DETECT_EXAMPLES = """examples:
  numpyrnn detect weights.npz --input x.npy --output y.npy --cell gru
  numpyrnn detect weights.npz --input x.npy --output y.npy --cell lstm --h0 h0.npy --save fixed.npz"""


def _format_names() -> list[str]:
    from .formats import all_formats

    return [f.name for f in all_formats()]


def _limit_option(q: argparse.ArgumentParser) -> None:
    q.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                   help="raise a resource limit for a trusted file: ratio=N (declared/stored size), floor=SIZE, "
                        "config=SIZE (config.json), depth=N (nesting); see docs/safety.md")


def _layout_options(q: argparse.ArgumentParser) -> None:
    """The block-layout and TF1 options of ``export`` and ``verify``, with ``--debug`` and ``--limit``."""
    q.add_argument("--gates", default=None, help="gate order of the block arrays, e.g. zrn (blocks only)")
    q.add_argument("--rowwise", action="store_true",
                   help="blocks as the original row-by-row loop read them (blocks only)")
    q.add_argument("--forget-bias", type=float, default=None,
                   help="TF1's run-time forget bias (tf1 only; default 1.0)")
    q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    _limit_option(q)


def _model_options(q: argparse.ArgumentParser) -> None:
    """The options of every command that reads a model file (convert, inspect, ...)."""
    q.add_argument("--from", dest="source_format", choices=_format_names(),
                   help="the file's format (default: the file says, by its suffix and content)")
    q.add_argument("--layer", action="append", default=[], metavar="NAME",
                   help="only the module of this name (repeatable; default: every recurrent module)")
    q.add_argument("--cell", choices=CELLS,
                   help="the recurrent cell, for files that do not record it (blocks, TF1 arrays)")
    q.add_argument("--nonlinearity", choices=("tanh", "relu"), default=None,
                   help="nn.RNN's nonlinearity, for files that do not record it (default tanh)")
    q.add_argument("--gates", default=None, help="gate order of the block arrays, e.g. zrn (blocks only)")
    q.add_argument("--rowwise", action="store_true",
                   help="blocks as the original row-by-row loop read them (blocks only)")
    q.add_argument("--forget-bias", type=float, default=None,
                   help="TF1's run-time forget bias (tf1 only; default 1.0, 0 for CudnnLSTM checkpoints)")
    q.add_argument("--stack", action="store_true",
                   help="Flax only: the recurrent layers feed each other, bottom first (params record no graph)")
    q.add_argument("--variants", action="store_true",
                   help="Keras, ONNX and TF1 files: build a numpyrnn.variants module for a layer torch.nn cannot "
                        "compute (reset before the matmul, other activations, peepholes, clipping, merge modes) "
                        "instead of refusing it")
    q.add_argument("--batch-first", action="store_true",
                   help="record batch_first=True (default: as the source records it)")
    q.add_argument("--dtype", choices=("float16", "bfloat16", "float32", "float64"),
                   help="parameter dtype (default: the input's)")
    q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    _limit_option(q)


def _add_demo(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="fill a GRU from numpy blocks with numpyrnn and with the row-by-row loop, and compare",
        description="Draw the block arrays of a bidirectional 2-layer GRU with np.random.RandomState(313), fill "
                    "the GRU with numpyrnn and with the row-by-row loop numpyrnn was written to replace, and "
                    "compare both against numpyrnn.reference.",
        epilog="example:  numpyrnn demo --hidden-size 32",
    )
    d.add_argument("--input-size", type=int, default=10, help="input features (default 10)")
    d.add_argument("--hidden-size", type=int, default=20, help="hidden units (default 20)")
    d.add_argument("--grow", type=int, nargs="*", default=[64, 256, 1024], metavar="HIDDEN",
                   help="also time both loads at these sizes (default 64 256 1024; none to skip)")
    d.set_defaults(func=_demo)


def _add_convert(sub: Any) -> None:
    c = sub.add_parser("convert", help="a model file's recurrent modules -> one self-describing .pt or .safetensors",
                       description="Read a model file (Keras, ONNX, Flax, TF1, block arrays, or numpyrnn's own) "
                                   "and write the parameters of every recurrent module it holds (or of the "
                                   "--layer ones), with each module's configuration recorded in the file so "
                                   "that numpyrnn.load rebuilds it. Layers are stacked only where the source's "
                                   "graph proves it. Nothing is unpickled.",
                       epilog=_CONVERT_EXAMPLES, formatter_class=_FMT)
    c.add_argument("input", help="a model file or folder: .keras, .weights.h5, .h5, .onnx, .msgpack, .npz, "
                                 "a folder of .npy, .safetensors, .pt")
    c.add_argument("-o", "--output", required=True, help="output .pt or .safetensors")
    _model_options(c)
    c.add_argument("--verify", action="store_true",
                   help="run the converted modules next to the source's framework first; write nothing "
                        "if they do not match (exit 1)")
    c.set_defaults(func=_convert)


def _add_export(sub: Any) -> None:
    e = sub.add_parser("export", help=".pt or .safetensors -> blocks, Keras, ONNX, Flax or TF1",
                       description="Read the state_dict of an nn.GRU/LSTM/RNN and write its weights in a foreign "
                                   "layout. The configuration is inferred from the keys and shapes.",
                       epilog=_EXPORT_EXAMPLES, formatter_class=_FMT)
    e.add_argument("input", help="a .pt (state_dict) or .safetensors file")
    e.add_argument("-o", "--output", required=True,
                   help="blocks/keras/tf1: .npz, onnx: .onnx, flax: .msgpack")
    e.add_argument("--to", dest="target", required=True, choices=("blocks", "keras", "onnx", "flax", "tf1"),
                   help="output layout")
    e.add_argument("--cell", choices=CELLS, required=True, help="the recurrent cell")
    e.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh",
                   help="nn.RNN's nonlinearity (--cell rnn only; default tanh)")
    _layout_options(e)
    e.set_defaults(func=_export)


def _add_inspect(sub: Any) -> None:
    i = sub.add_parser("inspect", help="list a model file's modules, the layers not converted, and problems",
                       description="Show every recurrent module a model file holds, with its name and "
                                   "configuration (cell, sizes, layers, directions, bias, projection, batch_first, "
                                   "nonlinearity, dtype), every layer that is not converted, and every problem, "
                                   "found by the same reading as convert. Accepts convert's options. Exit 1 when "
                                   "there is a problem.",
                       epilog=_INSPECT_EXAMPLES, formatter_class=_FMT)
    i.add_argument("file", help="a model file or folder (any format convert reads)")
    _model_options(i)
    i.set_defaults(func=_inspect)


def _add_verify(sub: Any) -> None:
    v = sub.add_parser("verify", help="compare a conversion with the source's own framework, output by output",
                       description="Run numpyrnn's conversion of SOURCE (or the converted file CONVERTED) and the "
                                   "source's own framework (Keras, onnxruntime, Flax, TensorFlow for TF1 where "
                                   "installed; numpyrnn.reference for block arrays and otherwise) on the same inputs, and print the error of every output and "
                                   "final state. Exit 0 within tolerance, 1 beyond it, 2 on a usage error.",
                       epilog=_VERIFY_EXAMPLES, formatter_class=_FMT)
    v.add_argument("source", help="the original weights: any file convert reads")
    v.add_argument("converted", nargs="?", help="a converted .pt or .safetensors to check (default: convert SOURCE)")
    v.add_argument("--from", dest="source_format", choices=_format_names(),
                   help="the format of SOURCE (default: the file says)")
    v.add_argument("--input", metavar="X.npy", help="x to run, in the module's layout (default: seeded random)")
    v.add_argument("--atol", type=float, help="absolute tolerance (default from the dtype: float32 1e-5)")
    v.add_argument("--rtol", type=float, help="relative tolerance (default 0)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random inputs and states (default 0)")
    v.add_argument("--oracle", choices=("framework", "reference"), default="framework",
                   help="framework: the source's own where installed (default); reference: numpyrnn.reference "
                        "over the source's arrays")
    v.add_argument("--cell", choices=CELLS, help="the recurrent cell, for files that do not record it")
    v.add_argument("--nonlinearity", choices=("tanh", "relu"), default=None,
                   help="nn.RNN's nonlinearity, for files that do not record it (default tanh)")
    v.add_argument("--layer", action="append", default=[], metavar="NAME",
                   help="only the module of this name (repeatable; default: every recurrent module)")
    v.add_argument("--stack", action="store_true",
                   help="Flax only: the recurrent layers feed each other, bottom first (as convert --stack)")
    v.add_argument("--variants", action="store_true",
                   help="Keras, ONNX and TF1 files: check the numpyrnn.variants modules convert --variants builds "
                        "for layers torch.nn cannot compute")
    _layout_options(v)
    v.set_defaults(func=_verify)


def _add_detect(sub: Any) -> None:
    t = sub.add_parser("detect", help="find the gate order, row reading and bias convention that reproduce an output",
                       description="Given block arrays of unknown reading and one input/output pair recorded from "
                                   "the original system, try every gate order, the row loop's reading, split or "
                                   "summed biases and (LSTM) a forget bias of 0 or 1, and print the reading that "
                                   "reproduces the output with the convert command that uses it. Exit 1 when "
                                   "nothing fits (the three closest readings are named).",
                       epilog=_DETECT_EXAMPLES, formatter_class=_FMT)
    t.add_argument("arrays", help="block arrays: .npz or folder of .npy (w0, w, b0, b, proj)")
    t.add_argument("--input", required=True, metavar="X.npy", help="the recorded input, (time, batch, input)")
    t.add_argument("--output", required=True, metavar="Y.npy", help="the output the original system computed")
    t.add_argument("--cell", choices=CELLS, required=True, help="the recurrent cell")
    t.add_argument("--h0", metavar="H.npy", help="the initial state it used (default zeros)")
    t.add_argument("--c0", metavar="C.npy", help="the initial cell state (LSTM; default zeros)")
    t.add_argument("--batch-first", action="store_true", help="X and Y are (batch, time, features)")
    t.add_argument("--atol", type=float, help="largest accepted |y - y'| (default from Y's dtype: float32 1e-4)")
    t.add_argument("--save", metavar="FIXED.npz", help="when the match rewrites the biases, write the arrays here")
    t.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    _limit_option(t)
    t.set_defaults(func=_detect)


#: One function per subcommand; each adds its parser and sets ``func``.
SUBCOMMANDS = [_add_demo, _add_convert, _add_export, _add_inspect, _add_verify, _add_detect]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="numpyrnn",
        description="Foreign recurrent weights as exact torch.nn.GRU/LSTM/RNN modules.",
        epilog="examples:\n  numpyrnn demo\n  numpyrnn convert model.keras -o model.safetensors\n"
               "  numpyrnn inspect model.keras\n\nexit codes: 0 success, 1 bad weights or files, 2 usage errors",
        formatter_class=_FMT,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``numpyrnn`` console script.

    Returns:
        The exit code: 0 success, 1 bad weights or files, 2 usage errors.
    """
    from . import safeio

    with safeio.guard_signals():
        try:
            return _main(argv)
        except (KeyboardInterrupt, safeio.Interrupted) as exc:
            return _interrupted(exc)


def _interrupted(exc: BaseException) -> int:
    import signal

    from . import safeio

    signum = getattr(exc, "signum", None) or safeio.caught_signal() or signal.SIGINT
    name = signal.Signals(signum).name
    done = safeio.written()
    state = (f"{', '.join(done)} had been written completely" if done
             else "no output was written or replaced, and any unfinished temporary file was removed")
    print(f"numpyrnn: interrupted by {name}; {state}", file=sys.stderr)
    return 128 + int(signum)


def _main(argv: Sequence[str] | None) -> int:
    from . import safeio

    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .formats import cli_spelling

    try:
        lim = safeio.current_limits()
        for text in getattr(args, "limit", []):
            try:
                lim = safeio.parse_limit(text, lim)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        with safeio.limits(lim), cli_spelling():
            return int(args.func(args))
    except UsageError as exc:
        if args.debug:
            raise
        parser.print_usage(sys.stderr)
        print(f"numpyrnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - any failure on bad input is exit 1 with its cause
        safeio.raise_if_interrupted(exc)  # a signal that surfaced as another library's error
        if args.debug:
            raise
        print(f"numpyrnn {args.command}: error: {_first_line(exc)} (--debug shows the traceback)", file=sys.stderr)
        return 1


def __getattr__(name: str) -> Any:
    """``infer_state_spec`` and ``module_from_state_dict`` moved to :mod:`numpyrnn.formats.native`."""
    if name in ("infer_state_spec", "module_from_state_dict"):
        from .formats import native

        return getattr(native, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
