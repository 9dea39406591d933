"""The ``numpyrnn`` command: ``demo``, ``convert``, ``export`` and ``inspect``.

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

    from . import reference
    from ._seed import row_loop, seed_arrays
    from .modules import NumpyGRU

    I, H, L, D, T, N = args.input_size, args.hidden_size, 2, 2, 6, 3
    w0, w = seed_arrays(I, H, L, D)
    x = np.random.RandomState(0).randn(T, N, I).astype(np.float32)
    y_ref, h_ref = reference.gru(x.astype(np.float64), w0.astype(np.float64), w.astype(np.float64))

    def timed(fn, repeats: int = 3) -> float:
        fn()  # warm-up: first-call costs (imports, allocator) are not the load's
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    gru = NumpyGRU.from_numpy(w0, w)
    t_np = timed(lambda: NumpyGRU.from_numpy(w0, w))

    torch.manual_seed(0)
    plain = row_loop(nn.GRU(I, H, L, bias=True, bidirectional=True), w0, w)
    t_loop = timed(lambda: row_loop(nn.GRU(I, H, L, bias=True, bidirectional=True), w0, w))

    rows = []
    with torch.no_grad():
        for name, mod, t in (("numpyrnn NumpyGRU.from_numpy", gru, t_np), ("original row loop", plain, t_loop)):
            y, h = mod(torch.from_numpy(x))
            rows.append((name, float(np.abs(y.numpy() - y_ref).max()), float(np.abs(h.numpy() - h_ref).max()), t))

    print(f"numpyrnn demo: the question's GRU (input {I}, hidden {H}, {L} layers, bidirectional), "
          f"weights from RandomState(313), x of shape {x.shape}")
    print("reference: numpyrnn.reference.gru, plain numpy from the layout's formulas (float64)\n")
    print(f"{'method':<30} {'max|y - ref|':>13} {'max|h_n - ref|':>15} {'load time*':>11}")
    for name, ey, eh, t in rows:
        print(f"{name:<30} {ey:>13.2e} {eh:>15.2e} {t * 1e3:>9.2f} ms")
    ok = rows[0][1] < 1e-5 and rows[0][2] < 1e-5
    print("* median of 3 after a warm-up; the loop's time includes building the nn.GRU it fills")
    if args.grow:
        print(f"\nload time as the model grows (input = hidden, {L} layers, bidirectional):")
        print(f"{'hidden':>8} {'weights':>10} {'row loop':>11} {'numpyrnn':>11} {'ratio':>7}")
        for h in args.grow:
            a0, a = seed_arrays(h, h, L, D)
            tl = timed(lambda h=h, a0=a0, a=a: row_loop(nn.GRU(h, h, L, bias=True, bidirectional=True), a0, a), repeats=1)
            tn = timed(lambda a0=a0, a=a: NumpyGRU.from_numpy(a0, a), repeats=1)
            print(f"{h:>8} {(a0.nbytes + a.nbytes) / 1e6:>8.1f}MB {tl * 1e3:>9.1f}ms {tn * 1e3:>9.1f}ms {tl / tn:>6.1f}x")
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
    for key in ("rowwise", "stack"):
        if getattr(args, key, False):
            opts[key] = True
    if getattr(args, "batch_first", False):
        opts["batch_first"] = True
    return opts


def _read(args: argparse.Namespace, path: Path) -> Any:
    """The :class:`~numpyrnn.formats.ModelFile` of ``path``, after the option checks."""
    from . import formats

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if args.nonlinearity == "relu" and args.cell not in (None, "rnn"):
        raise UsageError(f"--nonlinearity relu applies to --cell rnn only, not --cell {args.cell}")
    fmt = formats.detect_format(path, args.source_format)
    if fmt.name != "blocks" and (args.gates or args.rowwise):
        raise UsageError("--gates and --rowwise apply to the block layout (--from blocks) only")
    if fmt.name != "tf1" and args.forget_bias is not None:
        raise UsageError("--forget-bias applies to --from tf1 only")
    if fmt.name not in ("flax",) and getattr(args, "stack", False):
        raise UsageError(f"--stack applies to --from flax only (a {fmt.name} file records its graph, or has one "
                         f"module)")
    try:
        return fmt.read(path, **_read_options(args))
    except formats.NeedsOption as exc:
        raise UsageError(str(exc)) from None


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
    mf = _read(args, src)
    if args.layer:
        entries = [mf.entry(name) for name in dict.fromkeys(args.layer)]
    else:
        if mf.problems:
            raise LayoutError(f"{src.name}: " + "; ".join(mf.problems)
                              + (f" (convert the others with --layer {' --layer '.join(mf.names())})"
                                 if mf.modules else ""))
        entries = list(mf.modules)
    modules = {e.name: e.build() for e in entries}
    configs = {}
    for e in entries:
        extra = {k: v for k, v in e.config.items() if k in ("layers", "forget_bias")}
        configs[e.name] = config_of(modules[e.name], source=e.config["source"], format=mf.format, **extra)
    nbytes = native.write(out, modules, configs)
    seconds = time.perf_counter() - t0

    def text(e: Any) -> str:
        c = configs[e.name]
        return f"{_spec(modules[e.name]).describe()} {c['dtype']}" + (", batch_first" if c["batch_first"] else "")

    if len(entries) == 1:
        print(f"wrote {out}: {entries[0].name!r} {text(entries[0])}, {nbytes} bytes, {seconds:.2f} s")
    else:
        print(f"wrote {out}: {len(entries)} modules, {nbytes} bytes, {seconds:.2f} s")
        for e in entries:
            print(f"  {e.name!r}: {text(e)}")
    for name, kind in mf.skipped:
        print(f"not converted: {name} ({kind})")
    return 0


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
        return 1
    for p in problems:
        print(f"problem: {p}")
    if problems:
        return 1
    print("problems: none")
    return 0


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ValueError) or not text else text


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


def _format_names() -> list[str]:
    from .formats import all_formats

    return [f.name for f in all_formats()]


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
    q.add_argument("--batch-first", action="store_true",
                   help="record batch_first=True (default: as the source records it)")
    q.add_argument("--dtype", choices=("float16", "bfloat16", "float32", "float64"),
                   help="parameter dtype (default: the input's)")
    q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


def _add_demo(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="load the question's GRU with numpyrnn and with the original row loop, and compare",
        description="Rebuild the question's example (RandomState(313), bidirectional, 2 layers), load it with "
                    "numpyrnn and with the original row loop, and compare both against numpyrnn.reference.",
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
    e.add_argument("--gates", default=None, help="gate order of the block arrays, e.g. zrn (blocks only)")
    e.add_argument("--rowwise", action="store_true",
                   help="blocks as the original row-by-row loop read them (blocks only)")
    e.add_argument("--forget-bias", type=float, default=None,
                   help="TF1's run-time forget bias (tf1 only; default 1.0)")
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
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


#: One function per subcommand; each adds its parser and sets ``func``.
SUBCOMMANDS = [_add_demo, _add_convert, _add_export, _add_inspect]


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
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .formats import cli_spelling

    try:
        with cli_spelling():
            return int(args.func(args))
    except UsageError as exc:
        if args.debug:
            raise
        parser.print_usage(sys.stderr)
        print(f"numpyrnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - any failure on bad input is exit 1 with its cause
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
