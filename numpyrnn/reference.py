r"""Recurrent forward passes in plain numpy, written from the block-layout formulas.

This is the oracle numpyrnn is tested against, and a torch-free way to run the
same weights. It reads the arrays directly with the formulas of the block
layout and never goes through the converter:

* ``w0[d, h, g*I + i]``: input feature ``i`` into gate ``g`` of unit ``h``;
* ``w0[d, h, G*I + g*R + j]``: recurrent feature ``j`` into that gate;
* ``b0[d, h, g]`` / ``b0[d, h, G + g]``: input-side / recurrent-side bias;
* ``w[k-1]``/``b[k-1]``: the same for layer ``k > 0``, whose input is ``D*R`` wide;
* ``proj[k, d]``: the ``(P, H)`` LSTM projection.

With ``rowwise=True`` a block is read as the original row loop read it: the
row-major reshape of each ``(H, G*width)`` half to ``(G*H, width)``, torch row
``h*G + g`` holding gate ``g`` of unit ``h``.

Equations (torch's; ``σ`` is the logistic sigmoid, ``*`` elementwise):

* GRU: ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``,
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.
* LSTM: ``i, f, o = σ(·)``, ``g = tanh(·)``, ``c' = f * c + i * g``,
  ``h' = o * tanh(c')``, then ``h' = W_hr h'`` with a projection.
* RNN: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, ``act`` tanh or relu.

Shapes follow torch: ``x`` is ``(T, N, I)`` (``(N, T, I)`` with
``batch_first``, or ``(T, I)`` unbatched); ``h0`` is ``(L*D, N, R)``;
the result is ``y`` of ``(T, N, D*R)`` and ``h_n`` of ``(L*D, N, R)``
(LSTM: ``(h_n, c_n)`` with ``c_n`` of ``(L*D, N, H)``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["gru", "lstm", "rnn", "reset_before_gru", "gru_variant", "lstm_variant", "ACTIVATIONS"]

_ORDER = {"gru": "rzn", "lstm": "ifgo", "rnn": "h"}
_ALIAS = {"gru": {"h": "n", "u": "z", "c": "n"}, "lstm": {"c": "g", "j": "g"}, "rnn": {}}


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # numerically stable for large |a|
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    e = np.exp(a[~pos])
    out[~pos] = e / (1.0 + e)
    return out


class _Unit:
    """Weights of one layer and direction, read straight from a block."""

    peep: np.ndarray | None = None  # (3, H) peepholes i, f, o of the variants

    def __init__(self, block, bias, proj, G, n_in, R, positions, dtype, rowwise=False):
        H = block.shape[0]
        G_ = len(positions)
        if rowwise:
            # The row loop's reading: torch row ``h*G + g`` (gate ``g`` in torch order) holds
            # unit ``h``'s slot of that gate, so the rows of torch gate ``t`` are rows
            # ``t*H .. t*H+H-1`` of the row-major (G*H, width) reshape.
            ih = block[:, :G * n_in].reshape(H, G, n_in)[:, positions].reshape(G * H, n_in)
            hh = block[:, G * n_in:G * n_in + G * R].reshape(H, G, R)[:, positions].reshape(G * H, R)
            self.W_i = [ih[t * H:(t + 1) * H].astype(dtype) for t in range(G_)]
            self.W_h = [hh[t * H:(t + 1) * H].astype(dtype) for t in range(G_)]
            if bias is not None:
                bi = bias[:, :G][:, positions].reshape(G * H)
                bh = bias[:, G:2 * G][:, positions].reshape(G * H)
        else:
            self.W_i = [block[:, p * n_in:(p + 1) * n_in].astype(dtype) for p in positions]          # (H, in)
            self.W_h = [block[:, G * n_in + p * R:G * n_in + (p + 1) * R].astype(dtype) for p in positions]  # (H, R)
            if bias is not None:
                bi = bias[:, :G][:, positions].T.reshape(G * H)
                bh = bias[:, G:2 * G][:, positions].T.reshape(G * H)
        zeros = np.zeros(H, dtype=dtype)
        self.b_i = [bi[t * H:(t + 1) * H].astype(dtype) if bias is not None else zeros for t in range(G_)]
        self.b_h = [bh[t * H:(t + 1) * H].astype(dtype) if bias is not None else zeros for t in range(G_)]
        self.proj = None if proj is None else proj.astype(dtype)  # (P, H)

    def x(self, g: int, x: np.ndarray) -> np.ndarray:
        return x @ self.W_i[g].T + self.b_i[g]

    def h(self, g: int, h: np.ndarray) -> np.ndarray:
        return h @ self.W_h[g].T + self.b_h[g]


def _positions(cell: str, gates: str | None) -> list[int]:
    order = _ORDER[cell]
    if gates is None:
        return list(range(len(order)))
    norm = "".join(_ALIAS[cell].get(c, c) for c in gates.lower())
    if sorted(norm) != sorted(order):
        raise ValueError(f"gates={gates!r} is not a permutation of {order!r}")
    return [norm.index(c) for c in order]


def _run(cell, x, w0, w, b0, b, proj, h0, c0, batch_first, gates, step: Callable, rowwise=False, peep=None):
    G = len(_ORDER[cell])
    w0 = np.asarray(w0)
    D, H = w0.shape[0], w0.shape[1]
    P = 0 if proj is None else np.asarray(proj).shape[2]
    R = P or H
    I = w0.shape[2] // G - R
    L = 1 + (0 if w is None else len(w))
    x = np.asarray(x)
    dtype = np.result_type(x.dtype, w0.dtype, np.float32)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif batch_first:
        x = x.transpose(1, 0, 2)
    if x.shape[-1] != I:
        raise ValueError(f"x: last axis is {x.shape[-1]}, the weights expect input size {I}")
    T, N = x.shape[0], x.shape[1]
    pos = _positions(cell, gates)

    def state(s, width, name):
        if s is None:
            return np.zeros((L * D, N, width), dtype=dtype)
        s = np.asarray(s, dtype=dtype)
        return s[:, None, :] if unbatched else s

    h0 = state(h0, R, "h0")
    c0 = state(c0, H, "c0") if cell == "lstm" else None
    layer_in = x.astype(dtype)
    h_n, c_n = [], []
    for k in range(L):
        outs = []
        for d in range(D):
            block = w0[d] if k == 0 else np.asarray(w)[k - 1, d]
            bias = None if b0 is None else (np.asarray(b0)[d] if k == 0 else np.asarray(b)[k - 1, d])
            pj = None if proj is None else np.asarray(proj)[k, d]
            n_in = I if k == 0 else D * R
            unit = _Unit(block, bias, pj, G, n_in, R, pos, dtype, rowwise)
            if peep is not None:
                unit.peep = np.asarray(peep)[k, d].astype(dtype)
            h = h0[k * D + d]
            c = None if c0 is None else c0[k * D + d]
            y = np.zeros((T, N, R), dtype=dtype)
            times = range(T) if d == 0 else range(T - 1, -1, -1)
            for t in times:
                h, c = step(unit, layer_in[t], h, c)
                y[t] = h
            outs.append(y)
            h_n.append(h)
            c_n.append(c)
        layer_in = np.concatenate(outs, axis=-1)
    y = layer_in
    hn = np.stack(h_n)
    cn = np.stack([c for c in c_n if c is not None]) if cell == "lstm" else None
    if unbatched:
        y, hn = y[:, 0], hn[:, 0]
        cn = cn[:, 0] if cn is not None else None
    elif batch_first:
        y = y.transpose(1, 0, 2)
    return y, hn, cn


def _gru_step(u: _Unit, x, h, c):
    r = _sigmoid(u.x(0, x) + u.h(0, h))
    z = _sigmoid(u.x(1, x) + u.h(1, h))
    n = np.tanh(u.x(2, x) + r * u.h(2, h))
    return (1 - z) * n + z * h, None


def _lstm_step(u: _Unit, x, h, c):
    i = _sigmoid(u.x(0, x) + u.h(0, h))
    f = _sigmoid(u.x(1, x) + u.h(1, h))
    g = np.tanh(u.x(2, x) + u.h(2, h))
    o = _sigmoid(u.x(3, x) + u.h(3, h))
    c = f * c + i * g
    h = o * np.tanh(c)
    if u.proj is not None:
        h = h @ u.proj.T
    return h, c


def gru(x, w0, w=None, *, b0=None, b=None, h0=None, batch_first=False, gates=None, rowwise=False):
    """GRU forward pass over block-layout arrays.

    Args:
        x: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, or ``(T, I)``.
        w0, w, b0, b: block-layout arrays, as in :meth:`numpyrnn.NumpyGRU.from_numpy`.
        h0: initial state ``(L*D, N, H)``; zeros when ``None``.
        batch_first: ``x`` and ``y`` are batch-major.
        gates: gate order of the arrays; ``None`` is ``"rzn"``.
        rowwise: read each ``(H, 3*width)`` block as the row loop did (a row-major
            reshape to ``(3*H, width)``).

    Returns:
        ``(y, h_n)`` with torch's shapes.
    """
    y, hn, _ = _run("gru", x, w0, w, b0, b, None, h0, None, batch_first, gates, _gru_step, rowwise)
    return y, hn


def lstm(x, w0, w=None, *, b0=None, b=None, proj=None, h0=None, c0=None, batch_first=False, gates=None,
         rowwise=False):
    """LSTM forward pass over block-layout arrays, with optional projection.

    Args:
        x: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, or ``(T, I)``.
        w0, w, b0, b, proj: block-layout arrays, as in :meth:`numpyrnn.NumpyLSTM.from_numpy`.
        h0: ``(L*D, N, R)``; c0: ``(L*D, N, H)``; zeros when ``None``.
        batch_first: ``x`` and ``y`` are batch-major.
        gates: gate order of the arrays; ``None`` is ``"ifgo"``.
        rowwise: read each ``(H, 4*width)`` block as the row loop did.

    Returns:
        ``(y, (h_n, c_n))`` with torch's shapes.
    """
    y, hn, cn = _run("lstm", x, w0, w, b0, b, proj, h0, c0, batch_first, gates, _lstm_step, rowwise)
    return y, (hn, cn)


def rnn(x, w0, w=None, *, b0=None, b=None, h0=None, batch_first=False, nonlinearity="tanh", rowwise=False):
    """Elman RNN forward pass over block-layout arrays.

    Args:
        x: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, or ``(T, I)``.
        w0, w, b0, b: block-layout arrays, as in :meth:`numpyrnn.NumpyRNN.from_numpy`.
        h0: ``(L*D, N, H)``; zeros when ``None``.
        batch_first: ``x`` and ``y`` are batch-major.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        rowwise: accepted for symmetry; with one gate it reads the same arrays.

    Returns:
        ``(y, h_n)`` with torch's shapes.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    act = np.tanh if nonlinearity == "tanh" else (lambda a: np.maximum(a, 0))

    def step(u: _Unit, x, h, c):
        return act(u.x(0, x) + u.h(0, h)), None

    y, hn, _ = _run("rnn", x, w0, w, b0, b, None, h0, None, batch_first, None, step, rowwise)
    return y, hn


