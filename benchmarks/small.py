"""Building, loading and exporting against what torch itself does, from the demo's size up.

For every cell (GRU, LSTM, RNN) and size, a bidirectional 2-layer module with
``input_size == hidden_size`` (plus the demo's input 10, hidden 20), three pairs
are timed in one process, interleaved round by round (the order alternates) so
that whatever else the machine does affects both sides alike:

* ``from_numpy`` against the torch constructor ``nn.GRU(...)`` (its random
  initialisation included): what a user pays to get a module at all;
* ``load_numpy`` into an existing module against ``load_state_dict`` of the same
  weights (contiguous tensors in torch's layout) into an ``nn.GRU``;
* ``to_numpy`` against ``{k: v.numpy().copy() for k, v in m.state_dict().items()}``.

With ``--hand``, torch's baselines for ``load_numpy`` and ``to_numpy`` are also
timed, in rounds of their own, against a hand-written copy of the same
permutation: torch's ``copy_`` between each parameter and a strided view of the
block arrays (views built once for loads, fresh arrays per call for exports, no
checks). Its ratio to the baseline is what the block layout's permutation costs
by itself on this machine, with no library in the way.

Each figure is the median of the timed rounds after one warm-up round; the
noise column is the interquartile range of the per-round ratios divided by
their median. Rounds per size shrink with the size (a time budget per size,
at least ``--min-rounds``).

Usage::

    python benchmarks/small.py [--quick] [--out DIR] [--cells gru lstm rnn] [--sizes 20 64 ...]
                               [--paths from_numpy load_numpy to_numpy]

Writes ``small.json``, ``small.md`` and one plot per path (``small-<path>.png``,
needs matplotlib) into ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import numpyrnn  # noqa: E402
from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN  # noqa: E402

LAYERS = 2
DEMO = (10, 20)  # the demo's input and hidden size
CELLS = {"gru": (nn.GRU, NumpyGRU, 3), "lstm": (nn.LSTM, NumpyLSTM, 4), "rnn": (nn.RNN, NumpyRNN, 1)}
PAIRS = {
    "from_numpy": ("from_numpy", "torch constructor (random init)", 1.0),
    "load_numpy": ("load_numpy", "load_state_dict", 1.2),
    "to_numpy": ("to_numpy", "{k: v.numpy().copy()}", 1.2),
}
PERIOD = 1_000_003
SHARED_BYTES = 256 << 20  # from here the baseline's state_dict is views of numpyrnn's module (see measure)


def arrays_for(G: int, I: int, H: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = (0.02 * rng.standard_normal(min(PERIOD, 8 * G * H * (I + H) + 1))).astype(np.float32)
    D = 2

    def fill(*shape):
        return np.resize(base, shape)

    return dict(w0=fill(D, H, G * (I + H)), w=fill(LAYERS - 1, D, H, G * (D * H + H)),
                b0=fill(D, H, 2 * G), b=fill(LAYERS - 1, D, H, 2 * G))


def nbytes_of(arrays: dict[str, np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays.values())


def time_pair(ours, theirs, budget: float, min_rounds: int, max_rounds: int) -> dict:
    """Interleaved rounds of two callables; medians, per-round ratios and their spread."""
    ours(), theirs()  # warm-up
    a: list[float] = []
    b: list[float] = []
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - start < budget):
        pair = [(ours, a), (theirs, b)]
        for fn, out in pair if rounds % 2 else pair[::-1]:
            t0 = time.perf_counter()
            r = fn()
            out.append(time.perf_counter() - t0)
            del r
        rounds += 1
    ratios = sorted(x / y for x, y in zip(a, b))
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [ratios[0], 0.0, ratios[-1]]
    med_a, med_b = statistics.median(a), statistics.median(b)
    return {"ours_s": med_a, "theirs_s": med_b, "ratio": med_a / med_b, "rounds": rounds,
            "ratio_median_of_rounds": statistics.median(ratios),
            "noise": (q[2] - q[0]) / statistics.median(ratios), "best_ratio": min(a) / min(b)}


def _block_views(arrays: dict[str, np.ndarray], G: int, I: int, H: int) -> list[tuple[str, torch.Tensor]]:
    """(parameter name, strided view of the block arrays in the parameter's shape) for torch's gate
    order, straight from the block layout's formulas (not from numpyrnn)."""
    out = []
    for layer in range(LAYERS):
        for d in range(2):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            blk = torch.from_numpy(arrays["w0"][d] if layer == 0 else arrays["w"][layer - 1, d])
            bb = torch.from_numpy(arrays["b0"][d] if layer == 0 else arrays["b"][layer - 1, d])
            x = I if layer == 0 else 2 * H
            out.append(("weight_ih" + sfx, blk[:, :G * x].unflatten(1, (G, x)).transpose(0, 1)))
            out.append(("weight_hh" + sfx, blk[:, G * x:].unflatten(1, (G, H)).transpose(0, 1)))
            out.append(("bias_ih" + sfx, bb[:, :G].t()))
            out.append(("bias_hh" + sfx, bb[:, G:].t()))
    return out


def hand_load(module: nn.Module, arrays: dict[str, np.ndarray], G: int, I: int, H: int, *, check: bool = False):
    """A hand-written load of the block arrays into ``module``: one ``copy_`` per parameter; with
    ``check``, first the least an all-or-nothing validated load must do: read every array once
    (torch's sum, in which NaN and Inf propagate) before anything is written."""
    params = dict(module.named_parameters())
    pairs = [(params[n].view(v.shape), v) for n, v in _block_views(arrays, G, I, H)]
    leaves = [torch.from_numpy(a) for a in arrays.values()]

    def run() -> None:
        if check and not all(bool(torch.isfinite(t.sum())) for t in leaves):
            raise ValueError("not finite")
        with torch.no_grad():
            for p, v in pairs:
                p.copy_(v)
    return run


def hand_export(module: nn.Module, G: int, I: int, H: int):
    """A hand-written export of ``module`` into fresh block arrays: one ``copy_`` per parameter."""
    params = [(n, p.detach()) for n, p in module.named_parameters()]
    shapes = dict(w0=(2, H, G * (I + H)), w=(LAYERS - 1, 2, H, G * 3 * H), b0=(2, H, 2 * G),
                  b=(LAYERS - 1, 2, H, 2 * G))

    def run() -> dict[str, np.ndarray]:
        arrays = {k: np.empty(v, np.float32) for k, v in shapes.items()}
        views = dict(_block_views(arrays, G, I, H))
        for n, p in params:
            v = views[n]
            v.copy_(p.view(v.shape))
        return arrays
    return run


def measure(cell: str, I: int, H: int, budget: float, min_rounds: int, max_rounds: int,
            paths: tuple[str, ...] = tuple(PAIRS), hand: bool = False) -> dict:
    torch_cls, ours_cls, G = CELLS[cell]
    box = [arrays_for(G, I, H)]  # dropped before the export is timed
    arrays = box[0]
    kw = dict(num_layers=LAYERS, bidirectional=True)
    out = {"cell": cell, "input": I, "hidden": H, "bytes": nbytes_of(arrays), "paths": {}}
    # at most three copies of the weights alive at a time (4096 LSTM: 2.7 GB each)
    if "from_numpy" in paths:
        out["paths"]["from_numpy"] = time_pair(lambda: ours_cls.from_numpy(**box[0]), lambda: torch_cls(I, H, **kw),
                                               budget, min_rounds, max_rounds)
    module = ours_cls.from_numpy(**arrays)
    plain = torch_cls(I, H, **kw)
    # The baseline loads a state_dict of its own. Views of ``module``'s parameters would hand it a
    # source that load_numpy has just written, still in the cache, while load_numpy reads arrays
    # that the baseline's round pushed out. Only above SHARED_BYTES, where no round's data stays
    # cached, are they views (no further copy of the weights: 4096 LSTM is 2.7 GB).
    sd = module.state_dict()
    if out["bytes"] < SHARED_BYTES:
        sd = {k: v.clone() for k, v in sd.items()}
    plain.load_state_dict(sd)
    if "load_numpy" in paths:
        out["paths"]["load_numpy"] = time_pair(lambda: module.load_numpy(**box[0]),
                                               lambda: plain.load_state_dict(sd), budget, min_rounds, max_rounds)
        if hand:
            other = torch_cls(I, H, **kw)
            run = hand_load(other, arrays, G, I, H)
            run()
            for k, v in other.state_dict().items():  # the hand-written copy is right
                assert torch.equal(v, sd[k]), k
            _add_hand(out["paths"]["load_numpy"], time_pair(run, lambda: plain.load_state_dict(sd), budget,
                                                            min_rounds, max_rounds))
            checked = time_pair(hand_load(other, arrays, G, I, H, check=True), lambda: plain.load_state_dict(sd),
                                budget, min_rounds, max_rounds)
            out["paths"]["load_numpy"].update(hand_checked_ratio=checked["ratio"], hand_checked_noise=checked["noise"])
            del other, run
    for k, v in plain.state_dict().items():
        assert torch.equal(v, sd[k]), k
    expected = module.to_numpy()
    for k, v in arrays.items():  # what is timed is right
        assert np.array_equal(expected[k], v), k
    exported = hand_export(plain, G, I, H)
    if hand and "to_numpy" in paths:
        for k, v in exported().items():
            assert np.array_equal(expected[k], v), k
    del expected, arrays
    box.clear()
    if "to_numpy" in paths:
        baseline = lambda: {k: v.numpy().copy() for k, v in plain.state_dict().items()}  # noqa: E731
        out["paths"]["to_numpy"] = time_pair(module.to_numpy, baseline, budget, min_rounds, max_rounds)
        if hand:
            _add_hand(out["paths"]["to_numpy"], time_pair(exported, baseline, budget, min_rounds, max_rounds))
    return out


def _add_hand(entry: dict, timed: dict) -> None:
    """The hand-written copy's figures, from rounds of its own against the same baseline."""
    entry.update(hand_s=timed["ours_s"], hand_ratio=timed["ratio"], hand_noise=timed["noise"],
                 hand_baseline_s=timed["theirs_s"])


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} GB"


