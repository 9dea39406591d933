"""The whole configuration grid against the independent numpy oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN, reference
from numpyrnn.spec import RNNSpec

from .conftest import make_blocks

CELLS = ["GRU", "LSTM", "RNN_TANH", "RNN_RELU"]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def build(mode, arrays, **kw):
    if mode == "GRU":
        return NumpyGRU.from_numpy(**{k: v for k, v in arrays.items() if k != "proj"}, **kw)
    if mode == "LSTM":
        return NumpyLSTM.from_numpy(**arrays, **kw)
    nl = "relu" if mode == "RNN_RELU" else "tanh"
    return NumpyRNN.from_numpy(**{k: v for k, v in arrays.items() if k != "proj"}, nonlinearity=nl, **kw)


def oracle(mode, x, arrays, batch_first, h0=None, c0=None):
    a = {k: v for k, v in arrays.items() if v is not None}
    if mode == "GRU":
        return reference.gru(x, **a, batch_first=batch_first, h0=h0)
    if mode == "LSTM":
        return reference.lstm(x, **a, batch_first=batch_first, h0=h0, c0=c0)
    return reference.rnn(x, **a, batch_first=batch_first, h0=h0, nonlinearity="relu" if mode == "RNN_RELU" else "tanh")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seqfirst", "batchfirst"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("mode,proj", [("GRU", 0), ("LSTM", 0), ("LSTM", 2), ("RNN_TANH", 0), ("RNN_RELU", 0)],
                         ids=["GRU", "LSTM", "LSTM-proj", "RNN-tanh", "RNN-relu"])
def test_matches_reference(mode, proj, layers, bidirectional, bias, batch_first, dtype):
    spec = RNNSpec(mode, input_size=5, hidden_size=4, num_layers=layers, bidirectional=bidirectional,
                   bias=bias, proj_size=proj)
    arrays = make_blocks(spec, dtype=dtype, seed=layers * 7 + proj)
    module = build(mode, arrays, batch_first=batch_first, dtype=TORCH_DTYPE[dtype])
    assert module.num_layers == layers and module.bidirectional == bidirectional and module.bias == bias
    assert module.batch_first == batch_first and module.weight_ih_l0.dtype == TORCH_DTYPE[dtype]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 5) if batch_first else (6, 3, 5)).astype(dtype)
    R = proj or 4
    h0 = (0.5 * rng.standard_normal((layers * spec.directions, 3, R))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((layers * spec.directions, 3, 4))).astype(dtype)
    with torch.no_grad():
        if mode == "LSTM":
            y, (h, c) = module(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
            y_ref, (h_ref, c_ref) = oracle(mode, x, arrays, batch_first, h0, c0)
            np.testing.assert_allclose(c.numpy(), c_ref, **TOL[dtype])
        else:
            y, h = module(torch.from_numpy(x), torch.from_numpy(h0))
            y_ref, h_ref = oracle(mode, x, arrays, batch_first, h0)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y.numpy(), y_ref, **TOL[dtype])
    np.testing.assert_allclose(h.numpy(), h_ref, **TOL[dtype])


@pytest.mark.parametrize("mode", CELLS)
def test_unbatched_input(mode):
    spec = RNNSpec(mode, 3, 4, num_layers=2, bidirectional=True, bias=True)
    arrays = make_blocks(spec, dtype=np.float64)
    module = build(mode, arrays, dtype=torch.float64)
    x = np.random.default_rng(0).standard_normal((5, 3))
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    y, rest = out
    y_ref, rest_ref = oracle(mode, x, arrays, False)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-10, atol=1e-10)
    h, h_ref = (rest[0], rest_ref[0]) if mode == "LSTM" else (rest, rest_ref)
    np.testing.assert_allclose(h.numpy(), h_ref, rtol=1e-10, atol=1e-10)


GATE_PERMS = {"GRU": ["rzn", "zrn", "nzr", "znr"], "LSTM": ["ifgo", "iofg", "igfo", "ifog", "ogfi"]}


@pytest.mark.parametrize("mode,gates", [(m, g) for m, gs in GATE_PERMS.items() for g in gs])
def test_gate_permutations(mode, gates):
    spec = RNNSpec(mode, 5, 4, num_layers=2, bidirectional=True, bias=True)
    arrays = make_blocks(spec, dtype=np.float64, seed=11)
    module = build(mode, arrays, gates=gates, dtype=torch.float64)
    x = np.random.default_rng(5).standard_normal((4, 2, 5))
    a = {k: v for k, v in arrays.items() if v is not None}
    fn = reference.gru if mode == "GRU" else reference.lstm
    y_ref = fn(x, **a, gates=gates)[0]
    with torch.no_grad():
        y = module(torch.from_numpy(x))[0]
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-10, atol=1e-10)
    # The same arrays read in torch order give a different network unless the order is torch's.
    if gates not in ("rzn", "ifgo"):
        plain = build(mode, arrays, dtype=torch.float64)
        with torch.no_grad():
            assert not torch.allclose(plain(torch.from_numpy(x))[0], y)


def test_gate_aliases_read_like_torch_letters():
    spec = RNNSpec("GRU", 3, 2, bias=True)
    arrays = make_blocks(spec)
    a = NumpyGRU.from_numpy(arrays["w0"], b0=arrays["b0"], gates="zrh")
    b = NumpyGRU.from_numpy(arrays["w0"], b0=arrays["b0"], gates="zrn")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
