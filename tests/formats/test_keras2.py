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


# --------------------------------------------------------------------------------------
# the same files through numpyrnn.load_all, inspect and convert
# --------------------------------------------------------------------------------------

CUDNN = ["cudnnlstm", "cudnngru", "bi_cudnnlstm", "bi_cudnngru"]


def _reference(module, x):
    """numpyrnn.reference's forward pass on the module's block arrays (batch-first ``x``)."""
    from numpyrnn import reference

    arrays = module.to_numpy()
    fn = reference.lstm if module.mode == "LSTM" else reference.gru
    return fn(x.astype(np.float64), **{k: v.astype(np.float64) for k, v in arrays.items() if v is not None},
              batch_first=True)[0]


@pytest.mark.parametrize("case", CUDNN)
def test_cudnn_files_through_load_all(case, tmp_path):
    import numpyrnn
    from numpyrnn.cli import main

    mods = numpyrnn.load_all(DATA / f"{case}.h5")
    class_name, _, arrays, bidi = layer_of(DATA / f"{case}.h5")
    assert list(mods) == (["bidirectional"] if bidi else [class_name.lower().replace("cudnn", "cu_dnn")])
    module = next(iter(mods.values()))
    assert module.batch_first and module.bidirectional == bidi
    assert module.mode == ("LSTM" if class_name == "CuDNNLSTM" else "GRU")
    data = np.load(DATA / f"{case}.npz")
    with torch.no_grad():
        y = module(torch.from_numpy(data["x"]))[0].numpy()
    np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-5)  # tf_keras's plain layer, same weights
    np.testing.assert_allclose(y, _reference(module, data["x"]), rtol=0, atol=1e-5)
    G, H = (4, 4) if class_name == "CuDNNLSTM" else (3, 4)
    order = [0, 1, 2, 3] if G == 4 else [1, 0, 2]  # Keras i, f, c, o is torch's i, f, g, o; z, r, h -> r, z, n
    for d, suffix in enumerate(("", "_reverse") if bidi else ("",)):
        b = arrays[3 * d + 2]  # the flat bias: input half to bias_ih, recurrent half to bias_hh
        for half, param in ((b[:G * H], "bias_ih"), (b[G * H:], "bias_hh")):
            torch_order = np.concatenate([half[g * H:(g + 1) * H] for g in order])
            np.testing.assert_array_equal(getattr(module, f"{param}_l0{suffix}").detach().numpy(), torch_order)
    assert main(["convert", str(DATA / f"{case}.h5"), "-o", str(tmp_path / "out.safetensors")]) == 0
    back = numpyrnn.load(tmp_path / "out.safetensors")
    for k, v in module.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_cudnn_in_a_weights_only_file(tmp_path):
    """A Keras 2 ``save_weights("w.h5")`` file records no config: the flat bias says cuDNN."""
    import numpyrnn

    _, _, arrays, _ = layer_of(DATA / "cudnnlstm.h5")
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.attrs["layer_names"] = np.array([b"cu_dnnlstm"])
        f.attrs["keras_version"] = b"2.2.4"
        g = f.create_group("cu_dnnlstm")
        names = [b"cu_dnnlstm/kernel:0", b"cu_dnnlstm/recurrent_kernel:0", b"cu_dnnlstm/bias:0"]
        g.attrs["weight_names"] = np.array(names)
        for n, a in zip(names, arrays):
            g.create_dataset(n.decode(), data=a)
    mf = numpyrnn.read_model(tmp_path / "w.h5")
    assert mf.names() == ["cu_dnnlstm"] and not mf.problems
    assert any("flat bias of 32 values (input half, then recurrent half) is a Keras 2 CuDNNLSTM's" in n
               for n in mf.notes)
    module = numpyrnn.load(tmp_path / "w.h5")
    data = np.load(DATA / "cudnnlstm.npz")
    with torch.no_grad():
        y = module(torch.from_numpy(data["x"]))[0].numpy()
    np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-5)


def test_cudnn_stack_is_one_module(tmp_path):
    """Two CuDNNLSTM layers, the lower returning sequences into the upper: one 2-layer module."""
    import numpyrnn

    rng = np.random.default_rng(9)
    I, H = 3, 4
    layers = []
    for k in range(2):
        layers.append([rng.uniform(-0.6, 0.6, s).astype(np.float32) for s in ((I if k == 0 else H, 16), (H, 16), (32,))])
    model = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "CuDNNLSTM", "config": {"name": f"cu_dnnlstm_{k}", "units": H, "return_sequences": True}}
        for k in range(2)]}}
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["model_config"] = json.dumps(model).encode()
        g = f.create_group("model_weights")
        for k, ws in enumerate(layers):
            lg = g.create_group(f"cu_dnnlstm_{k}")
            names = [f"cu_dnnlstm_{k}/{n}:0" for n in ("kernel", "recurrent_kernel", "bias")]
            lg.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, a in zip(names, ws):
                lg.create_dataset(n, data=a)
    mods = numpyrnn.load_all(tmp_path / "m.h5")
    assert list(mods) == ["cu_dnnlstm_0"] and mods["cu_dnnlstm_0"].num_layers == 2
    module = mods["cu_dnnlstm_0"]
    for k, ws in enumerate(layers):
        np.testing.assert_array_equal(getattr(module, f"bias_hh_l{k}").detach().numpy(), ws[2][16:])
    x = rng.standard_normal((2, 5, I)).astype(np.float32)
    one = [keras2.build_cudnn("CuDNNLSTM", ws) for ws in layers]
    with torch.no_grad():
        want = one[1](one[0](torch.from_numpy(x))[0])[0].numpy()
        np.testing.assert_allclose(module(torch.from_numpy(x))[0].numpy(), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(want, _reference(module, x), rtol=0, atol=1e-5)


def test_hard_sigmoid_file_refused_through_load_with_its_reason():
    import numpyrnn

    with pytest.raises(LayoutError, match=r"layer 'lstm': recurrent_activation='hard_sigmoid'; nn\.LSTM uses sigmoid "
                                          r"\(Keras 2's hard_sigmoid is clip\(0\.2 \* x \+ 0\.5, 0, 1\)"):
        numpyrnn.load_all(DATA / "lstm_hard_sigmoid.h5")
