"""Build, load and export cost of numpyrnn against the copy floor, side by side.

One process measures every path on the same arrays, interleaved round by round,
so that whatever else the machine is doing affects them alike; each figure is
the median of ``--repeats`` rounds after one warm-up round, and every ratio is
against the floor measured in the same run:

* CPU: one copy of the same bytes into fresh memory (numpy's ``.copy()``);
* CUDA: ``torch.from_numpy(a).to("cuda")`` of the same arrays.

The model is a bidirectional 2-layer GRU with ``input_size == hidden_size``,
float32, with biases; ``--sizes`` lists hidden sizes (4096 is 2 GB, 8192 is 8 GB).
What it times is checked after timing. Peak extra memory is measured in a fresh
child process per path (``/proc/self/clear_refs`` then ``VmHWM``).

Usage::

    python benchmarks/run.py [--device cpu|cuda] [--quick] [--out DIR] [--sizes 64 1024 4096]

Writes ``<machine>.json``, ``<machine>.md`` and ``<machine>.png`` (the plot needs
matplotlib, the ``bench`` extra) into ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
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
from numpyrnn import NumpyGRU, engine  # noqa: E402
from numpyrnn._seed import row_loop  # noqa: E402

sys.path.insert(0, str(HERE))
from import_time import import_time  # noqa: E402

LAYERS, DIRECTIONS, GATES = 2, 2, 3
ROW_LOOP_LIMIT = 300e6  # bytes: the row loop takes minutes above this
PERIOD = 1_000_003  # a prime: tiled random values never line up with a block boundary

CASES_CPU = ["floor", "row_loop", "torch_load_state_dict", "from_numpy", "load_numpy", "to_numpy"]
CASES_CUDA = CASES_CPU + ["from_numpy_unstaged"]
LABELS = {
    "floor": "copy floor",
    "row_loop": "original row loop",
    "torch_load_state_dict": "nn.GRU + load_state_dict",
    "from_numpy": "NumpyGRU.from_numpy",
    "from_numpy_unstaged": "from_numpy, no pinned staging",
    "load_numpy": "load_numpy (in place)",
    "to_numpy": "to_numpy",
}
MEMORY_CASES = ["floor", "torch_load_state_dict", "from_numpy", "load_numpy", "to_numpy"]


# --------------------------------------------------------------------------------------
# the model and its arrays
# --------------------------------------------------------------------------------------

def weight_bytes(hidden: int) -> int:
    """float32 bytes of the GRU's weights and biases for ``I == H == hidden``."""
    per_direction = GATES * hidden * (hidden + hidden) + GATES * hidden * (DIRECTIONS * hidden + hidden)
    return 4 * DIRECTIONS * (per_direction + LAYERS * 2 * GATES * hidden)


