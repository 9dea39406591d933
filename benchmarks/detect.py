"""How long ``numpyrnn.detect`` takes to find a reading.

The arrays are a 2-layer bidirectional GRU (input = hidden), with split biases,
saved through the row loop with the gates in Keras's order (``zrn``, ``rowwise``);
``y`` is what that GRU computes for 4 random sequences of 16 steps. Each figure
is the median wall time of ``--repeats`` searches after one warm-up search.
``--cell lstm`` times the larger LSTM search (24 gate orders, forget bias 0/1).

Usage::

    python benchmarks/detect.py [--hidden 256] [--cell gru] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from numpyrnn import NumpyGRU, NumpyLSTM, detect  # noqa: E402


def problem(cell: str, hidden: int, seed: int = 0) -> dict:
    G, cls, gates = (3, NumpyGRU, "zrn") if cell == "gru" else (4, NumpyLSTM, "icfo")
    rng = np.random.default_rng(seed)
    I = H = hidden
    scale = 1 / np.sqrt(H)
    arrays = dict(
        w0=(scale * rng.standard_normal((2, H, G * (I + H)))).astype(np.float32),
        w=(scale * rng.standard_normal((1, 2, H, G * (2 * H + H)))).astype(np.float32),
        b0=(scale * rng.standard_normal((2, H, 2 * G))).astype(np.float32),
        b=(scale * rng.standard_normal((1, 2, H, 2 * G))).astype(np.float32),
    )
    x = rng.standard_normal((16, 4, I)).astype(np.float32)
    original = cls.from_numpy(**arrays, gates=gates, rowwise=True)
    with torch.no_grad():
        y = original(torch.from_numpy(x))[0].numpy()
    return dict(arrays=arrays, x=x, y=y, cell=cell, expected=(gates.replace("c", "g"), True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--cell", choices=("gru", "lstm"), default="gru")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    case = problem(args.cell, args.hidden)
    found = detect(**case["arrays"], x=case["x"], y=case["y"], cell=case["cell"])  # warm-up
    assert (found["gates"], found["rowwise"]) == case["expected"], found.reading  # noqa: S101
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        detect(**case["arrays"], x=case["x"], y=case["y"], cell=case["cell"])
        times.append(time.perf_counter() - t0)
    print(f"detect: 2-layer bidirectional {args.cell.upper()}, input = hidden = {args.hidden}, "
          f"x (16, 4, {args.hidden}); {found.tried} readings; found {found.reading}, error {found.error:.1e}")
    print(f"median {statistics.median(times):.3f} s, min {min(times):.3f} s over {args.repeats} runs "
          f"(torch threads: {torch.get_num_threads()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
