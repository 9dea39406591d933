"""The question's original row-by-row loop, kept verbatim: ``rowwise=True`` must
reproduce it bit for bit, and the default reading must not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from numpyrnn import NumpyGRU, reference


def original_loop(input_size, hidden_size, num_layers, num_directions, bidirectional, dropout, w0, w):
    """Copied from the question, unchanged apart from being wrapped in a function."""
    gru = nn.GRU(input_size, hidden_size, num_layers,
                 bias=True, batch_first=False, dropout=dropout, bidirectional=bidirectional)

    def set_nn_wih(layer, parameter_name, w, l0=True):
        param = getattr(layer, parameter_name)
        if l0:
            for i in range(3*hidden_size):
                param.data[i] = w[i*input_size:(i+1)*input_size]
        else:
            for i in range(3*hidden_size):
                param.data[i] = w[i*num_directions*hidden_size:(i+1)*num_directions*hidden_size]

    def set_nn_whh(layer, parameter_name, w):
        param = getattr(layer, parameter_name)
        for i in range(3*hidden_size):
            param.data[i] = w[i*hidden_size:(i+1)*hidden_size]

    l0=True

    for i in range(num_directions):
        for j in range(num_layers):
            if j == 0:
                wih = w0[i, :, :3*input_size]
                whh = w0[i, :, 3*input_size:]  # check
                l0=True
            else:
                wih = w[j-1, i, :, :num_directions*3*hidden_size]
                whh = w[j-1, i, :, num_directions*3*hidden_size:]
                l0=False

            if i == 0:
                set_nn_wih(
                    gru, "weight_ih_l{}".format(j), torch.from_numpy(wih.flatten()),l0)
                set_nn_whh(
                    gru, "weight_hh_l{}".format(j), torch.from_numpy(whh.flatten()))
            else:
                set_nn_wih(
                    gru, "weight_ih_l{}_reverse".format(j), torch.from_numpy(wih.flatten()),l0)
                set_nn_whh(
                    gru, "weight_hh_l{}_reverse".format(j), torch.from_numpy(whh.flatten()))
    return gru


def question_arrays(input_size, hidden_size, num_layers, num_directions):
    rng = np.random.RandomState(313)
    w0 = rng.randn(num_directions, hidden_size, 3*(input_size +
                   hidden_size)).astype(np.float32)
    w = rng.randn(max(1, num_layers-1), num_directions, hidden_size,
                  3*(num_directions*hidden_size + hidden_size)).astype(np.float32)
    return w0, w


CONFIGS = [(10, 20, 2, 2), (5, 4, 1, 1), (3, 6, 3, 2), (7, 3, 3, 1)]


@pytest.mark.parametrize("I,H,L,D", CONFIGS)
def test_rowwise_is_bit_identical_to_the_loop(I, H, L, D):
    w0, w = question_arrays(I, H, L, D)
    loop = original_loop(I, H, L, D, D == 2, 0.0, w0, w)
    ours = NumpyGRU.from_numpy(w0, w if L > 1 else None, rowwise=True)
    for name, p in ours.named_parameters():
        assert torch.equal(p, getattr(loop, name)), name
    # and the in-place path does the same into a plain nn.GRU
    plain = nn.GRU(I, H, L, bias=False, bidirectional=D == 2)
    NumpyGRU.load_numpy(plain, w0, w if L > 1 else None, rowwise=True)
    for name, p in plain.named_parameters():
        assert torch.equal(p, getattr(loop, name)), name


@pytest.mark.parametrize("I,H,L,D", CONFIGS)
def test_default_differs_from_the_loop_and_matches_the_formulas(I, H, L, D):
    w0, w = question_arrays(I, H, L, D)
    loop = original_loop(I, H, L, D, D == 2, 0.0, w0, w)
    ours = NumpyGRU.from_numpy(w0, w if L > 1 else None)
    assert not torch.equal(ours.weight_ih_l0, loop.weight_ih_l0)
    x = np.random.RandomState(0).randn(4, 2, I).astype(np.float32)
    y_ref, _ = reference.gru(x.astype(np.float64), w0.astype(np.float64), w.astype(np.float64) if L > 1 else None)
    with torch.no_grad():
        y = ours(torch.from_numpy(x))[0].numpy()
        y_loop = loop(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    assert np.abs(y_loop - y_ref).max() > 1e-2  # the loop is wrong


def test_rowwise_round_trip_restores_the_arrays():
    w0, w = question_arrays(10, 20, 2, 2)
    ours = NumpyGRU.from_numpy(w0, w, rowwise=True)
    out = ours.to_numpy(rowwise=True)
    np.testing.assert_array_equal(out["w0"], w0)
    np.testing.assert_array_equal(out["w"], w)