def arrays_for(hidden: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Block-layout arrays: random values tiled with a prime period (fast at any size)."""
    rng = np.random.default_rng(seed)
    base = (0.02 * rng.standard_normal(PERIOD)).astype(np.float32)
    G, D, H = GATES, DIRECTIONS, hidden

    def fill(*shape):
        return np.resize(base, shape)

    return dict(
        w0=fill(D, H, G * (H + H)),
        w=fill(LAYERS - 1, D, H, G * (D * H + H)),
        b0=fill(D, H, 2 * G),
        b=fill(LAYERS - 1, D, H, 2 * G),
    )


def torch_state(arrays: dict[str, np.ndarray], hidden: int, materialise: bool = True) -> dict[str, np.ndarray]:
    """The arrays rearranged into torch's parameters with plain numpy.

    With ``materialise=False`` each entry is a view shaped ``(G, H, width)`` (or
    ``(G, H)``) instead of a contiguous ``(G*H, width)`` copy.
    """
    G, H = GATES, hidden
    out = {}
    for layer in range(LAYERS):
        for d in range(DIRECTIONS):
            s = f"_l{layer}" + ("_reverse" if d else "")
            block = arrays["w0"][d] if layer == 0 else arrays["w"][layer - 1, d]
            bias = arrays["b0"][d] if layer == 0 else arrays["b"][layer - 1, d]
            cut = block.shape[1] - G * H
            views = {
                "weight_ih" + s: block[:, :cut].reshape(H, G, -1).transpose(1, 0, 2),
                "weight_hh" + s: block[:, cut:].reshape(H, G, -1).transpose(1, 0, 2),
                "bias_ih" + s: bias[:, :G].T,
                "bias_hh" + s: bias[:, G:].T,
            }
            for k, v in views.items():
                out[k] = np.ascontiguousarray(v).reshape(G * H, *v.shape[2:]) if materialise else v
    return out


def plain_gru(hidden: int, device: str) -> nn.GRU:
    return nn.GRU(hidden, hidden, num_layers=LAYERS, bidirectional=True, device=device)


# --------------------------------------------------------------------------------------
# the paths, each a function of (arrays, context) returning what it built
# --------------------------------------------------------------------------------------

def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_paths(arrays: dict[str, np.ndarray], hidden: int, device: str) -> dict:
    target = None if device == "cpu" else device
    ctx: dict = {}

    def floor():
        if device == "cpu":
            return {k: v.copy() for k, v in arrays.items()}
        return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}

    def row_loop_path():
        gru = plain_gru(hidden, device)
        return row_loop(gru, arrays["w0"], arrays["w"])

    def naive():
        gru = plain_gru(hidden, device)
        state = {k: torch.from_numpy(v) for k, v in torch_state(arrays, hidden).items()}
        gru.load_state_dict(state)
        return gru

    def from_numpy():
        return NumpyGRU.from_numpy(**arrays, device=target)

    def from_numpy_unstaged():
        saved = engine.CHUNK_BYTES
        engine.CHUNK_BYTES = 1 << 62  # every span in one plain pageable copy
        try:
            return NumpyGRU.from_numpy(**arrays, device=target)
        finally:
            engine.CHUNK_BYTES = saved

    def load_numpy():
        if "module" not in ctx:
            ctx["module"] = NumpyGRU.from_numpy(**arrays, device=target)
        return ctx["module"].load_numpy(**arrays)

    def to_numpy():
        if "module" not in ctx:
            ctx["module"] = NumpyGRU.from_numpy(**arrays, device=target)
        return ctx["module"].to_numpy()

    paths = dict(floor=floor, row_loop=row_loop_path, torch_load_state_dict=naive, from_numpy=from_numpy,
                 load_numpy=load_numpy, to_numpy=to_numpy)
    if device == "cuda":
        paths["from_numpy_unstaged"] = from_numpy_unstaged
    return paths


def check(name: str, result, arrays: dict[str, np.ndarray], hidden: int, expected: dict[str, np.ndarray]) -> None:
    """Assert that what ``name`` built is right (run after timing)."""
    if name == "floor":
        for k, v in arrays.items():
            got = result[k].cpu().numpy() if isinstance(result[k], torch.Tensor) else result[k]
            assert np.array_equal(got, v), f"floor: {k} differs"
    elif name == "row_loop":
        # the loop reads rows as a plain reshape and never sets biases: compare with rowwise=True
        ref = NumpyGRU.from_numpy(arrays["w0"], arrays["w"], rowwise=True)
        for k, v in ref.state_dict().items():
            if k.startswith("weight"):
                assert torch.equal(getattr(result, k).detach().cpu(), v), f"row_loop: {k} differs"
    elif name == "to_numpy":
        for k, v in arrays.items():
            assert np.array_equal(result[k], v), f"to_numpy: {k} differs from the source"
    else:
        for k, v in expected.items():
            got = getattr(result, k).detach().cpu().view(v.shape)
            assert torch.equal(got, torch.from_numpy(v)), f"{name}: {k} differs"
        if result.weight_ih_l0.is_cuda and torch.backends.cudnn.is_available():
            storages = {w.untyped_storage().data_ptr() for w in result._flat_weights}
            assert len(storages) == 1, f"{name}: weights are not in one cuDNN buffer"


def time_paths(paths: dict, names: list[str], repeats: int, device: str, verify) -> dict[str, list[float]]:
    """One warm-up round, then ``repeats`` interleaved rounds in rotating order; returns the timed rounds.

    ``verify(name, result)`` checks each path's result of the last round, after it
    was timed; only one result is alive at a time.
    """
    times: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(repeats + 1):
        shift = round_ % len(names)  # rotate the order: no path always runs first
        for n in names[shift:] + names[:shift]:
            _sync(device)
            t0 = time.perf_counter()
            out = paths[n]()
            _sync(device)
            elapsed = time.perf_counter() - t0
            if round_:
                times[n].append(elapsed)
            if round_ == repeats:
                verify(n, out)
            del out
    return times


def time_forward(arrays, hidden, device, repeats, seq_len, batch) -> dict:
    """nn.GRU with the same weights against the loaded NumpyGRU: interleaved forward passes."""
    target = None if device == "cpu" else device
    ours = NumpyGRU.from_numpy(**arrays, device=target)
    theirs = plain_gru(hidden, device)
    theirs.load_state_dict(ours.state_dict())
    theirs.flatten_parameters()
    x = torch.randn(seq_len, batch, hidden, generator=torch.Generator().manual_seed(0)).to(device)
    times = {"nn.GRU": [], "NumpyGRU": []}
    with torch.no_grad():
        _sync(device)
        t0 = time.perf_counter()
        theirs(x)  # warm-up, and a first estimate of the cost
        _sync(device)
        one = time.perf_counter() - t0
        # forward passes are cheap next to loading: take enough rounds for a stable median
        rounds = int(min(60, max(repeats, 6.0 / max(one, 1e-4))))
        for round_ in range(rounds + 1):
            pair = [("nn.GRU", theirs), ("NumpyGRU", ours)]
            for name, m in pair if round_ % 2 else pair[::-1]:  # alternate which runs first
                _sync(device)
                t0 = time.perf_counter()
                y, _ = m(x)
                _sync(device)
                if round_:
                    times[name].append(time.perf_counter() - t0)
        torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-4, atol=1e-5)
    a, b = statistics.median(times["NumpyGRU"]), statistics.median(times["nn.GRU"])
    # the fastest round of each is what the kernels cost without interference
    ratio_min = min(times["NumpyGRU"]) / min(times["nn.GRU"])
    return {"seq_len": seq_len, "batch": batch, "rounds": rounds, "nn_gru_s": b, "numpyrnn_s": a, "ratio": a / b,
            "ratio_min": ratio_min, "times": times}


# --------------------------------------------------------------------------------------
# peak memory, in a fresh child process per path
# --------------------------------------------------------------------------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(name: str, hidden: int, device: str) -> dict:
    """Run in a fresh process: the host (and device) memory ``name`` needs beyond its inputs."""
    make_paths(arrays_for(16), 16, device)[name]()  # lazy imports and first-call caches are not the path's cost
    arrays = arrays_for(hidden)
    paths = make_paths(arrays, hidden, device)
    if name in ("load_numpy", "to_numpy"):  # the existing module is an input, not a cost
        paths["load_numpy"]().__class__  # noqa: B018 - builds ctx["module"]
    if device == "cuda":
        torch.zeros(1, device=device)  # the CUDA context is not the path's cost
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        dev_before = torch.cuda.memory_allocated()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident size
        before = _status_kb("VmHWM")
    except (OSError, RuntimeError) as exc:  # e.g. a sandboxed kernel without the counter
        return {"unsupported": f"cannot reset the peak counter: {exc}"}
    result = paths[name]()
    _sync(device)
    peak = _status_kb("VmHWM")
    out = {"host_extra_bytes": (peak - before) * 1024}
    if device == "cuda":
        out["device_extra_bytes"] = torch.cuda.max_memory_allocated() - dev_before
    del result
    return out


def measure_memory(name: str, hidden: int, device: str) -> dict | None:
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-memory", name, "--sizes", str(hidden),
           "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child for {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------

def machine_name(device: str) -> str:
    if device == "cuda":
        name = torch.cuda.get_device_name().lower()
        m = re.search(r"\b([a-z]{1,2}\d{2,4}[a-z]?)\b", name)
        short = m.group(1) if m else re.sub(r"[^a-z0-9]+", "-", name).strip("-")
        return f"cuda-{short}"
    return f"cpu-{os.cpu_count()}core"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}" if n < 10 else f"{n:.0f} {unit}"
        n /= 1000
    return f"{n} GB"


def markdown(report: dict) -> str:
    cases = report["cases"]
    lines = [
        f"# numpyrnn load benchmark: {report['machine']}",
        "",
        f"{report['description']}; torch {report['torch']}, numpy {report['numpy']}, Python {report['python']}.",
        f"Bidirectional {LAYERS}-layer GRU, input = hidden, float32 with biases. Median of "
        f"{report['repeats']} interleaved rounds after a warm-up; ratios against the "
        f"{'copy into fresh memory (numpy .copy())' if report['device'] == 'cpu' else 'plain torch.from_numpy(a).to(cuda)'} "
        "measured in the same run. Absolute times hold only for this machine.",
        "",
        "## Time (ratio to the floor; floor in seconds)",
        "",
        "| hidden | weights | floor (s) | " + " | ".join(LABELS[c] for c in cases if c != "floor")
        + " | forward, NumpyGRU / nn.GRU: median (best) |",
        "|---|---|---|" + "---|" * (len(cases) - 1) + "---|",
    ]
    for s in report["sizes"]:
        row = [str(s["hidden"]), fmt_bytes(s["bytes"]), f"{s['time']['floor']['median_s']:.4f}"]
        for c in cases:
            if c == "floor":
                continue
            t = s["time"].get(c)
            row.append(f"{t['ratio']:.2f}x" if t else "skipped")
        fw = s.get("forward")
        row.append(f"{fw['ratio']:.3f} (best {fw.get('ratio_min', float('nan')):.3f})" if fw else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    skipped = [s["hidden"] for s in report["sizes"] if "row_loop" not in s["time"]]
    if skipped:
        lines += ["", f"The row loop is skipped above {ROW_LOOP_LIMIT / 1e6:.0f} MB (hidden {', '.join(map(str, skipped))}):"
                  " it writes one row per Python call."]
    mem_sizes = [s for s in report["sizes"] if s.get("memory")]
    if mem_sizes:
        dev = report["device"] == "cuda"
        lines += ["", "## Peak extra memory (ratio to the weight bytes)", "",
                  "| hidden | weights | " + " | ".join(
                      LABELS[c] + (" (host / device)" if dev else "") for c in MEMORY_CASES) + " |",
                  "|---|---|" + "---|" * len(MEMORY_CASES)]
        for s in mem_sizes:
            row = [str(s["hidden"]), fmt_bytes(s["bytes"])]
            for c in MEMORY_CASES:
                m = s["memory"].get(c)
                if not m:
                    row.append("n/a")
                elif dev:
                    row.append(f"{m['host_ratio']:.2f}x / {m['device_ratio']:.2f}x")
                else:
                    row.append(f"{m['host_ratio']:.2f}x")
            lines.append("| " + " | ".join(row) + " |")
    if report.get("import_time"):
        it = report["import_time"]
        lines += ["", "## Import time", "",
                  f"`python -c \"import numpyrnn\"` {it['numpyrnn']:.3f} s, `python -c \"import torch\"` "
                  f"{it['torch']:.3f} s: ratio {it['ratio']:.3f} (median of fresh processes). "
                  f"Heavy modules imported by numpyrnn: {it['heavy_modules_imported']}."]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed (pip install "numpyrnn[bench]"): no plot written')
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    sizes = report["sizes"]
    for c in report["cases"]:
        pts = [(s["bytes"], s["time"][c]["median_s"], s["time"][c]["ratio"]) for s in sizes if c in s["time"]]
        if not pts:
            continue
        xs, ts, rs = zip(*pts)
        style = dict(marker="o", label=LABELS[c], linestyle="--" if c == "floor" else "-")
        ax1.plot(xs, ts, **style)
        ax2.plot(xs, rs, **style)
    ax1.set(xscale="log", yscale="log", xlabel="weight bytes", ylabel="seconds (median)",
            title=f"time, {report['machine']}")
    ax2.set(xscale="log", yscale="log", xlabel="weight bytes", ylabel="ratio to the floor",
            title="ratio to the copy floor (same run)")
    ax2.axhline(1.2, color="grey", linewidth=0.8, linestyle=":", label="1.2x")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="small sizes, a few seconds: checks correctness, not speed")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON, table and plot")
    p.add_argument("--sizes", type=int, nargs="+", help="hidden sizes (input = hidden); 4096 is 2 GB")
    p.add_argument("--repeats", type=int, help="timed rounds per size (default 5, quick 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    p.add_argument("--no-import-time", action="store_true", help="skip the import-time comparison (CPU runs only)")
    p.add_argument("--child-memory", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory, args.sizes[0], args.device)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")

    device = args.device
    if args.sizes:
        sizes = args.sizes
    elif args.quick:
        sizes = [16, 64]
    else:
        sizes = [64, 256, 1024, 1536, 2048, 4096] + ([8192] if device == "cuda" else [])
    repeats = args.repeats or (2 if args.quick else 5)
    # below ~100 MB the allocator reuses freed memory and peak counters say nothing
    min_memory = 1e9 if device == "cuda" else 100e6
    memory_sizes = (set() if args.no_memory else {sizes[-1]} if args.quick
                    else {h for h in sizes if weight_bytes(h) >= min_memory})
    memory_cases = ["from_numpy"] if args.quick else MEMORY_CASES
    cases = CASES_CUDA if device == "cuda" else CASES_CPU
    machine = machine_name(device)
    description = (f"{torch.cuda.get_device_name()}, host {os.cpu_count()} CPU cores" if device == "cuda"
                   else f"CPU only, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
                        f"torch threads {torch.get_num_threads()}")
    report = {
        "machine": machine, "device": device, "description": description,
        "torch": torch.__version__, "numpy": np.__version__, "numpyrnn": numpyrnn.__version__,
        "python": platform.python_version(), "repeats": repeats, "cases": cases,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/run.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "sizes": [],
    }
    print(f"{machine}: {description}")
    for hidden in sizes:
        nbytes = weight_bytes(hidden)
        arrays = arrays_for(hidden)
        assert sum(a.nbytes for a in arrays.values()) == nbytes
        names = [c for c in cases if c != "row_loop" or nbytes <= ROW_LOOP_LIMIT]
        print(f"hidden={hidden} ({fmt_bytes(nbytes)}): timing {', '.join(names)}"
              + ("" if "row_loop" in names else f"; row loop skipped above {ROW_LOOP_LIMIT / 1e6:.0f} MB"),
              flush=True)
        paths = make_paths(arrays, hidden, device)
        expected = torch_state(arrays, hidden, materialise=False)  # views of the source
        rounds = repeats if nbytes <= 4e9 or args.repeats else max(3, repeats - 2)
        times = time_paths(paths, names, rounds, device,
                           lambda n, out, a=arrays, h=hidden, e=expected: check(n, out, a, h, e))
        del expected
        floor = statistics.median(times["floor"])
        entry = {"hidden": hidden, "bytes": nbytes, "time": {}}
        for n in names:
            med = statistics.median(times[n])
            entry["time"][n] = {"median_s": med, "ratio": med / floor, "times": times[n]}
            print(f"  {LABELS[n]:32s} {med:9.4f} s  {med / floor:6.2f}x", flush=True)
        paths.clear()
        seq_len, batch = (8, 4) if hidden <= 2048 else (4, 2)
        entry["forward"] = time_forward(arrays, hidden, device, repeats, seq_len, batch)
        print(f"  {'forward, NumpyGRU / nn.GRU':32s} {entry['forward']['ratio']:9.3f}  "
              f"(best of {entry['forward']['rounds']}: {entry['forward']['ratio_min']:.3f})", flush=True)
        del arrays
        if hidden in memory_sizes:
            entry["memory"] = {}
            for n in memory_cases:
                try:
                    m = measure_memory(n, hidden, device)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:  # keep an unattended run going
                    print(f"  peak extra memory {LABELS[n]}: not measured ({str(exc).splitlines()[0]})", flush=True)
                    continue
                if m is None or "unsupported" in m:
                    print(f"  peak extra memory: not measured ({m['unsupported'] if m else 'no /proc'})", flush=True)
                    memory_sizes.clear()
                    break
                m["host_ratio"] = m["host_extra_bytes"] / nbytes
                if "device_extra_bytes" in m:
                    m["device_ratio"] = m["device_extra_bytes"] / nbytes
                entry["memory"][n] = m
                extra = f" host, {m['device_ratio']:.2f}x device" if "device_ratio" in m else ""
                print(f"  peak extra memory {LABELS[n]:26s} {m['host_ratio']:6.2f}x{extra}", flush=True)
        report["sizes"].append(entry)
    if not args.quick and not args.no_import_time and device == "cpu":
        report["import_time"] = import_time()
        it = report["import_time"]
        print(f"import numpyrnn {it['numpyrnn']:.3f} s, import torch {it['torch']:.3f} s: {it['ratio']:.3f}x")

    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / machine
    base.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    base.with_suffix(".md").write_text(markdown(report))
    made_plot = plot(report, base.with_suffix(".png"))
    print(f"wrote {base}.json, {base}.md" + (f", {base}.png" if made_plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
