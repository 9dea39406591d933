"""The ``numpyrnn`` command: ``demo``, ``convert``, ``export`` and ``inspect``.

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
    with torch.no_grad():
        for name, mod, t in (("numpyrnn NumpyGRU.from_numpy", gru, t_np), ("original row loop", plain, t_loop),
                             ("nn.GRU + load_state_dict**", native, t_torch)):
            y, h = mod(torch.from_numpy(x))
            rows.append((name, float(np.abs(y.numpy() - y_ref).max()), float(np.abs(h.numpy() - h_ref).max()), t))

    print(f"numpyrnn demo: the question's GRU (input {I}, hidden {H}, {L} layers, bidirectional), "
          f"weights from RandomState(313), x of shape {x.shape}")
    print("reference: numpyrnn.reference.gru, plain numpy from the layout's formulas (float64)\n")
    print(f"{'method':<30} {'max|y - ref|':>13} {'max|h_n - ref|':>15} {'load time*':>11}")
    for name, ey, eh, t in rows:
        print(f"{name:<30} {ey:>13.2e} {eh:>15.2e} {t * 1e3:>9.3f} ms")
    ok = rows[0][1] < 1e-5 and rows[0][2] < 1e-5
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


def _class(mode: str) -> Any:
    from .modules import NumpyGRU, NumpyLSTM, NumpyRNN

    return {"GRU": NumpyGRU, "LSTM": NumpyLSTM}.get(mode, NumpyRNN)


def _torch_dtype(name: str | None, fallback: Any = None) -> Any:
    import torch

    table = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64,
             "bfloat16": torch.bfloat16}
    if name is None:
        return fallback
    return table.get(str(name).replace("torch.", ""), fallback)


def _source_dtype(tree: Any) -> str | None:
    """The floating dtype most arrays of ``tree`` have (the input's precision is kept)."""
    from collections import Counter

    from .files import listing

    counts = Counter(dtype for _, _, dtype in listing(tree) if "float" in dtype)
    return counts.most_common(1)[0][0] if counts else None


def _check_output(path: Path, allowed: Sequence[str], what: str) -> None:
    name = path.name.lower()
    if not any(name.endswith(s) for s in allowed):
        raise UsageError(f"{what} must end in {' or '.join(allowed)}, got {str(path)!r}")


def _read_source(path: Path, fmt: str) -> tuple[Any, Any, dict]:
    """``(source for from_<fmt>, tree for the listing, extra info)``."""
    from . import files

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if fmt == "blocks":
        arrays = files.read_blocks(path)
        return arrays, arrays, {}
    if fmt == "keras":
        layers, info = files.read_keras(path)
        return layers, {name: ws for name, ws in zip(info["names"], layers)}, info
    if fmt == "onnx":
        from onnx import numpy_helper

        model = files.read_onnx(path)
        tree = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        return model, tree, {"ops": [n.op_type for n in model.graph.node]}
    if fmt == "flax":
        tree = files.read_msgpack(path)
        return files.flax_layers(tree), tree, {}
    if fmt == "tf1":
        arrays = files.read_npz(path)
        source, ignored = files.tf1_structure(arrays, where=path.name)
        return source, arrays, {"ignored": ignored}
    raise UsageError(f"unknown format {fmt!r}")  # pragma: no cover - argparse restricts choices


def _build(path: Path, fmt: str, mode: str, args: argparse.Namespace, source: Any, tree: Any, info: dict) -> Any:
    """The torch module that ``source`` describes, through the library's own constructors."""
    from .errors import LayoutError

    cls = _class(mode)
    dtype = _torch_dtype(getattr(args, "dtype", None)) or _torch_dtype(_source_dtype(tree))
    common = dict(batch_first=bool(getattr(args, "batch_first", False)), dtype=dtype)
    if fmt == "blocks":
        arrays = dict(source)
        if "proj" in arrays and mode != "LSTM":
            raise LayoutError(f"{path.name}: holds 'proj', but only an LSTM has a projection (weight_hr); "
                              f"is this --cell lstm?")
        extra = {"nonlinearity": "relu" if mode == "RNN_RELU" else "tanh"} if mode.startswith("RNN") else {}
        return cls.from_numpy(**arrays, gates=getattr(args, "gates", None), rowwise=bool(getattr(args, "rowwise", False)),
                              **extra, **common)
    act = info.get("activation")
    if act and (act == "relu") != (mode == "RNN_RELU"):
        raise LayoutError(f"{path.name}: the Keras layers use activation={act!r}; pass "
                          + ("--cell rnn --nonlinearity relu" if act == "relu" else "no --nonlinearity relu"))
    if fmt == "keras":
        module = cls.from_keras(source, **common)
    elif fmt == "onnx":
        module = cls.from_onnx(source, **common)
    elif fmt == "flax":
        module = cls.from_flax(source, **common)
    else:
        module = cls.from_tf1(source, forget_bias=args.forget_bias, **common)
    if mode == "RNN_RELU" and module.nonlinearity != "relu":
        # The weights are the same; only the nonlinearity the caller states differs.
        relu = cls(**{**_spec(module).module_kwargs(), "nonlinearity": "relu"}, batch_first=module.batch_first,
                   device="meta")
        relu = relu.to_empty(device="cpu").to(next(module.parameters()).dtype)
        relu.load_state_dict(module.state_dict())
        module = relu
    return module


def _spec(module: Any) -> Any:
    from .spec import RNNSpec

    return RNNSpec.of(module)


def _summary(verb: str, path: Path, spec: Any, nbytes: int, seconds: float, extra: str = "") -> None:
    print(f"{verb} {path}: {spec.describe()}{extra}, {nbytes} bytes, {seconds:.2f} s")


# --------------------------------------------------------------------------------------
# convert: foreign file -> .pt / .safetensors
# --------------------------------------------------------------------------------------

def _convert(args: argparse.Namespace) -> int:
    from . import files

    t0 = time.perf_counter()
    src, out = Path(args.input), Path(args.output)
    fmt = args.source_format or files.guess_format(src)
    if fmt is None:
        raise UsageError(f"cannot tell the format of {str(src)!r} from its name; pass --from "
                         f"{{{','.join(files.FORMATS)}}}")
    if fmt != "blocks" and (args.gates or args.rowwise):
        raise UsageError("--gates and --rowwise apply to the block layout (--from blocks) only")
    if fmt != "tf1" and args.forget_bias is not None:
        raise UsageError("--forget-bias applies to --from tf1 only")
    if args.forget_bias is None:
        args.forget_bias = 1.0
    _check_output(out, (".pt", ".safetensors"), "the output of convert")
    mode = _mode(args)
    source, tree, info = _read_source(src, fmt)
    module = _build(src, fmt, mode, args, source, tree, info)
    del source, tree  # memory-mapped inputs are unmapped before the output is written
    spec = _spec(module)
    meta = {"numpyrnn.config": spec.describe(), "numpyrnn.mode": spec.mode,
            "numpyrnn.batch_first": str(bool(args.batch_first))}
    nbytes = files.write_state_dict(out, module.state_dict(), metadata=meta)
    dtype = str(next(module.parameters()).dtype).replace("torch.", "")
    _summary("wrote", out, spec, nbytes, time.perf_counter() - t0,
             f" {dtype}" + (", batch_first" if args.batch_first else ""))
    return 0


# --------------------------------------------------------------------------------------
# export: .pt / .safetensors -> foreign file
# --------------------------------------------------------------------------------------

def infer_state_spec(sd: dict, mode: str) -> Any:
    """The :class:`~numpyrnn.spec.RNNSpec` a torch ``state_dict`` implies for ``mode``.

    Raises:
        LayoutError: the keys or shapes are not those of one ``nn.GRU``/``LSTM``/``RNN``.
    """
    import re

    from .errors import LayoutError
    from .spec import TORCH_GATES, RNNSpec

    G = len(TORCH_GATES[mode])
    pat = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
    unknown = [k for k in sd if not pat.match(k)]
    if unknown:
        owners = sorted({k[: -len("weight_ih_l0")] for k in sd if k.endswith(".weight_ih_l0")})
        fix = (f"; the file holds a whole model: save the recurrent module's own state_dict, e.g. "
               f"model.{owners[0].rstrip('.')}.state_dict()" if owners else "")
        raise LayoutError(f"unexpected key(s) {', '.join(map(repr, unknown[:4]))}: expected the state_dict of one "
                          f"nn.GRU/LSTM/RNN (weight_ih_l0, weight_hh_l0, bias_ih_l0, ...){fix}")
    if "weight_ih_l0" not in sd or "weight_hh_l0" not in sd:
        raise LayoutError("no weight_ih_l0/weight_hh_l0: not the state_dict of a recurrent module")
    layers = 1 + max(int(pat.match(k).group(2)) for k in sd)  # type: ignore[union-attr]
    w_ih, w_hh = sd["weight_ih_l0"], sd["weight_hh_l0"]
    if w_ih.dim() != 2 or w_hh.dim() != 2:
        raise LayoutError(f"weight_ih_l0 and weight_hh_l0 must be matrices, got shapes {tuple(w_ih.shape)} "
                          f"and {tuple(w_hh.shape)}")
    rows = int(w_hh.shape[0])
    cell = "RNN" if mode.startswith("RNN") else mode
    if rows % G:
        raise LayoutError(f"weight_hh_l0 has {rows} rows, not a multiple of {G} gates: not --cell {cell.lower()} "
                          f"(is --cell right?)")
    H = rows // G
    proj = int(sd["weight_hr_l0"].shape[0]) if "weight_hr_l0" in sd and sd["weight_hr_l0"].dim() == 2 else 0
    if "weight_hr_l0" in sd and mode != "LSTM":
        raise LayoutError(f"weight_hr_l0 is an LSTM projection, but --cell is {cell.lower()}")
    if not proj and int(w_hh.shape[1]) != H:
        raise LayoutError(f"weight_hh_l0 is {tuple(w_hh.shape)}; for --cell {cell.lower()} ({G} gates, hidden={H}) "
                          f"it would be ({G * H}, {H}): is --cell right?")
    return RNNSpec(mode=mode, input_size=int(w_ih.shape[1]), hidden_size=H, num_layers=layers,
                   bidirectional="weight_ih_l0_reverse" in sd, bias="bias_ih_l0" in sd, proj_size=proj)


def module_from_state_dict(sd: dict, mode: str) -> Any:
    """A numpyrnn module holding ``sd``, after the library's own leaf validation.

    Raises:
        LayoutError: keys, shapes or values (NaN/Inf) that do not fit.
        TypeError: a tensor is not floating point.
    """
    import torch

    from . import engine
    from .engine import Axis

    spec = infer_state_spec(sd, mode)
    expected = {k: tuple(Axis(f"{k}[{i}]", n) for i, n in enumerate(shape)) for k, shape in spec.param_shapes().items()}
    checked = engine.check_leaves(sd, expected, layout="state_dict")
    dtype: Any = next(iter(checked.values())).dtype
    module = engine.build(_class(mode), spec, batch_first=False, dropout=0.0, device="cpu", dtype=dtype)
    with torch.no_grad():
        for name, t in checked.items():
            getattr(module, name).copy_(t)
    return module


def _export(args: argparse.Namespace) -> int:
    from . import files

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
    module = module_from_state_dict(files.read_state_dict(src), mode)
    spec = _spec(module)
    if target == "blocks":
        nbytes = files.write_npz(out, module.to_numpy(gates=args.gates, rowwise=args.rowwise))
    elif target == "keras":
        nbytes = files.write_npz(out, files.keras_arrays(module.to_keras()))
    elif target == "onnx":
        nbytes = files.write_onnx(out, module.to_onnx(), mode=spec.mode)
    elif target == "flax":
        nbytes = files.write_msgpack(out, module.to_flax())
    else:
        fb = 1.0 if args.forget_bias is None else args.forget_bias
        nbytes = files.write_npz(out, files.tf1_arrays(module.to_tf1(forget_bias=fb), mode=spec.mode))
    _summary("wrote", out, spec, nbytes, time.perf_counter() - t0, f" as {target}")
    return 0


# --------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------

def _guess_cells(fmt: str, tree: Any, info: dict) -> list[str]:
    """Cells the file's own shapes or names point to; all three when they do not say."""
    if fmt == "blocks" and tree.get("b0") is not None and getattr(tree["b0"], "ndim", 0) == 3:
        G = int(tree["b0"].shape[-1]) // 2
        return [{3: "gru", 4: "lstm", 1: "rnn"}.get(G, "gru")]
    if fmt == "blocks" and "proj" in tree:
        return ["lstm"]
    if fmt == "tf1":
        return ["gru"] if any("gates/kernel" in k for k in tree) else ["lstm", "rnn"]
    if fmt == "onnx":
        ops = {op.lower() for op in info.get("ops", []) if op in ("GRU", "LSTM", "RNN")}
        return sorted(ops) or list(CELLS)
    if fmt == "keras" and tree:
        ws = next(iter(tree.values()))
        if len(ws) >= 2 and getattr(ws[1], "ndim", 0) == 2 and ws[1].shape[0]:
            G = int(ws[1].shape[1]) // int(ws[1].shape[0])
            return [{3: "gru", 4: "lstm", 1: "rnn"}.get(G, "gru")]
    if fmt == "flax":
        keys = {k.split(".")[-2] for k, _, _ in _listing(tree) if "." in k}
        if "ir" in keys:
            return ["gru"]
        if "ii" in keys:
            return ["lstm"]
        if "i" in keys:
            return ["rnn"]
    return list(CELLS)


def _listing(tree: Any) -> list:
    from .files import listing

    return list(listing(tree))


def _inspect(args: argparse.Namespace) -> int:
    from . import files

    path = Path(args.file)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    fmt: str | None
    if suffix in (".pt", ".pth", ".bin", ".safetensors"):
        fmt = "torch"
        sd = files.read_state_dict(path)
        tree: Any = sd
    else:
        fmt = args.source_format or files.guess_format(path)
        if fmt is None:
            raise UsageError(f"cannot tell the format of {str(path)!r} from its name; pass --from "
                             f"{{{','.join(files.FORMATS)}}}")
        source, tree, info = _read_source(path, fmt)
    rows = _listing(tree)
    print(f"{path} ({fmt}): {len(rows)} array(s)")
    width = max((len(k) for k, _, _ in rows), default=0)
    for key, shape, dtype in rows:
        print(f"  {key:<{width}}  {str(shape):<18} {dtype}")
    if fmt == "tf1" and info.get("ignored"):
        print(f"  ignored (not LSTM variables): {', '.join(info['ignored'])}")
    cells = [args.cell] if args.cell else (_state_cells(sd) if fmt == "torch" else _guess_cells(fmt, tree, info))
    found, problems = [], []
    for cell in cells:
        ns = argparse.Namespace(**{**vars(args), "cell": cell, "nonlinearity": "tanh", "forget_bias": 1.0,
                                   "gates": None, "rowwise": False, "batch_first": False})
        mode = _mode(ns)
        try:
            if fmt == "torch":
                module = module_from_state_dict(sd, mode)
            else:
                module = _build(path, fmt, mode, ns, source, tree, info)
        except (ValueError, TypeError, KeyError) as exc:
            problems.append((cell, _first_line(exc)))
            continue
        found.append(_spec(module))
    for spec in found:
        print("configuration: " + _config_text(spec))
    if len(found) > 1:
        print("  (the shapes fit more than one cell: pass --cell to convert)")
    if not found:
        for cell, problem in problems:
            print(f"problem ({cell}): {problem}")
        return 1
    print("problems: none")
    return 0


def _state_cells(sd: dict) -> list[str]:
    """A state_dict says its cell: weight_hh is (G*H, H), or (G*H, P) next to weight_hr (P, H)."""
    try:
        rows, cols = (int(n) for n in sd["weight_hh_l0"].shape)
        H = int(sd["weight_hr_l0"].shape[1]) if "weight_hr_l0" in sd else cols
        return [{3: "gru", 4: "lstm", 1: "rnn"}[rows // H]] if rows % H == 0 and rows // H in (1, 3, 4) else list(CELLS)
    except (KeyError, ValueError, ZeroDivisionError):
        return list(CELLS)


def _config_text(spec: Any) -> str:
    return (f"cell={spec.cell.lower()} input={spec.input_size} hidden={spec.hidden_size} layers={spec.num_layers} "
            f"directions={spec.directions} bias={'yes' if spec.bias else 'no'} "
            f"projection={spec.proj_size or 'none'}  [{spec.describe()}]")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ValueError) or not text else text


# --------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------

_CONVERT_EXAMPLES = """examples:
  numpyrnn convert weights.npz -o gru.pt --cell gru
  numpyrnn convert model.keras -o lstm.safetensors --cell lstm
  numpyrnn convert ckpt.npz -o lstm.pt --cell lstm --from tf1 --forget-bias 1.0
  numpyrnn convert old.npz -o gru.pt --cell gru --gates zrn --rowwise

then, in Python:
  gru = torch.nn.GRU(...the printed configuration...)
  gru.load_state_dict(torch.load("gru.pt", weights_only=True))"""

_EXPORT_EXAMPLES = """examples:
  numpyrnn export gru.pt -o gru.onnx --cell gru --to onnx
  numpyrnn export lstm.safetensors -o lstm.npz --cell lstm --to blocks --gates ifgo
  numpyrnn export lstm.pt -o ckpt.npz --cell lstm --to tf1"""

_INSPECT_EXAMPLES = """examples:
  numpyrnn inspect weights.npz
  numpyrnn inspect gru.pt
  numpyrnn inspect ckpt.npz --from tf1"""


def _parser() -> argparse.ArgumentParser:
    fmt_cls = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="numpyrnn",
        description="Foreign recurrent weights as exact torch.nn.GRU/LSTM/RNN modules.",
        epilog="examples:\n  numpyrnn demo\n  numpyrnn convert weights.npz -o gru.pt --cell gru\n"
               "  numpyrnn inspect gru.pt\n\nexit codes: 0 success, 1 bad weights or files, 2 usage errors",
        formatter_class=fmt_cls,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
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

    def common(q: argparse.ArgumentParser, *, cell_required: bool = True) -> None:
        q.add_argument("--cell", choices=CELLS, required=cell_required, help="the recurrent cell")
        q.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh",
                       help="nn.RNN's nonlinearity (--cell rnn only; default tanh)")
        q.add_argument("--gates", default=None, help="gate order of the block arrays, e.g. zrn (blocks only)")
        q.add_argument("--rowwise", action="store_true",
                       help="blocks as the original row-by-row loop read them (blocks only)")
        q.add_argument("--forget-bias", type=float, default=None,
                       help="TF1's run-time forget bias (tf1 only; default 1.0, 0 for CudnnLSTM checkpoints)")
        q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    c = sub.add_parser("convert", help="foreign weights (blocks, Keras, ONNX, Flax, TF1) -> .pt or .safetensors",
                       description="Read recurrent weights in a foreign layout and write the torch state_dict of "
                                   "the nn.GRU/LSTM/RNN they describe. Nothing is unpickled.",
                       epilog=_CONVERT_EXAMPLES, formatter_class=fmt_cls)
    c.add_argument("input", help=".npz or folder of .npy (blocks), .keras/.weights.h5, .onnx, .msgpack, or TF1 .npz")
    c.add_argument("-o", "--output", required=True, help="output .pt or .safetensors")
    c.add_argument("--from", dest="source_format", choices=("blocks", "keras", "onnx", "flax", "tf1"),
                   help="input layout (default from the suffix: .npz/folders blocks, .keras/.h5 keras, "
                        ".onnx onnx, .msgpack flax; TF1 needs --from tf1)")
    c.add_argument("--batch-first", action="store_true", help="record batch_first in the printed configuration")
    c.add_argument("--dtype", choices=("float16", "bfloat16", "float32", "float64"),
                   help="parameter dtype (default: the input's)")
    common(c)
    c.set_defaults(func=_convert)

    e = sub.add_parser("export", help=".pt or .safetensors -> blocks, Keras, ONNX, Flax or TF1",
                       description="Read the state_dict of an nn.GRU/LSTM/RNN and write its weights in a foreign "
                                   "layout. The configuration is inferred from the keys and shapes.",
                       epilog=_EXPORT_EXAMPLES, formatter_class=fmt_cls)
    e.add_argument("input", help="a .pt (state_dict) or .safetensors file")
    e.add_argument("-o", "--output", required=True,
                   help="blocks/keras/tf1: .npz, onnx: .onnx, flax: .msgpack")
    e.add_argument("--to", dest="target", required=True, choices=("blocks", "keras", "onnx", "flax", "tf1"),
                   help="output layout")
    common(e)
    e.set_defaults(func=_export)

    i = sub.add_parser("inspect", help="list a weight file's arrays, the configuration they imply, and problems",
                       description="List every array with its shape and dtype, the configuration it implies "
                                   "(cell, input, hidden, layers, directions, bias, projection) and any problem, "
                                   "found by the same validation as the library. Exit 1 when there is a problem.",
                       epilog=_INSPECT_EXAMPLES, formatter_class=fmt_cls)
    i.add_argument("file", help="a weight file or folder (any format convert or export reads)")
    i.add_argument("--from", dest="source_format", choices=("blocks", "keras", "onnx", "flax", "tf1"),
                   help="layout (default from the suffix)")
    i.add_argument("--cell", choices=CELLS, help="check only this cell (default: what the file implies)")
    i.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    i.set_defaults(func=_inspect)
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
    try:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
