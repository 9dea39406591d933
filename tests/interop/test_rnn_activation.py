"""An Elman RNN's activation through every foreign layout: raw arrays take the caller's,
sources that record one must agree with it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU, NumpyRNN
from numpyrnn.spec import RNNSpec

from ..conftest import make_blocks

SPEC = RNNSpec("RNN_RELU", 3, 5, num_layers=2, bidirectional=True, bias=True)
EXPORTS = {
    "keras": lambda m: m.to_keras(),
    "onnx": lambda m: m.to_onnx(),
    "flax": lambda m: m.to_flax(),
    "tf1": lambda m: m.to_tf1(forget_bias=0.0),
}


@pytest.fixture(scope="module")
def relu_rnn():
    a = make_blocks(SPEC, dtype=np.float64)
    a.pop("proj")
    return NumpyRNN.from_numpy(**a, nonlinearity="relu", dtype=torch.float64)


def _load(name, source, **kw):
    fn = getattr(NumpyRNN, f"from_{name}")
    extra = {"forget_bias": 0.0} if name == "tf1" else {}
    return fn(source, dtype=torch.float64, batch_first=False, **extra, **kw)


@pytest.mark.parametrize("name", list(EXPORTS))
def test_raw_arrays_take_the_requested_activation(relu_rnn, name):
    exported = EXPORTS[name](relu_rnn)
    back = _load(name, exported, nonlinearity="relu")
    assert back.nonlinearity == "relu" and back.mode == "RNN_RELU"
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], relu_rnn(x)[0], rtol=1e-12, atol=1e-12)
    assert _load(name, exported).nonlinearity == "tanh"  # nothing recorded, nothing asked: torch's default


@pytest.mark.parametrize("name", list(EXPORTS))
def test_nonlinearity_is_refused_for_gated_cells(name):
    with pytest.raises(TypeError, match="nonlinearity= applies to NumpyRNN only; NumpyGRU has fixed activations"):
        getattr(NumpyGRU, f"from_{name}")([], nonlinearity="relu")


def test_bad_nonlinearity_value(relu_rnn):
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        NumpyRNN.from_onnx(relu_rnn.to_onnx(), nonlinearity="gelu")


def test_keras_layer_that_records_relu_conflicts_with_tanh():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="keras not installed: pip install \"numpyrnn[interop]\"")
    layer = keras.layers.SimpleRNN(4, activation="relu")
    layer.build((None, None, 3))
    assert NumpyRNN.from_keras(layer).nonlinearity == "relu"
    assert NumpyRNN.from_keras(layer, nonlinearity="relu").nonlinearity == "relu"
    with pytest.raises(LayoutError, match=r"the source computes RNN\(input=3, hidden=4, .*relu\), but "
                                          r"nonlinearity='tanh' was asked for"):
        NumpyRNN.from_keras(layer, nonlinearity="tanh")
