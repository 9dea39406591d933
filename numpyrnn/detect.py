"""``numpyrnn.detect``: which reading of block arrays reproduces a recorded output.

Arrays from an unknown pipeline leave four questions open: the gate order, whether
they went through the original row-by-row loop (``rowwise``), whether the biases are
split between the input and recurrent sides or summed into one, and, for an LSTM,
whether a forget bias of 1 was added at run time and not stored. Given one input
and the output the original system computed from it, :func:`detect` tries every
combination and returns the one that reproduces the output.

The search is staged: every candidate is first scored on a cheap part of the
problem (the first layer's forward direction and a few time steps when the output
shows them; otherwise one sequence of the batch), and only the best ones run on
the whole stack and the whole input.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import LayoutError
from .spec import TORCH_GATES

__all__ = ["detect", "Detection", "DETECT_TOLERANCES"]

#: Default ``atol`` per dtype of ``y``: the recorded output comes from another
#: implementation, whose summation order differs from torch's.
DETECT_TOLERANCES = {"float64": 1e-8, "float32": 1e-4, "float16": 1e-2}

_MODES = {"gru": "GRU", "lstm": "LSTM", "rnn": "RNN_TANH"}
_PROXY_STEPS = 3
_FULL_RUNS = 3  # candidates run on the whole problem when nothing fits, to name the closest


@dataclass(frozen=True)
class _Reading:
    gates: str
    rowwise: bool
    bias: str  # "split", "summed", "summed-recurrent" or "none"
    forget: float  # added to torch's forget-gate bias_ih
    nonlinearity: str  # RNN only

    def describe(self, cell: str) -> str:
        parts = [f"gates={self.gates!r}", f"rowwise={self.rowwise}"]
        if self.bias != "none":
            parts.append(f"bias={self.bias}")
        if cell == "lstm":
            parts.append(f"forget_bias={self.forget:g}")
        if cell == "rnn":
            parts.append(f"nonlinearity={self.nonlinearity!r}")
        return " ".join(parts)


class Detection(dict):
    """The ``from_numpy`` keyword arguments that reproduce ``y``, plus what was found.

    Use it as ``NumpyGRU.from_numpy(w0, w, **found)``: it holds ``gates`` and
    ``rowwise`` (and ``nonlinearity`` for an RNN), and ``b0``/``b`` when the
    biases had to be rewritten (a summed bias split, a run-time forget bias folded in).

    Attributes:
        error: ``max |y - y'|`` of the match over the whole input.
        atol: the tolerance it met.
        cell: ``"gru"``, ``"lstm"`` or ``"rnn"``.
        bias: ``"split"``, ``"summed"`` (input side), ``"summed-recurrent"`` or ``"none"``.
        forget_bias: the run-time forget bias folded into ``b0``/``b`` (LSTM; else 0).
        tried: how many readings were scored.
    """

    error: float
    atol: float
    cell: str
    bias: str
    forget_bias: float
    tried: int

    @property
    def reading(self) -> str:
        """The match in one line, e.g. ``gates='zrn' rowwise=True bias=split``."""
        r = _Reading(self["gates"], self["rowwise"], self.bias, self.forget_bias, self.get("nonlinearity", "tanh"))
        return r.describe(self.cell)

    @property
    def rewrites_biases(self) -> bool:
        """Whether the match needs ``b0``/``b`` from this result rather than the given ones."""
        return "b0" in self


def detect(w0: Any, w: Any = None, *, b0: Any = None, b: Any = None, proj: Any = None, x: Any, y: Any,
           h0: Any = None, c0: Any = None, cell: str, atol: float | None = None,
           batch_first: bool = False) -> Detection:
    """Find the reading of block arrays that reproduces a recorded output.

    Args:
        w0, w, proj: block arrays as for ``from_numpy`` (any gate order, any reading).
        b0, b: biases: ``(..., 2*G)`` split between the input and recurrent sides, or
            ``(..., G)`` summed into one; ``None`` for none.
        x: the input the original system was given: ``(T, N, I)`` (``(N, T, I)`` with
            ``batch_first``) or ``(T, I)``.
        y: the output it computed from ``x``, shaped like ``x`` with ``D*R`` features.
        h0, c0: the initial states it used, ``(L*D, N, R)``/``(L*D, N, H)``; zeros when ``None``.
        cell: ``"gru"``, ``"lstm"`` or ``"rnn"``.
        atol: the largest ``|y - y'|`` accepted; default from ``y``'s dtype
            (:data:`DETECT_TOLERANCES`, float32: 1e-4).
        batch_first: ``x`` and ``y`` are batch-major.

    Returns:
        A :class:`Detection`: the ``from_numpy`` keyword arguments, with ``.error``.

    Raises:
        LayoutError: the arrays do not fit together, ``x``/``y`` do not fit the arrays,
            no reading reproduces ``y`` (the message names the three closest and their
            errors), or two readings reproduce it equally (``x`` does not tell them apart).
    """
    cell = str(cell).lower()
    if cell not in _MODES:
        raise LayoutError(f"cell={cell!r}: expected 'gru', 'lstm' or 'rnn'")
    mode = _MODES[cell]
    G = len(TORCH_GATES[mode])
    arrays = {k: (None if v is None else np.asarray(v, dtype=np.float64))
              for k, v in dict(w0=w0, w=w, b0=b0, b=b, proj=proj).items()}
    if cell != "lstm" and arrays["proj"] is not None:
        raise LayoutError(f"proj: only an LSTM has a projection; got proj for cell={cell!r}")
    biases = _bias_readings(arrays, G, cell)
    base = _build(cell, arrays, _Reading(TORCH_GATES[mode], False, biases[0], 0.0, "tanh"))  # validates shapes
    L, D, R, H, I = base.num_layers, 2 if base.bidirectional else 1, base.proj_size or base.hidden_size, \
        base.hidden_size, base.input_size
    del base
    xs, ys, unbatched = _sequences(x, y, batch_first, I, D * R)
    N = xs.shape[1]
    states = {"h0": (h0, R), "c0": (c0 if cell == "lstm" else None, H)}
    if c0 is not None and cell != "lstm":
        raise LayoutError(f"c0: only an LSTM has a cell state; got c0 for cell={cell!r}")
    init: dict[str, Any] = {}
    for name, (s, width) in states.items():
        if s is None:
            init[name] = np.zeros((L * D, N, width)) if (name == "h0" or cell == "lstm") else None
            continue
        s = np.asarray(s, dtype=np.float64)
        if unbatched and s.ndim == 2:
            s = s[:, None]
        if s.shape != (L * D, N, width):
            raise LayoutError(f"{name}: expected (layers*directions={L * D}, batch={N}, {width}), got {tuple(s.shape)}")
        init[name] = s
    tol = float(DETECT_TOLERANCES.get(str(np.asarray(y).dtype), 1e-4) if atol is None else atol)

    readings = [
        _Reading("".join(g), rw, bias, fb, nl)
        for g in itertools.permutations(TORCH_GATES[mode])
        for rw in ((False, True) if G > 1 else (False,))
        for bias in biases
        for fb in ((0.0, 1.0) if cell == "lstm" else (0.0,))
        for nl in (("tanh", "relu") if cell == "rnn" else ("tanh",))
    ]

    with _threads(H):
        # -- stage 1: the cheapest part of the problem the output shows --------------
        proxy_arrays, px, py, ph0, pc0 = _proxy(arrays, xs, ys, init, L, D, R)
        score = _errors(cell, proxy_arrays, readings, px, py, ph0, pc0, fast=True)
        order = sorted(range(len(readings)), key=lambda k: (score[k], k))

        # -- stage 2: the whole stack and the whole input, best first -----------------
        chosen = [k for k in order if score[k] <= tol] or order[:_FULL_RUNS]
        if len(chosen) < _FULL_RUNS:
            chosen += [k for k in order if k not in chosen][:_FULL_RUNS - len(chosen)]
        final = _errors(cell, arrays, [readings[k] for k in chosen], xs, ys, init["h0"], init["c0"], fast=False)
    full = [(final[j], readings[k]) for j, k in enumerate(chosen)]
    fits = [(e, r) for e, r in full if e <= tol]
    if not fits:
        closest = sorted(full, key=lambda t: t[0])[:3]
        raise LayoutError(
            f"no reading of the arrays reproduces y within atol={tol:g} ({len(readings)} readings tried: gate orders, "
            f"rowwise, {'no' if biases == ['none'] else '/'.join(biases)} biases" + (", forget bias 0/1" if cell == "lstm" else "")
            + "); closest: " + "; ".join(f"{r.describe(cell)}: max |y - y'| = {e:.3g}" for e, r in closest)
            + ". Are cell, x, y, h0 the ones the original system used?")
    fits.sort(key=lambda t: t[0])
    if len(fits) > 1:
        raise LayoutError(
            f"x does not tell these readings apart (all reproduce y within atol={tol:g}): "
            + "; ".join(f"{r.describe(cell)}: {e:.3g}" for e, r in fits[:3])
            + ". Record y for a longer or less uniform input")
    error, best = fits[0]
    out = Detection(gates=best.gates, rowwise=best.rowwise)
    if cell == "rnn":
        out["nonlinearity"] = best.nonlinearity
    if best.bias not in ("split", "none") or best.forget:
        module = _build(cell, arrays, best)
        exported = module.to_numpy(gates=best.gates, rowwise=best.rowwise)
        out["b0"] = exported["b0"].astype(np.asarray(b0 if b0 is not None else w0).dtype, copy=False)
        if exported.get("b") is not None:
            out["b"] = exported["b"].astype(out["b0"].dtype, copy=False)
    out.error, out.atol, out.cell, out.bias, out.forget_bias, out.tried = error, tol, cell, best.bias, best.forget, len(readings)
    return out


# --------------------------------------------------------------------------------------

def _bias_readings(arrays: dict, G: int, cell: str) -> list[str]:
    b0 = arrays["b0"]
    if b0 is None:
        if arrays["b"] is not None:
            raise LayoutError("b: given without b0; layer 0's biases go in b0")
        return ["none"]
    last = int(b0.shape[-1]) if b0.ndim else 0
    if b0.ndim == 3 and last == 2 * G:
        return ["split"]
    if b0.ndim == 3 and last == G:
        return ["summed", "summed-recurrent"] if cell == "gru" else ["summed"]
    raise LayoutError(f"b0: expected (directions, hidden, {2 * G}) split biases or (directions, hidden, {G}) "
                      f"summed ones for cell={cell!r}, got shape {tuple(b0.shape)}")


def _full_bias(b: np.ndarray | None, mode: str) -> np.ndarray | None:
    if b is None or mode == "split":
        return b
    zeros = np.zeros_like(b)
    return np.concatenate([b, zeros] if mode == "summed" else [zeros, b], axis=-1)


def _build(cell: str, arrays: dict, r: _Reading, *, bias: bool = False) -> Any:
    from .modules import NumpyGRU, NumpyLSTM, NumpyRNN

    cls: Any = {"gru": NumpyGRU, "lstm": NumpyLSTM, "rnn": NumpyRNN}[cell]
    kw: dict[str, Any] = dict(w0=arrays["w0"], w=arrays["w"], b0=_full_bias(arrays["b0"], r.bias),
                              b=_full_bias(arrays["b"], r.bias), gates=r.gates, rowwise=r.rowwise,
                              dtype=torch.float64)
    if cell == "lstm":
        kw["proj"] = arrays["proj"]
        if (r.forget or bias) and kw["b0"] is None:
            kw["bias"] = True  # zero biases, then the forget bias below
    if cell == "rnn":
        kw["nonlinearity"] = r.nonlinearity
    module = cls.from_numpy(**kw)
    if r.forget:
        _add_forget(module, r.forget)
    return module


def _add_forget(module: Any, amount: float) -> None:
    H = module.hidden_size
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("bias_ih"):
                p[H:2 * H] += amount  # torch's i, f, g, o: f is the second block


def _sequences(x: Any, y: Any, batch_first: bool, I: int, width: int) -> tuple[np.ndarray, np.ndarray, bool]:
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    unbatched = xs.ndim == 2
    if xs.ndim not in (2, 3) or xs.shape[-1] != I:
        raise LayoutError(f"x: expected (time, batch, input={I})" + (" batch-major" if batch_first else "")
                          + f" or (time, input={I}), got shape {tuple(xs.shape)}")
    if unbatched:
        xs, ys = xs[:, None], ys[:, None] if ys.ndim == 2 else ys
    elif batch_first:
        xs, ys = xs.transpose(1, 0, 2), ys.transpose(1, 0, 2) if ys.ndim == 3 else ys
    if ys.shape != xs.shape[:2] + (width,):
        raise LayoutError(f"y: expected {xs.shape[:2] + (width,)} (time, batch, directions*hidden) for these arrays "
                          f"and x, got shape {tuple(np.shape(y))}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise LayoutError("x, y: hold NaN or Inf")
    return xs, ys, unbatched


def _proxy(arrays: dict, xs: np.ndarray, ys: np.ndarray, init: dict, L: int, D: int, R: int):
    """The cheapest sub-problem whose answer the output shows.

    One layer: its forward direction (the first ``R`` features of ``y``) over the first
    few steps, which depend on the first few inputs only. A unidirectional stack: all
    layers over the first few steps. A bidirectional stack: every step depends on the
    whole input, so one sequence of the batch, all steps.
    """
    T = xs.shape[0]
    h0, c0 = init["h0"], init["c0"]
    if L == 1 or D == 1:
        k = min(T, _PROXY_STEPS)
        if L == 1 and D == 2:
            sub = {key: (None if v is None else (v[:, :1] if key == "proj" else v[:1]))
                   for key, v in arrays.items()}
            return sub, xs[:k, :2], ys[:k, :2, :R], h0[:1, :2], None if c0 is None else c0[:1, :2]
        return arrays, xs[:k, :2], ys[:k, :2], h0[:, :2], None if c0 is None else c0[:, :2]
    return arrays, xs[:, :1], ys[:, :1], h0[:, :1], None if c0 is None else c0[:, :1]


def _errors(cell: str, arrays: dict, readings: list[_Reading], x: np.ndarray, y: np.ndarray, h0: np.ndarray,
            c0: np.ndarray | None, *, fast: bool) -> list[float]:
    """``max |y - y'|`` of each reading.

    ``fast``: one module per bias reading, built by ``from_numpy`` in torch's own
    order; every gate order and row reading is a permutation of its rows, gathered
    into the module in place, and the forget-gate offset is added in place.
    Otherwise every reading is built by ``from_numpy`` itself (what the result promises).
    """
    out: list[float] = [0.0] * len(readings)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    state: Any = torch.from_numpy(np.ascontiguousarray(h0))
    if c0 is not None:
        state = (state, torch.from_numpy(np.ascontiguousarray(c0)))

    def score(module: Any) -> float:
        with torch.no_grad():
            got, _ = module(xt, state)
        err = np.abs(got.numpy() - y)
        return float(err.max()) if np.isfinite(err).all() else float("inf")

    if not fast:
        return [score(_build(cell, arrays, r)) for r in readings]
    groups: dict[tuple, list[int]] = {}
    for k, r in enumerate(readings):
        groups.setdefault((r.bias, r.nonlinearity), []).append(k)
    letters = TORCH_GATES[_MODES[cell]]
    for (bias, nonlinearity), members in groups.items():
        work = _build(cell, arrays, _Reading(letters, False, bias, 0.0, nonlinearity),
                      bias=any(readings[k].forget for k in members))
        G, H = len(letters), work.hidden_size
        base = {name: p.detach().clone() for name, p in work.named_parameters() if not name.startswith("weight_hr")}
        for k in members:
            r = readings[k]
            index = _rows(G, H, [r.gates.index(t) for t in letters], r.rowwise)
            with torch.no_grad():
                for name, p in work.named_parameters():
                    if name in base:
                        p.copy_(base[name][index])
            if r.forget:
                _add_forget(work, r.forget)
            out[k] = score(work)
    return out


def _rows(G: int, H: int, slots: list[int], rowwise: bool) -> torch.Tensor:
    """For each torch row, the row of the torch-order reading that holds the same block slice.

    Torch row ``r`` is gate ``t`` of unit ``u``. The source slot of gate ``t`` is
    ``slots[t]``, and the torch-order reading keeps slot ``s`` of unit ``h`` in row
    ``s*H + h``. The row loop's reading puts unit ``r // G``'s gate ``r % G`` in row ``r``.
    """
    r = np.arange(G * H)
    gate, unit = (r % G, r // G) if rowwise else (r // H, r % H)
    return torch.from_numpy(np.asarray(slots)[gate] * H + unit)


class _threads:
    """One torch thread for small problems: the per-step work is too small to share,
    and on a busy machine extra threads only wait for each other."""

    def __init__(self, hidden: int):
        self.one = hidden < 512
        self.before = torch.get_num_threads()

    def __enter__(self) -> None:
        if self.one:
            torch.set_num_threads(1)

    def __exit__(self, *exc: Any) -> None:
        if self.one:
            torch.set_num_threads(self.before)
