"""Forward time of the variant modules against ``nn.GRU``/``nn.LSTM`` at the same sizes.

Every row is a ratio against torch's own module (eager, its fused ATen kernel)
measured in the same run, interleaved round by round so that whatever else the
machine does affects them alike. Each figure is the median of ``--repeats``
rounds after warm-up. The variants run eager and under
``torch.compile(fullgraph=True)`` (inductor); torch's modules cannot be compiled
with ``fullgraph=True`` (dynamo refuses RNN modules), so they run eager only.
After timing, every compiled output is checked against its eager one, and the
variants with torch's equations (``ResetAfterGRU``, ``PeepholeLSTM()``) against
torch's modules.

Usage::

    python benchmarks/variants.py [--device cpu|cuda] [--quick] [--size 256] [--steps 100] [--batch 32]

``--quick`` is a smoke run at small sizes. Results go to stdout as a table and
to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from numpyrnn.variants import PeepholeLSTM, ResetAfterGRU, ResetBeforeGRU  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, x, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        fn(x)
    _sync(device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds (a smoke run)")
    ap.add_argument("--size", type=int, default=256, help="input_size = hidden_size")
    ap.add_argument("--steps", type=int, default=100, help="sequence length T")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", nargs="*", default=None, metavar="NAME",
                    help="time only these variants (ResetBeforeGRU ResetAfterGRU PeepholeLSTM PeepholeLSTM+): "
                         "compiling the unrolled loop takes a while on a small machine")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.steps, args.batch, args.repeats = 16, 8, 4, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    S, T, B = args.size, args.steps, args.batch
    x = torch.randn(T, B, S, device=device)

    gru = nn.GRU(S, S).to(device).eval()
    lstm = nn.LSTM(S, S).to(device).eval()
    variants = {
        "ResetBeforeGRU": (ResetBeforeGRU(S, S).to(device).eval(), "nn.GRU"),
        "ResetAfterGRU": (ResetAfterGRU(S, S).to(device).eval(), "nn.GRU"),
        "PeepholeLSTM()": (PeepholeLSTM(S, S).to(device).eval(), "nn.LSTM"),
        "PeepholeLSTM(peepholes, cell_clip)": (PeepholeLSTM(S, S, peepholes=True, cell_clip=3.0).to(device).eval(),
                                               "nn.LSTM"),
    }
    variants["ResetAfterGRU"][0].load_state_dict(gru.state_dict())
    variants["PeepholeLSTM()"][0].load_state_dict(lstm.state_dict())
    if args.only is not None:
        short = {"ResetBeforeGRU": "ResetBeforeGRU", "ResetAfterGRU": "ResetAfterGRU", "PeepholeLSTM": "PeepholeLSTM()",
                 "PeepholeLSTM+": "PeepholeLSTM(peepholes, cell_clip)"}
        unknown = [n for n in args.only if n not in short]
        if unknown:
            ap.error(f"--only: unknown {unknown}; choose from {sorted(short)}")
        variants = {short[n]: variants[short[n]] for n in args.only}

    runs: dict[str, object] = {"nn.GRU": gru, "nn.LSTM": lstm}
    print(f"compiling {len(variants)} variants (T={T} steps unrolled) ...", file=sys.stderr, flush=True)
    compile_s: dict[str, float] = {}
    for name, (module, _) in variants.items():
        runs[f"{name} eager"] = module
        compiled = torch.compile(module, fullgraph=True)
        t0 = time.perf_counter()
        with torch.no_grad():
            compiled(x)  # compiles
        compile_s[name] = time.perf_counter() - t0
        print(f"compiled {name} in {compile_s[name]:.1f} s", file=sys.stderr, flush=True)
        runs[f"{name} compiled"] = compiled
    for fn in runs.values():  # warm-up
        _time(fn, x, device)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            times[k].append(_time(fn, x, device))
    median = {k: statistics.median(v) for k, v in times.items()}

    # what was timed is checked after timing
    with torch.no_grad():
        for name, (module, _) in variants.items():
            torch.testing.assert_close(runs[f"{name} compiled"](x), module(x), rtol=1e-4, atol=1e-5)  # type: ignore[operator]
        if "ResetAfterGRU" in variants:
            torch.testing.assert_close(variants["ResetAfterGRU"][0](x), gru(x), rtol=1e-4, atol=1e-5)
        if "PeepholeLSTM()" in variants:
            torch.testing.assert_close(variants["PeepholeLSTM()"][0](x), lstm(x), rtol=1e-4, atol=1e-5)

    rows = []
    print(f"device={device} I=H={S} T={T} B={B} float32, threads={torch.get_num_threads()}, "
          f"median of {args.repeats}, torch {torch.__version__}")
    print(f"{'module':44s} {'forward ms':>11s} {'vs baseline':>12s}")
    for base in ("nn.GRU", "nn.LSTM"):
        print(f"{base + ' (eager, baseline)':44s} {1e3 * median[base]:11.2f} {1.0:11.2f}x")
        for name, (_, b) in variants.items():
            if b != base:
                continue
            for how in ("eager", "compiled"):
                k = f"{name} {how}"
                ratio = median[k] / median[base]
                print(f"{k:44s} {1e3 * median[k]:11.2f} {ratio:11.2f}x")
                rows.append(dict(module=name, mode=how, baseline=base, ms=1e3 * median[k], ratio=ratio,
                                 compile_s=compile_s[name] if how == "compiled" else None))
    if args.json:
        args.json.write_text(json.dumps(dict(device=str(device), size=S, steps=T, batch=B,
                                             threads=torch.get_num_threads(), torch=torch.__version__,
                                             baseline_ms={b: 1e3 * median[b] for b in ("nn.GRU", "nn.LSTM")},
                                             rows=rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
