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


def measure(cell: str, I: int, H: int, budget: float, min_rounds: int, max_rounds: int,
            paths: tuple[str, ...] = tuple(PAIRS)) -> dict:
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
    sd = module.state_dict()  # views of module's parameters: no further copy of the weights
    plain.load_state_dict(sd)
    if "load_numpy" in paths:
        out["paths"]["load_numpy"] = time_pair(lambda: module.load_numpy(**box[0]),
                                               lambda: plain.load_state_dict(sd), budget, min_rounds, max_rounds)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, sd[k]), k
    expected = module.to_numpy()
    for k, v in arrays.items():  # what is timed is right
        assert np.array_equal(expected[k], v), k
    del expected, arrays
    box.clear()
    if "to_numpy" in paths:
        out["paths"]["to_numpy"] = time_pair(
            module.to_numpy, lambda: {k: v.numpy().copy() for k, v in plain.state_dict().items()},
            budget, min_rounds, max_rounds)
    return out


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
        lines += [f"## {ours} / {theirs} (target <= {target}x)", "",
                  "| cell | input | hidden | weights | torch (s) | ratio | noise | best-of ratio | rounds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for e in report["results"]:
            if path not in e["paths"]:
                continue
            p = e["paths"][path]
            lines.append(f"| {e['cell']} | {e['input']} | {e['hidden']} | {fmt_bytes(e['bytes'])} | "
                         f"{p['theirs_s']:.2e} | {p['ratio']:.2f}x | {p['noise']:.2f} | {p['best_ratio']:.2f}x | "
                         f"{p['rounds']} |")
        lines.append("")
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
        "command": " ".join(["python benchmarks/small.py", *(sys.argv[1:] if argv is None else argv)]),
        "results": [],
    }
    for cell in args.cells:
        for I, H in [DEMO, *((h, h) for h in sizes)]:
            G = CELLS[cell][2]
            big = G * H * (I + H) * 4 * 2 * 3 > 400e6  # a few rounds only where one takes seconds
            entry = measure(cell, I, H, budget, 1 if big else min_rounds, 2 if big else 100_000,
                            tuple(args.paths))
            report["results"].append(entry)
            save(report, args.out)  # after every size: an interrupted run keeps what it measured
            print(f"{cell} I={I} H={H} ({fmt_bytes(entry['bytes'])}): " + ", ".join(
                f"{k} {v['ratio']:.2f}x (noise {v['noise']:.2f}, {v['rounds']} rounds)"
                for k, v in entry["paths"].items()), flush=True)
    save(report, args.out)
    made = plot(report, args.out)
    print(f"wrote {args.out / 'small.json'}, {args.out / 'small.md'}" + "".join(f", {m}" for m in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