# --------------------------------------------------------------------------------------
# variants: what torch's modules do not compute (numpyrnn.variants)
# --------------------------------------------------------------------------------------

#: Activations by name, as each source defines them.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": _sigmoid,
    # Keras 2 / tf.keras 1.x ``hard_sigmoid`` and ONNX ``HardSigmoid`` (alpha 0.2, beta 0.5)
    "hard_sigmoid": lambda a: np.clip(0.2 * a + 0.5, 0.0, 1.0),
    # Keras 3 ``hard_sigmoid``: ``relu6(x + 3) / 6``
    "hard_sigmoid_keras3": lambda a: np.minimum(np.maximum(a + 3.0, 0.0), 6.0) / 6.0,
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
    "linear": lambda a: a,
}


def _activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def gru_variant(x, w0, w=None, *, b0=None, b=None, h0=None, batch_first=False, gates=None,
                reset_after=False, recurrent_activation="sigmoid", activation="tanh", preactivation_clip=None):
    """GRU forward pass with the reset gate before or after the recurrent matmul.

    Keras ``GRU`` (``keras/src/layers/rnn/gru.py``), with ``σ`` its
    ``recurrent_activation`` and ``φ`` its ``activation``::

        z  = σ(x W_z + b_z + h U_z)        r = σ(x W_r + b_r + h U_r)
        hh = φ(x W_h + b_h + (r * h) U_h)          reset_after=False
        hh = φ(x W_h + b_h + r * (h U_h + b'_h))   reset_after=True
        h' = z * h + (1 - z) * hh

    ONNX ``GRU`` (``linear_before_reset`` 0 / 1) and TF1 ``GRUCell``
    (``candidate = φ([x, r * h] K_c + b_c)``, ``h' = u * h + (1 - u) * candidate``)
    write the same. The arrays are the block layout, as in :func:`gru`; the
    recurrent-side bias of ``n`` is added outside the reset product when
    ``reset_after`` is false.

    Returns:
        ``(y, h_n)`` with torch's shapes.
    """
    sig, phi = _activation(recurrent_activation), _activation(activation)
    a = preactivation_clip

    def clip(v):  # ONNX ``clip``: bounds every activation's input
        return v if a is None else np.clip(v, -a, a)

    def step(u: _Unit, x, h, c):
        r = sig(clip(u.x(0, x) + u.h(0, h)))
        z = sig(clip(u.x(1, x) + u.h(1, h)))
        if reset_after:
            hh = phi(clip(u.x(2, x) + r * u.h(2, h)))
        else:
            hh = phi(clip(u.x(2, x) + u.h(2, r * h)))
        return z * h + (1 - z) * hh, None

    y, hn, _ = _run("gru", x, w0, w, b0, b, None, h0, None, batch_first, gates, step)
    return y, hn


