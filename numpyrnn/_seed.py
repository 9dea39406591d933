"""The row-by-row loop from the question numpyrnn started from, kept for the demo and
the benchmarks as the thing to compare against. It is wrong: it maps torch row
``h*3 + g`` to unit ``h``, gate ``g`` (torch's row ``r`` is gate ``r // H`` of unit
``r % H``), and it never sets the biases."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def seed_arrays(input_size: int, hidden_size: int, num_layers: int, num_directions: int, seed: int = 313):
    """``w0`` and ``w`` exactly as the question builds them."""
    rng = np.random.RandomState(seed)
    w0 = rng.randn(num_directions, hidden_size, 3 * (input_size + hidden_size)).astype(np.float32)
    w = rng.randn(max(1, num_layers - 1), num_directions, hidden_size,
                  3 * (num_directions * hidden_size + hidden_size)).astype(np.float32)
    return w0, w


def row_loop(gru: nn.GRU, w0: np.ndarray, w: np.ndarray) -> nn.GRU:
    """The question's loop, with its sizes read from ``gru``. Returns ``gru``."""
    input_size, hidden_size, num_layers = gru.input_size, gru.hidden_size, gru.num_layers
    num_directions = 2 if gru.bidirectional else 1

    def set_nn_wih(layer, parameter_name, w, l0=True):
        param = getattr(layer, parameter_name)
        width = input_size if l0 else num_directions * hidden_size
        for i in range(3 * hidden_size):
            param.data[i] = w[i * width:(i + 1) * width]

    def set_nn_whh(layer, parameter_name, w):
        param = getattr(layer, parameter_name)
        for i in range(3 * hidden_size):
            param.data[i] = w[i * hidden_size:(i + 1) * hidden_size]

    for i in range(num_directions):
        for j in range(num_layers):
            if j == 0:
                wih, whh, l0 = w0[i, :, :3 * input_size], w0[i, :, 3 * input_size:], True
            else:
                wih = w[j - 1, i, :, :num_directions * 3 * hidden_size]
                whh = w[j - 1, i, :, num_directions * 3 * hidden_size:]
                l0 = False
            suffix = "_reverse" if i else ""
            set_nn_wih(gru, f"weight_ih_l{j}{suffix}", torch.from_numpy(wih.flatten()), l0)
            set_nn_whh(gru, f"weight_hh_l{j}{suffix}", torch.from_numpy(whh.flatten()))
    return gru
