"""How much ``import numpyrnn`` costs on top of ``import torch``.

Each figure is the median wall time of fresh ``python -c "import X"`` processes
(one warm-up pair first, so both read from the file cache), measured
alternately. It also lists any heavy framework that ``import numpyrnn`` pulled
in (there must be none) and, with ``--detail``, the modules beyond torch that
``python -X importtime`` reports.

Usage::

    python benchmarks/import_time.py [--runs 7] [--detail]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("keras", "jax", "flax", "onnx", "onnxruntime", "tensorflow", "matplotlib", "safetensors", "h5py")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def import_time(runs: int = 7) -> dict:
    """Median seconds of ``import torch`` and ``import numpyrnn`` in fresh processes, and their ratio."""
    times: dict[str, list[float]] = {"torch": [], "numpyrnn": []}
    for _ in range(runs + 1):
        for mod in times:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {mod}"], check=True, env=_env())
            times[mod].append(time.perf_counter() - t0)
    result: dict = {m: statistics.median(v[1:]) for m, v in times.items()}
    result["ratio"] = result["numpyrnn"] / result["torch"]
    code = f"import sys, numpyrnn; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    result["heavy_modules_imported"] = heavy.stdout.strip() or "none"
    return result


def beyond_torch() -> list[tuple[int, str]]:
    """``(cumulative microseconds, module)`` for top-level imports of numpyrnn that torch does not make."""
    def tops(mod: str) -> dict[str, int]:
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {mod}"],
                             capture_output=True, text=True, check=True, env=_env()).stderr
        out = {}
        for line in err.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
            if cumulative.isdigit() and not name.startswith(" "):
                out[name.strip()] = int(cumulative)
        return out

    torch_mods = tops("torch")
    ours = tops("numpyrnn")
    return sorted(((us, m) for m, us in ours.items() if m not in torch_mods), reverse=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--detail", action="store_true", help="list what numpyrnn imports beyond torch")
    args = p.parse_args(argv)
    r = import_time(args.runs)
    print(f"import torch    {r['torch']:.3f} s\nimport numpyrnn {r['numpyrnn']:.3f} s\nratio           {r['ratio']:.3f}")
    print(f"heavy frameworks imported by numpyrnn: {r['heavy_modules_imported']}")
    if args.detail:
        for us, mod in beyond_torch()[:15]:
            print(f"  {us / 1000:8.1f} ms  {mod}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
