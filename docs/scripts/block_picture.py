"""Draw docs/img/blocks.png: how one block ``w0[d]`` lands on ``weight_ih_l0`` / ``weight_hh_l0``.

Run from the repository root::

    python docs/scripts/block_picture.py

The picture is computed, not drawn by hand: every cell of ``w0[d]`` holds a
code for (gate, unit, side, feature), the block is loaded with
``numpyrnn.load_numpy`` (default) and with ``rowwise=True``, and each torch
row is coloured by what actually landed in it. Rows whose content is not the
gate and unit torch reads there are marked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpyrnn  # noqa: E402

G, H, I = 3, 3, 2          # a GRU with 3 units and 2 inputs: small enough to read every cell
GATES = "rzn"
COLORS = {"r": "#4C72B0", "z": "#DD8452", "n": "#55A868"}
OUT = Path(__file__).resolve().parents[1] / "img" / "blocks.png"


def code(g: int, h: int, side: int, j: int) -> float:
    """A number that names one weight: gate g, unit h, side 0 input / 1 recurrent, feature j."""
    return 1000 * g + 100 * h + 10 * side + j


def decode(v: float) -> tuple[int, int, int, int]:
    v = int(round(v))
    return v // 1000, (v // 100) % 10, (v // 10) % 10, v % 10


def block() -> np.ndarray:
    w0 = np.zeros((1, H, G * I + G * H))
    for h in range(H):
        for g in range(G):
            for i in range(I):
                w0[0, h, g * I + i] = code(g, h, 0, i)
            for j in range(H):
                w0[0, h, G * I + g * H + j] = code(g, h, 1, j)
    return w0


def cell(ax, x, y, g, text, *, light=False, bad=False):
    ax.add_patch(Rectangle((x, y), 1, 1, facecolor=COLORS[GATES[g]], alpha=0.45 if light else 0.9,
                           edgecolor="black", linewidth=0.5))
    ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=6.5, color="black" if light else "white")
    if bad:
        ax.add_patch(Rectangle((x, y), 1, 1, fill=False, edgecolor="#C00000", linewidth=1.6))


def draw_block(ax, w0):
    ax.set_title("w0[d, h, :]  (one row per hidden unit h)", fontsize=10, loc="left")
    width = w0.shape[2]
    for h in range(H):
        for c in range(width):
            g, hh, side, j = decode(w0[0, h, c])
            cell(ax, c, H - 1 - h, g, f"{GATES[g]}{'x' if side == 0 else 'h'}{j}", light=side == 1)
        ax.text(-0.3, H - 1 - h + 0.5, f"h={h}", ha="right", va="center", fontsize=8)
    for c, label in ((0, "g*I + i: input feature i into gate g"), (G * I, "G*I + g*H + j: recurrent feature j")):
        ax.text(c, H + 0.25, label, fontsize=8, va="bottom")
    ax.axvline(G * I, color="black", linewidth=2)
    ax.set_xlim(-1.5, width + 0.5)
    ax.set_ylim(-0.5, H + 1.2)
    ax.axis("off")


def draw_params(ax, module, title):
    ax.set_title(title, fontsize=10, loc="left")
    x0 = 0
    for name, side in (("weight_ih_l0", 0), ("weight_hh_l0", 1)):
        p = getattr(module, name).detach().numpy()
        rows, cols = p.shape
        for r in range(rows):
            want_g, want_h = r // H, r % H      # what torch reads in row r
            g, h, s, _ = decode(p[r, 0])
            bad = (g, h) != (want_g, want_h)
            for c in range(cols):
                gg, hh, ss, j = decode(p[r, c])
                cell(ax, x0 + c, rows - 1 - r, gg, f"{GATES[gg]}{hh}", light=side == 1, bad=bad)
            if side == 0:
                ax.text(x0 - 0.3, rows - 1 - r + 0.5, f"row {r}: {GATES[want_g]} of h={want_h}", ha="right",
                        va="center", fontsize=7)
        ax.text(x0, rows + 0.2, name, fontsize=8, va="bottom")
        x0 += cols + 1.5
    ax.set_xlim(-6, x0)
    ax.set_ylim(-0.8, G * H + 1.2)
    ax.axis("off")


def main() -> None:
    w0 = block()
    default = numpyrnn.load_numpy(torch.nn.GRU(I, H, bias=False, dtype=torch.float64), w0)
    rowwise = numpyrnn.load_numpy(torch.nn.GRU(I, H, bias=False, dtype=torch.float64), w0, rowwise=True)
    fig = plt.figure(figsize=(11, 6.2), dpi=130)
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 2.3])
    draw_block(fig.add_subplot(grid[0, :]), w0)
    draw_params(fig.add_subplot(grid[1, 0]), default, "default: row r = gate r // H of unit r % H")
    draw_params(fig.add_subplot(grid[1, 1]), rowwise, "rowwise=True (the original loop): rows scrambled")
    fig.text(0.01, 0.01, "Cell text: gate letter and the unit it came from. Colour: the gate it came from "
             "(pale: recurrent side). Red frame: the row holds another gate or unit than torch reads there.",
             fontsize=8)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, bbox_inches="tight")
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")


if __name__ == "__main__":
    main()
