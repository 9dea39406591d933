"""The command line's file paths against ``cp`` of the same file, with peak memory.

For a bidirectional 2-layer GRU with ``input_size == hidden_size`` the script
writes the weights once per format and then times, in fresh processes and
interleaved round by round:

* ``cp`` of the source file (into the same folder);
* ``python -m numpyrnn --help``: the interpreter's and the command line's start-up;
* ``python -c "import numpyrnn"``: the library's start-up;
* ``python -m numpyrnn convert`` of a stored (uncompressed) ``.npz`` to
  ``.safetensors`` and to ``.pt``; of an ``.onnx`` and (up to ``--keras-max``)
  a ``.keras`` file to ``.safetensors`` (``.onnx`` up to hidden 2048: a protobuf
  holds at most 2 GB); and ``numpyrnn export`` of the
  ``.safetensors`` back to a block ``.npz``;
* ``numpyrnn.load`` of numpyrnn's own files (the block ``.npz``, and the
  ``.safetensors`` and ``.pt`` that ``convert`` writes), in ``python -c``.

Every figure is a median over the rounds. The ratio is
``(median command - median start-up) / median cp``, where the start-up is
``numpyrnn --help`` for the command line and ``import numpyrnn`` for
``numpyrnn.load``, measured in the same rounds. Each round's own ratio (its
command, start-up and cp) is reported too, as the median and range over the
rounds (see :func:`per_round`). Every command runs under a
fresh, small interpreter that only starts it and waits for it: its peak
resident size is ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of that wrapper
(which counts the pages of memory-mapped files the command touched), and its
largest ``RssAnon`` (memory that is not file-backed) is sampled every 5 ms.
Both are reported less the start-up's, as ratios to the weight bytes.
Before each command (not timed) its output file is removed, ``sync`` runs and
the machine rests ``--settle`` seconds (default 5), so that no command gets
the memory the one before it just freed at a lower price (see :func:`settle`).

Usage::

    python benchmarks/files.py [--quick] [--sizes 256 1024 4096] [--repeats 3] [--settle 5] [--out DIR] [--work DIR]
                               [--paths PATH ...] [--name files]
    python benchmarks/files.py --render benchmarks/results/files.json

Writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` (``--name``, default
``files``) into ``--out`` (default ``benchmarks/results``); the weight files go
to a temporary folder under ``--work`` (default: the system's) and are removed.
``--render`` measures nothing and writes a saved report's table and plot again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

LAYERS, G = 2, 3


def weight_bytes(hidden: int) -> int:
    per_direction = G * hidden * 2 * hidden + G * hidden * 3 * hidden
    return 4 * 2 * (per_direction + LAYERS * 2 * G * hidden)


def block_arrays(hidden: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    base = (0.02 * rng.standard_normal(1_000_003)).astype(np.float32)
    H, D = hidden, 2
    return dict(w0=np.resize(base, (D, H, G * 2 * H)), w=np.resize(base, (LAYERS - 1, D, H, G * 3 * H)),
                b0=np.resize(base, (D, H, 2 * G)), b=np.resize(base, (LAYERS - 1, D, H, 2 * G)))


def _env() -> dict[str, str]:
    # bytecode is cached (the warm-up round writes it) as in an installed package: without it every
    # command would compile numpyrnn's sources again, and a command imports more of them than
    # the start-up it is measured against
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return dict(env, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "torch"))


# Runs one command and reports on it. A fresh, small interpreter (no imports beyond the
# standard library) is the command's parent: ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` then
# measures the command alone. (A child inherits the peak resident size of the process it
# was forked from, and this benchmark's own process holds the weights it wrote, which is
# why ``ru_maxrss`` of a child of this process says nothing about the command.)
_WRAPPER = r"""
import json, os, resource, subprocess, sys, threading, time
cmd = sys.argv[1:]
anon = [0]
done = threading.Event()
t0 = time.perf_counter()
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
def sample():
    path = "/proc/%d/status" % proc.pid
    while not done.is_set():
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        anon[0] = max(anon[0], int(line.split()[1]) * 1024)
                        break
        except OSError:
            return
        done.wait(0.005)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
