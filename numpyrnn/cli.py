"""The ``numpyrnn`` command: ``numpyrnn demo`` and friends.

Exit codes: 0 success, 1 bad weights or files (one-line cause; ``--debug``
shows the traceback), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]


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

    t0 = time.perf_counter()
    gru = NumpyGRU.from_numpy(w0, w)
    t_np = time.perf_counter() - t0

    torch.manual_seed(0)
    plain = nn.GRU(I, H, L, bias=True, bidirectional=True)
    t0 = time.perf_counter()
    row_loop(plain, w0, w)
    t_loop = time.perf_counter() - t0

    rows = []
    with torch.no_grad():
        for name, mod, t in (("numpyrnn NumpyGRU.from_numpy", gru, t_np), ("original row loop", plain, t_loop)):
            y, h = mod(torch.from_numpy(x))
            rows.append((name, float(np.abs(y.numpy() - y_ref).max()), float(np.abs(h.numpy() - h_ref).max()), t))

    print(f"numpyrnn demo: the question's GRU (input {I}, hidden {H}, {L} layers, bidirectional), "
          f"weights from RandomState(313), x of shape {x.shape}")
    print("reference: numpyrnn.reference.gru, plain numpy from the layout's formulas (float64)\n")
    print(f"{'method':<30} {'max|y - ref|':>13} {'max|h_n - ref|':>15} {'load time':>11}")
    for name, ey, eh, t in rows:
        print(f"{name:<30} {ey:>13.2e} {eh:>15.2e} {t * 1e3:>9.2f} ms")
    ok = rows[0][1] < 1e-5 and rows[0][2] < 1e-5
    print("\nnumpyrnn matches the reference" + (" " if ok else " NOT ") + "to float32 tolerance (1e-5).")
    print("The row loop scrambles gates across hidden units and leaves the biases random: "
          f"its error is {rows[1][1]:.2g}.")
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="numpyrnn",
        description="Foreign recurrent weights as exact torch.nn.GRU/LSTM/RNN modules.",
        epilog="example:  numpyrnn demo",
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
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``numpyrnn`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        if args.debug:
            raise
        print(f"numpyrnn {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