def reset_before_gru(x, w0, w=None, **kwargs):
    """:func:`gru_variant` with ``reset_after=False``: Keras ``reset_after=False``, ONNX
    ``linear_before_reset=0``, TF1 ``GRUCell``."""
    return gru_variant(x, w0, w, reset_after=False, **kwargs)


def lstm_variant(x, w0, w=None, *, b0=None, b=None, proj=None, peepholes=None, h0=None, c0=None,
                 batch_first=False, gates=None, cell_clip=None, proj_clip=None, preactivation_clip=None,
                 input_forget=False, recurrent_activation="sigmoid", activation="tanh"):
    """LSTM forward pass with peepholes, clipping, a coupled forget gate and other activations.

    ONNX ``LSTM`` (operator docs; ``f`` = ``recurrent_activation``, ``g`` = ``h`` =
    ``activation``, ``clip`` = ``preactivation_clip`` applied to every activation's input)::

        it = f(Xt Wi + Ht-1 Ri + Pi * Ct-1 + Wbi + Rbi)
        ft = f(Xt Wf + Ht-1 Rf + Pf * Ct-1 + Wbf + Rbf)     (1 - it with input_forget)
        ct = g(Xt Wc + Ht-1 Rc + Wbc + Rbc)
        Ct = ft * Ct-1 + it * ct
        ot = f(Xt Wo + Ht-1 Ro + Po * Ct + Wbo + Rbo)
        Ht = ot * h(Ct)

    TF1 ``LSTMCell`` (``rnn_cell_impl.py``) adds ``w_f_diag``/``w_i_diag`` peepholes
    the same way, clips ``c`` to ``±cell_clip`` before the output gate, and
    clips the projection ``m = (o * tanh(c)) W_proj`` to ``±proj_clip``.

    Args:
        peepholes: ``(L, D, 3, H)``: per layer and direction, the ``i, f, o``
            peephole weights; ``None`` for none.
        The others as in :func:`lstm`; clips are off when ``None``.

    Returns:
        ``(y, (h_n, c_n))`` with torch's shapes.
    """
    sig, phi = _activation(recurrent_activation), _activation(activation)

    def clip(a, bound):
        return a if bound is None else np.clip(a, -bound, bound)

    def step(u: _Unit, x, h, c):
        pi = pf = po = 0.0
        if u.peep is not None:
            pi, pf, po = u.peep[0] * c, u.peep[1] * c, u.peep[2] * c
        i = sig(clip(u.x(0, x) + u.h(0, h) + pi, preactivation_clip))
        f = 1 - i if input_forget else sig(clip(u.x(1, x) + u.h(1, h) + pf, preactivation_clip))
        g = phi(clip(u.x(2, x) + u.h(2, h), preactivation_clip))
        c = clip(f * c + i * g, cell_clip)
        if u.peep is not None:
            po = u.peep[2] * c
        o = sig(clip(u.x(3, x) + u.h(3, h) + po, preactivation_clip))
        h = o * phi(c)
        if u.proj is not None:
            h = clip(h @ u.proj.T, proj_clip)
        return h, c

    y, hn, cn = _run("lstm", x, w0, w, b0, b, proj, h0, c0, batch_first, gates, step, peep=peepholes)
    return y, (hn, cn)