def markdown(report: dict) -> str:
    lines = [f"# Small modules: numpyrnn against torch ({report['machine']})", "",
             f"{report['description']}; torch {report['torch']}, numpy {report['numpy']}, Python {report['python']}.",
             f"Bidirectional {LAYERS}-layer modules, float32 with biases, input = hidden except the demo's "
             f"(input {DEMO[0]}, hidden {DEMO[1]}). Ratio = median numpyrnn time / median torch time over "
             "interleaved rounds after a warm-up; noise = interquartile range of the per-round ratios / their "
             "median. Targets: from_numpy <= 1.0x, load_numpy and to_numpy <= 1.2x.", ""]
    for path, (ours, theirs, target) in PAIRS.items():
        if not any(path in e["paths"] for e in report["results"]):
            continue
        hand = any("hand_ratio" in e["paths"].get(path, {}) for e in report["results"])
        checked = any("hand_checked_ratio" in e["paths"].get(path, {}) for e in report["results"])
        lines += [f"## {ours} / {theirs} (target <= {target}x)", "",
                  "| cell | input | hidden | weights | torch (s) | ratio | noise | best-of ratio | rounds |"
                  + (" hand-written copy / torch (noise) |" if hand else "")
                  + (" hand-written check + copy / torch (noise) |" if checked else ""),
                  "|---|---|---|---|---|---|---|---|---|" + ("---|" if hand else "") + ("---|" if checked else "")]
        for e in report["results"]:
            if path not in e["paths"]:
                continue
            p = e["paths"][path]
            lines.append(f"| {e['cell']} | {e['input']} | {e['hidden']} | {fmt_bytes(e['bytes'])} | "
                         f"{p['theirs_s']:.2e} | {p['ratio']:.2f}x | {p['noise']:.2f} | {p['best_ratio']:.2f}x | "
                         f"{p['rounds']} |" + (f" {p['hand_ratio']:.2f}x ({p['hand_noise']:.2f}) |"
                                               if "hand_ratio" in p else (" |" if hand else ""))
                         + (f" {p['hand_checked_ratio']:.2f}x ({p['hand_checked_noise']:.2f}) |"
                            if "hand_checked_ratio" in p else (" |" if checked else "")))
        lines.append("")
        if hand:
            lines += ["Hand-written copy: torch's `copy_` between each parameter and a strided view of the block "
                      "arrays, no checks, timed against the same baseline in rounds of its own. Its ratio is what "
                      "the block layout's permutation costs by itself."
                      + (" Hand-written check + copy: the same after one torch sum of each array, the least an "
                         "all-or-nothing validated load reads before it writes." if checked else ""), ""]
    lines += [f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(report: dict, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'numpyrnn[bench]'): no plots written")
        return []
    made = []
    for path, (ours, theirs, target) in PAIRS.items():
        if not any(path in e["paths"] for e in report["results"]):
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for cell in CELLS:
            pts = [(e["bytes"], e["paths"][path]["ratio"]) for e in report["results"]
                   if e["cell"] == cell and path in e["paths"]]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", label=cell.upper())
        hand = [(e["bytes"], e["paths"][path]["hand_ratio"]) for e in report["results"]
                if e["cell"] == "gru" and "hand_ratio" in e["paths"].get(path, {})]
        if hand:
            xs, ys = zip(*hand)
            ax.plot(xs, ys, color="grey", linestyle="--", marker=".", label="GRU: hand-written permuted copy_")
        ax.axhline(1.0, color="black", linewidth=1, label=f"baseline: {theirs}")
        if target != 1.0:
            ax.axhline(target, color="grey", linewidth=0.8, linestyle=":", label=f"target {target}x")
        ax.set(xscale="log", yscale="log", xlabel="weight bytes", ylabel=f"{ours} / {theirs}",
               title=f"{ours} against {theirs} ({report['machine']})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        target_path = out / f"small-{path}.png"
        fig.savefig(target_path, dpi=100)
        plt.close(fig)
        made.append(target_path)
    return made


def save(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "small.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "small.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the demo's size and hidden 64, a few rounds (seconds)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    p.add_argument("--paths", nargs="+", choices=list(PAIRS), default=list(PAIRS),
                   help="the pairs to time (default all three)")
    p.add_argument("--sizes", type=int, nargs="+", help="hidden sizes (input = hidden) after the demo's")
    p.add_argument("--budget", type=float, help="seconds of rounds per pair and size (default 3, quick 0.3)")
    p.add_argument("--min-rounds", type=int, default=None)
    p.add_argument("--hand", action="store_true",
                   help="also time a hand-written permuted copy_ against the load and export baselines")
    args = p.parse_args(argv)
    sizes = args.sizes or ([64] if args.quick else [32, 64, 128, 256, 512, 1024, 2048, 4096])
    budget = args.budget if args.budget is not None else (0.3 if args.quick else 3.0)
    min_rounds = args.min_rounds or (3 if args.quick else 5)
    report = {
        "machine": f"cpu-{os.cpu_count()}core",
        "description": f"CPU only, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
                       f"torch threads {torch.get_num_threads()}",
        "torch": torch.__version__, "numpy": np.__version__, "numpyrnn": numpyrnn.__version__,
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/small.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "results": [],
    }
    for cell in args.cells:
        for I, H in [DEMO, *((h, h) for h in sizes)]:
            G = CELLS[cell][2]
            big = G * H * (I + H) * 4 * 2 * 3 > 400e6  # a few rounds only where one takes seconds
            entry = measure(cell, I, H, budget, 1 if big else min_rounds, 2 if big else 100_000,
                            tuple(args.paths), hand=args.hand)
            report["results"].append(entry)
            save(report, args.out)  # after every size: an interrupted run keeps what it measured
            print(f"{cell} I={I} H={H} ({fmt_bytes(entry['bytes'])}): " + ", ".join(
                f"{k} {v['ratio']:.2f}x (noise {v['noise']:.2f}, {v['rounds']} rounds"
                + (f"; hand-written {v['hand_ratio']:.2f}x" if "hand_ratio" in v else "")
                + (f", checked {v['hand_checked_ratio']:.2f}x" if "hand_checked_ratio" in v else "") + ")"
                for k, v in entry["paths"].items()), flush=True)
    save(report, args.out)
    made = plot(report, args.out)
    print(f"wrote {args.out / 'small.json'}, {args.out / 'small.md'}" + "".join(f", {m}" for m in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
