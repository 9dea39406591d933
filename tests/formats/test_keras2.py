"""Keras 2 (tf_keras) weights: CuDNN layers' flat bias, reset_after GRUs and refused defaults, against tf_keras's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU
from numpyrnn.formats import keras2

h5py = pytest.importorskip("h5py", reason="h5py is not installed: pip install numpyrnn[interop]")

DATA = Path(__file__).resolve().parent.parent / "data" / "keras2_files"


def layer_of(path: Path) -> tuple[str, dict, list[np.ndarray], bool]:
    """(class name, config, arrays in weight_names order, bidirectional) of the file's one recurrent layer."""
    with h5py.File(path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        layer = next(x for x in layers if x["class_name"] != "InputLayer")
        bidi = layer["class_name"] == "Bidirectional"
        inner = layer["config"]["layer"] if bidi else layer
        g = f["model_weights"][layer["config"]["name"]]
        arrays = [np.asarray(g[n.decode() if isinstance(n, bytes) else n]) for n in g.attrs["weight_names"]]
    return inner["class_name"], inner["config"], arrays, bidi


@pytest.mark.parametrize("case", ["cudnnlstm", "cudnngru", "bi_cudnnlstm", "bi_cudnngru"])
def test_cudnn_layers_match_tf_keras(case):
    class_name, config, arrays, _ = layer_of(DATA / f"{case}.h5")
    keras2.check_config(class_name, config)
    module = keras2.build_cudnn(class_name, arrays, where=case)
    data = np.load(DATA / f"{case}.npz")
    with torch.no_grad():
        y = module(torch.from_numpy(data["x"]))[0].numpy()
    np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-5)


def test_cudnn_lstm_keeps_both_biases():
    _, _, (k, rk, b), _ = layer_of(DATA / "cudnnlstm.h5")
    module = keras2.build_cudnn("CuDNNLSTM", [k, rk, b])
    np.testing.assert_array_equal(module.bias_ih_l0.detach().numpy(), b[:16])
    np.testing.assert_array_equal(module.bias_hh_l0.detach().numpy(), b[16:])


def test_cudnn_gru_bias_is_reset_after_bias():
    _, _, (k, rk, b), _ = layer_of(DATA / "cudnngru.h5")
    (_, _, b2), rec = keras2.cudnn_weights("CuDNNGRU", [k, rk, b])
    assert b2.shape == (2, 12) and rec == []
    np.testing.assert_array_equal(b2.ravel(), b)


def test_reset_after_gru_h5_matches_tf_keras():
    class_name, config, arrays, _ = layer_of(DATA / "gru_reset_after.h5")
    keras2.check_config(class_name, config)
    assert arrays[2].shape == (2, 12)
    module = NumpyGRU.from_keras(arrays)
    data = np.load(DATA / "gru_reset_after.npz")
    with torch.no_grad():
        y = module(torch.from_numpy(data["x"]))[0].numpy()
    np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-5)


def test_hard_sigmoid_is_refused_with_reason():
    class_name, config, _, _ = layer_of(DATA / "lstm_hard_sigmoid.h5")
    with pytest.raises(LayoutError, match=r"lstm_hard_sigmoid: LSTM\(recurrent_activation='hard_sigmoid'\) cannot be "
                                          r"loaded into torch: Keras 2's hard_sigmoid is clip\(0.2 \* x \+ 0.5, 0, 1\)"):
        keras2.check_config(class_name, config, where="lstm_hard_sigmoid")


@pytest.mark.parametrize("config, match", [
    ({"recurrent_activation": "sigmoid", "activation": "relu"}, r"activation='relu'.*computes relu"),
    ({"recurrent_activation": "linear"}, r"recurrent_activation='linear'"),
    ({}, r"hard_sigmoid"),  # Keras 2's default when a config omits it
])
def test_other_activations_refused(config, match):
    with pytest.raises(LayoutError, match=match):
        keras2.check_config("LSTM", config)


def test_gru_reset_after_false_refused():
    with pytest.raises(LayoutError, match=r"GRU\(reset_after=False\) cannot be loaded into torch"):
        keras2.check_config("GRU", {"recurrent_activation": "sigmoid", "reset_after": False})


@pytest.mark.parametrize("weights, match", [
    ([np.zeros((3, 16)), np.zeros((4, 16)), np.zeros((16,))], r"\[2\] \(bias\): expected the flat \(8\*units=32,\) bias"),
    ([np.zeros((3, 12)), np.zeros((4, 16)), np.zeros((32,))], r"\[0\] \(kernel\): expected \(input, 4\*units=16\)"),
    ([np.zeros((3, 16)), np.zeros((4, 12)), np.zeros((32,))], r"\[1\] \(recurrent_kernel\): expected \(units, 4\*units\)"),
    ([np.zeros((3, 16))] * 2, r"2 arrays; a CuDNNLSTM has 3"),
])
def test_cudnn_shapes_checked(weights, match):
    with pytest.raises(LayoutError, match=match):
        keras2.cudnn_weights("CuDNNLSTM", weights, where="cu_dnnlstm")


def test_not_a_cudnn_layer():
    with pytest.raises(LayoutError, match=r"'LSTM' is not a Keras 2 cuDNN layer"):
        keras2.cudnn_weights("LSTM", [])