err = proc.stderr.read()
proc.wait()
wall = time.perf_counter() - t0
done.set()
sampler.join()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"s": wall, "maxrss": usage.ru_maxrss * 1024, "anon": anon[0], "rc": proc.returncode,
           "err": err.decode(errors="replace")[-2000:]}, sys.stdout)
"""


def run(cmd: list[str]) -> dict:
    """Run ``cmd`` under a fresh wrapper; wall seconds, its peak RSS and its largest sampled RssAnon, in bytes."""
    out = subprocess.run([sys.executable, "-S", "-c", _WRAPPER, *cmd], capture_output=True, text=True, env=_env(),
                         check=True)
    r = json.loads(out.stdout)
    if r["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r['rc']}):\n{r['err']}")
    return {"s": r["s"], "maxrss": r["maxrss"], "anon": r["anon"]}


def settle(cmd: list[str], wait: float) -> None:
    """Start every command from the same state (not timed): its output file gone, no write of an
    earlier command still pending, and ``wait`` seconds of rest.

    Otherwise a command pays for the writeback of the one before it, and replacing an existing
    file costs more than writing a new one (ext4 flushes a file renamed or truncated over
    another: 2.5-3.4 s for 2 GB here, for cp as for numpyrnn). The rest matters on a virtual
    machine that hands freed memory back to its host (virtio-balloon's free page reporting, a
    second or two after it is freed): memory taken again soon after the last command freed its
    output is cheap, memory taken later faults in the host first. Here ``cp`` of 2 GB took
    0.55-0.84 s right after ``sync`` and 2.0-2.9 s after 1-8 s of rest, so a command that
    allocates right away (``cp``) would get the cheap memory and one that first imports torch
    for a second would not. With the same rest before each, every command starts as a user's
    command starts, long after the memory was freed."""
    out = cmd[cmd.index("-o") + 1] if "-o" in cmd else cmd[-1] if cmd[0] == "cp" else None
    if out is not None:
        Path(out).unlink(missing_ok=True)
    os.sync()
    if wait > 0:
        time.sleep(wait)


def make_sources(folder: Path, hidden: int, keras_max: int, onnx_max: int = 2048) -> dict[str, Path]:
    """The same weights as a stored .npz, .safetensors, .onnx and (small sizes) .keras."""
    import numpyrnn
    from numpyrnn import files

    arrays = block_arrays(hidden)
    out = {"npz": folder / "w.npz"}
    np.savez(out["npz"], **arrays)  # stored, not compressed
    module = numpyrnn.NumpyGRU.from_numpy(**arrays)
    out["safetensors"] = folder / "w.safetensors"
    py = sys.executable
    subprocess.run([py, "-m", "numpyrnn", "convert", str(out["npz"]), "-o", str(out["safetensors"]), "--cell", "gru"],
                   check=True, env=_env(), stdout=subprocess.DEVNULL)  # as numpyrnn writes it: with its spec
    out["pt"] = folder / "w.pt"
    subprocess.run([py, "-m", "numpyrnn", "convert", str(out["npz"]), "-o", str(out["pt"]), "--cell", "gru"],
                   check=True, env=_env(), stdout=subprocess.DEVNULL)
    del module, files
    if hidden > onnx_max:  # a protobuf holds at most 2 GB
        return out
    out["onnx"] = folder / "w.onnx"
    subprocess.run([py, "-m", "numpyrnn", "export", str(out["safetensors"]), "--to", "onnx", "--cell", "gru",
                    "-o", str(out["onnx"])], check=True, env=_env(), stdout=subprocess.DEVNULL)
    if hidden <= keras_max:
        out["keras"] = folder / "w.keras"
        script = (
            "import sys, numpy as np, keras, numpyrnn\n"
            "from numpyrnn import files\n"
            f"m = numpyrnn.NumpyGRU.from_numpy(**files.read_blocks({str(out['npz'])!r}))\n"
            "layers = [keras.layers.Bidirectional(keras.layers.GRU(%d, return_sequences=True, reset_after=True))"
            " for _ in range(%d)]\n"
            "model = keras.Sequential([keras.Input((None, %d)), *layers])\n"
            "for layer, ws in zip(layers, m.to_keras()):\n"
            "    layer.set_weights(ws)\n"
            f"model.save({str(out['keras'])!r})\n"
        ) % (hidden, LAYERS, hidden)
        subprocess.run([py, "-c", script], check=True, env=_env(), stdout=subprocess.DEVNULL)
    return out


def commands(folder: Path, sources: dict[str, Path]) -> dict[str, list[str]]:
    py = [sys.executable, "-m", "numpyrnn"]
    cmds = {
        "cp": ["cp", str(sources["npz"]), str(folder / "copy.npz")],
        "startup": [*py, "--help"],
        "npz->safetensors": [*py, "convert", str(sources["npz"]), "-o", str(folder / "o.safetensors"), "--cell", "gru"],
        "npz->pt": [*py, "convert", str(sources["npz"]), "-o", str(folder / "o.pt"), "--cell", "gru"],
        "safetensors->npz": [*py, "export", str(sources["safetensors"]), "--to", "blocks", "--cell", "gru",
                             "-o", str(folder / "e.npz")],
        "import": [sys.executable, "-c", "import numpyrnn"],
    }
    for kind in ("npz", "safetensors", "pt"):  # numpyrnn's own files, read by the library itself
        if kind in sources:
            cell = ", cell='gru'" if kind == "npz" else ""
            cmds[f"load {kind}"] = [sys.executable, "-c",
                                    f"import numpyrnn; numpyrnn.load({str(sources[kind])!r}{cell})"]
    if "onnx" in sources:
        cmds["onnx->safetensors"] = [*py, "convert", str(sources["onnx"]), "-o", str(folder / "x.safetensors"),
                                     "--cell", "gru"]
    if "keras" in sources:
        cmds["keras->safetensors"] = [*py, "convert", str(sources["keras"]), "-o", str(folder / "k.safetensors"),
                                      "--cell", "gru"]
    return cmds


def source_of(name: str) -> str:
    if name.startswith("load "):
        return name.split()[1]
    return {"cp": "npz", "startup": "npz", "import": "npz"}.get(name, name.split("->")[0])


def measure(hidden: int, repeats: int, work: Path | None, keras_max: int,
            paths: list[str] | None = None, wait: float = 5.0) -> dict:
    nbytes = weight_bytes(hidden)
    with tempfile.TemporaryDirectory(dir=work) as d:
        folder = Path(d)
        sources = make_sources(folder, hidden, keras_max)
        cmds = commands(folder, sources)
        if paths:
            unknown = sorted(set(paths) - set(cmds))
            if unknown:
                raise SystemExit(f"unknown path(s) {unknown}; known: {sorted(cmds)}")
            cmds = {n: c for n, c in cmds.items() if n in ("cp", "startup", "import") or n in paths}
        names = list(cmds)
        times: dict[str, list[dict]] = {n: [] for n in names}
        for round_ in range(repeats + 1):  # round 0 warms the page cache and the imports
            shift = round_ % len(names)
            for n in names[shift:] + names[:shift]:
                settle(cmds[n], wait)
                r = run(cmds[n])
                if round_:
                    times[n].append(r)
        sizes = {k: p.stat().st_size for k, p in sources.items()}
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("s", "maxrss", "anon")} for n, rs in times.items()}
    spread = {n: (max(r["s"] for r in rs) - min(r["s"] for r in rs)) / med[n]["s"] for n, rs in times.items()}
    cp = med["cp"]["s"]
    entry = {"hidden": hidden, "bytes": nbytes, "file_bytes": sizes, "median": med, "spread": spread,
             "times": {n: [r["s"] for r in rs] for n, rs in times.items()}, "ratios": {}}
    for n in names:
        if n in ("cp", "startup", "import"):
            continue
        base = "import" if n.startswith("load ") else "startup"  # the library alone, or the command line
        entry["ratios"][n] = {
            "start_up": base,
            "net_s": med[n]["s"] - med[base]["s"],
            "vs_cp": (med[n]["s"] - med[base]["s"]) / cp,
            "maxrss_ratio": (med[n]["maxrss"] - med[base]["maxrss"]) / nbytes,
            "anon_ratio": (med[n]["anon"] - med[base]["anon"]) / nbytes,
            "per_round": per_round(entry["times"], n, base),
        }
    return entry


def per_round(times: dict[str, list[float]], name: str, base: str) -> dict[str, float]:
    """The ratio to cp of each round on its own, ``(command - start-up) / cp`` with that round's
    start-up and cp: their median, least and greatest. The commands of a round run within a
    minute or so of each other; a machine whose load drifts over a long run (cp of 2 GB took
    1.8-6.1 s in one run here) shifts all three alike, where the ratio of medians can take its
    terms from different rounds."""
    rs = [(c - s) / p for c, s, p in zip(times[name], times[base], times["cp"])]
    return {"median": statistics.median(rs), "min": min(rs), "max": max(rs)}


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} GB"


def markdown(report: dict) -> str:
    lines = [f"# File paths against cp ({report['machine']})", "",
             f"{report['description']}. Bidirectional {LAYERS}-layer GRU, input = hidden, float32. Median of "
             f"{report['repeats']} interleaved rounds of fresh processes after a warm-up round. "
             "net = command - start-up (`numpyrnn --help` for the command line, `import numpyrnn` for "
             "numpyrnn.load), ratio = net / cp of the .npz. Memory: the command's peak RSS (ru_maxrss measured by a "
             "fresh wrapper process; counts touched pages of mapped files) and its largest sampled RssAnon (not "
             "file-backed), each less the start-up's, as ratios to the weight bytes. Before each command (not timed) "
             f"its output file is removed, `sync` runs and the machine rests {report.get('settle_s', 0):g} s (freed memory "
             "goes back to a virtual machine's host within seconds; see `settle` in the script). Spread = (max - min) / median "
             "of the rounds. Per round: each round's own (command - start-up) / cp, their median (least to greatest). "
             "Targets for npz->safetensors: ratio <= 1.5, peak memory <= 1.2.", "",
             "| hidden | weights | cp (s) | start-up (s) | path | command (s) | net (s) | ratio to cp | per round | "
             "peak RSS / weights | peak RssAnon / weights | spread |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in report["sizes"]:
        med = e["median"]
        for n, r in e["ratios"].items():
            base = r.get("start_up", "startup")
            pr = r.get("per_round") or per_round(e["times"], n, base)  # runs saved before it was recorded
            lines.append(f"| {e['hidden']} | {fmt_bytes(e['bytes'])} | {med['cp']['s']:.3f} | "
                         f"{med[base]['s']:.3f} | "
                         f"{n} | {med[n]['s']:.3f} | {r['net_s']:.3f} | {r['vs_cp']:.2f}x | "
                         f"{pr['median']:.2f}x ({pr['min']:.2f} to {pr['max']:.2f}) | {r['maxrss_ratio']:.2f} | "
                         f"{r['anon_ratio']:.2f} | {e['spread'][n]:.2f} |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written")
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = sorted({n for e in report["sizes"] for n in e["ratios"]})
    for n in names:
        pts = [(e["bytes"], e["ratios"][n]["vs_cp"], e["ratios"][n]["maxrss_ratio"]) for e in report["sizes"]
               if n in e["ratios"]]
        xs, rs, ms = zip(*pts)
        timed = [(x, r) for x, r in zip(xs, rs) if r > 0]  # a net time below 0 is start-up noise: not drawn
        if timed:
            ax1.plot(*zip(*timed), marker="o", label=n)
        ax2.plot(xs, ms, marker="o", label=n)
    ax1.axhline(1.0, color="black", linewidth=1, label="baseline: cp")
    ax1.axhline(1.5, color="grey", linewidth=0.8, linestyle=":", label="target 1.5x (npz)")
    ax2.axhline(1.0, color="black", linewidth=1, label="the weight bytes")
    ax2.axhline(1.2, color="grey", linewidth=0.8, linestyle=":", label="target 1.2x (npz)")
    ax1.set(xscale="log", yscale="log", xlabel="weight bytes", ylabel="(command - start-up) / cp",
            title=f"time against cp ({report['machine']})")
    ax2.set(xscale="log", xlabel="weight bytes", ylabel="peak RSS - start-up, / weight bytes",
            title="peak memory")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def save(report: dict, out: Path, name: str = "files") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", type=int, nargs="+")
    p.add_argument("--repeats", type=int)
    p.add_argument("--keras-max", type=int, default=1024, help="largest hidden size written as .keras")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--work", type=Path, help="folder for the temporary weight files")
    p.add_argument("--paths", nargs="+", metavar="PATH",
                   help="time only these paths (e.g. npz->safetensors npz->pt 'load npz'); cp and the "
                        "start-ups are always timed")
    p.add_argument("--settle", type=float, default=5.0, metavar="SECONDS",
                   help="rest before each command, after its output is removed and sync has run (see settle)")
    p.add_argument("--name", default="files", help="base name of the report files in --out (default files)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: write the table and the plot of a saved report again, next to it")
    args = p.parse_args(argv)
    if args.render is not None:
        report = json.loads(args.render.read_text())
        name = args.render.stem
        (args.render.parent / f"{name}.md").write_text(markdown(report))
        plot(report, args.render.parent / f"{name}.png")
        print(f"wrote {args.render.parent / (name + '.md')}")
        return 0
    sizes = args.sizes or ([64] if args.quick else [256, 1024, 4096])
    repeats = args.repeats or (1 if args.quick else 3)
    import torch

    report = {"machine": f"cpu-{os.cpu_count()}core",
              "description": f"CPU only, {os.cpu_count()} cores, torch {torch.__version__}, "
                             f"numpy {np.__version__}, Python {platform.python_version()}",
              "repeats": repeats, "settle_s": args.settle, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": "python benchmarks/files.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "sizes": []}
    if shutil.which("cp") is None:
        p.error("cp is not on PATH")
    for hidden in sizes:
        e = measure(hidden, repeats, args.work, args.keras_max, args.paths, args.settle)
        report["sizes"].append(e)
        print(f"hidden={hidden} ({fmt_bytes(e['bytes'])}): cp {e['median']['cp']['s']:.3f} s, "
              f"start-up {e['median']['startup']['s']:.3f} s", flush=True)
        for n, r in e["ratios"].items():
            pr = r["per_round"]
            print(f"  {n:20s} {e['median'][n]['s']:7.3f} s  net {r['net_s']:7.3f} s  {r['vs_cp']:5.2f}x cp  "
                  f"(per round {pr['median']:.2f}x, {pr['min']:.2f} to {pr['max']:.2f})  "
                  f"peak RSS {r['maxrss_ratio']:.2f}x  RssAnon {r['anon_ratio']:.2f}x  "
                  f"spread {e['spread'][n]:.2f}", flush=True)
        save(report, args.out, args.name)  # after every size: an interrupted run keeps what it measured
    save(report, args.out, args.name)
    made = plot(report, args.out / f"{args.name}.png")
    stem = args.out / args.name
    print(f"wrote {stem}.json, {stem}.md" + (f", {stem}.png" if made else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
