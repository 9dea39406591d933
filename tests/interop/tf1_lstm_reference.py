"""TF1's recurrent cells transcribed into numpy: the oracle for the TF1 layout.

TensorFlow 1 cannot be installed next to torch here, so the TF1 tests run these
equations instead. They follow ``tensorflow/python/ops/rnn_cell_impl.py``
(``LSTMCell``, ``BasicLSTMCell``, ``BasicRNNCell``) and
``tensorflow/contrib/cudnn_rnn/python/ops/cudnn_rnn_ops.py``
(``CudnnCompatibleGRUCell``) variable by variable, and read the variables under
their TF1 names. Nothing here knows about torch or numpyrnn.

Shapes: ``x`` is time-major ``[T, N, I]`` like ``dynamic_rnn(time_major=True)``;
a layer's variables are a dict of bare TF1 names.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # exact identity, no overflow


def lstm_cell(x, state, v, *, forget_bias=1.0):
    """``LSTMCell.call`` without peepholes or clipping; ``state`` is ``(c, m)``.

    ``lstm_matrix = concat([x, m]) @ kernel + bias``; ``i, j, f, o = split(.., 4)``;
    ``c = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(j)``;
    ``m = sigmoid(o) * tanh(c)``, then ``m = m @ projection/kernel`` when present.
    ``BasicLSTMCell`` computes the same without the projection.
    """
    c_prev, m_prev = state
    lstm_matrix = np.concatenate([x, m_prev], axis=1) @ v["kernel"] + v["bias"]
    i, j, f, o = np.split(lstm_matrix, 4, axis=1)
    c = sigmoid(f + forget_bias) * c_prev + sigmoid(i) * np.tanh(j)
    m = sigmoid(o) * np.tanh(c)
    if "projection/kernel" in v:
        m = m @ v["projection/kernel"]
    return m, (c, m)


def rnn_cell(x, state, v, *, activation=np.tanh, **_):
    """``BasicRNNCell.call``: ``output = new_state = act(concat([x, h]) @ kernel + bias)``."""
    h = activation(np.concatenate([x, state], axis=1) @ v["kernel"] + v["bias"])
    return h, h


def cudnn_gru_cell(x, state, v, **_):
    """``CudnnCompatibleGRUCell.call``: reset gate applied after the hidden projection.

    ``r, u = split(sigmoid(concat([x, h]) @ gates/kernel + gates/bias), 2)``;
    ``c = tanh(x @ Wi + bi + r * (h @ Wh + bh))``; ``h' = (1 - u) * c + u * h``.
    """
    r, u = np.split(sigmoid(np.concatenate([x, state], axis=1) @ v["gates/kernel"] + v["gates/bias"]), 2, axis=1)
    candidate = x @ v["candidate/input_projection/kernel"] + v["candidate/input_projection/bias"]
    candidate = candidate + r * (state @ v["candidate/hidden_projection/kernel"] + v["candidate/hidden_projection/bias"])
    h = (1 - u) * np.tanh(candidate) + u * state
    return h, h


CELLS = {"LSTM": lstm_cell, "RNN": rnn_cell, "GRU": cudnn_gru_cell}


def zero_state(cell: str, v: dict, batch: int, dtype):
    """``cell.zero_state``: LSTM ``(c [N, H], m [N, R])``, else ``h [N, H]``."""
    if cell == "LSTM":
        H = v["bias"].shape[0] // 4
        R = v["projection/kernel"].shape[1] if "projection/kernel" in v else H
        return np.zeros((batch, H), dtype), np.zeros((batch, R), dtype)
    H = v["bias"].shape[0] if cell == "RNN" else v["candidate/input_projection/bias"].shape[0]
    return np.zeros((batch, H), dtype)


def dynamic_rnn(cell: str, x, v, **kw):
    """``dynamic_rnn(cell, x, time_major=True)`` from the zero state: ``(outputs [T, N, R], final state)``."""
    state = zero_state(cell, v, x.shape[1], x.dtype)
    outputs = []
    for t in range(x.shape[0]):
        out, state = CELLS[cell](x[t], state, v, **kw)
        outputs.append(out)
    return np.stack(outputs), state


def bidirectional_rnn(cell: str, x, fw, bw, **kw):
    """``bidirectional_dynamic_rnn`` with full-length sequences: the backward cell reads the
    reversed sequence and its outputs are reversed back; outputs concatenate ``[fw, bw]``."""
    y_fw, s_fw = dynamic_rnn(cell, x, fw, **kw)
    y_bw, s_bw = dynamic_rnn(cell, x[::-1], bw, **kw)
    return np.concatenate([y_fw, y_bw[::-1]], axis=-1), (s_fw, s_bw)


def stack(cell: str, x, layers, **kw):
    """``MultiRNNCell`` (mappings) or ``stack_bidirectional_dynamic_rnn`` (``{"fw", "bw"}`` dicts):
    each layer reads the whole output sequence of the layer below. Returns the top outputs and
    the final states per layer (a ``(fw, bw)`` pair for bidirectional layers)."""
    states = []
    for v in layers:
        if "fw" in v:
            x, s = bidirectional_rnn(cell, x, v["fw"], v["bw"], **kw)
        else:
            x, s = dynamic_rnn(cell, x, v, **kw)
        states.append(s)
    return x, states
