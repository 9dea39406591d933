"""Full-model HDF5 files written by Keras 2 (tf_keras): layers and graph from ``model_config``.

The committed files in ``tests/data`` were written by tf_keras with
``tests/data/make_tf_keras_files.py``, together with the outputs tf_keras
computed for each recurrent layer, so these tests need neither TensorFlow nor
tf_keras. Where tf_keras is importable, the last test also builds, saves and
compares a model directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import NumpyGRU, NumpyLSTM

pytest.importorskip("h5py")

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def io():
    return dict(np.load(DATA / "tf_keras_io.npz", allow_pickle=False))


def _run(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x))[0].numpy()


def test_keras2_sequential_with_a_dense_between_two_lstms(io):
    path = DATA / "k2_sequential.h5"
    mf = numpyrnn.read_model(path)
    assert mf.format == "keras" and mf.names() == ["low", "high"]
    assert ("mid", "Dense") in mf.skipped and not mf.problems
    assert any("Keras 2." in n for n in mf.notes)
    for name, module in numpyrnn.load_all(path).items():
        assert type(module) is NumpyLSTM and module.num_layers == 1 and module.batch_first
        got = _run(module, io[f"k2_sequential/{name}/input"])
        np.testing.assert_allclose(got, io[f"k2_sequential/{name}/output"], rtol=0, atol=2e-5, err_msg=name)


def test_keras2_functional_bidirectional_gru_under_a_proven_lstm_stack(io):
    path = DATA / "k2_functional.h5"
    mf = numpyrnn.read_model(path)
    assert mf.names() == ["bigru", "lstm_a"]
    assert mf.entry("lstm_a").config["layers"] == ["lstm_a", "lstm_b"]
    mods = numpyrnn.load_all(path)
    assert type(mods["bigru"]) is NumpyGRU and mods["bigru"].bidirectional
    assert type(mods["lstm_a"]) is NumpyLSTM and mods["lstm_a"].num_layers == 2
    np.testing.assert_allclose(_run(mods["bigru"], io["k2_functional/bigru/input"]), io["k2_functional/bigru/output"],
                               rtol=0, atol=2e-5)
    np.testing.assert_allclose(_run(mods["lstm_a"], io["k2_functional/lstm_a/input"]),
                               io["k2_functional/lstm_b/output"], rtol=0, atol=2e-5)


def test_keras2_files_convert_and_load_back(tmp_path, io):
    from numpyrnn.cli import main

    assert main(["convert", str(DATA / "k2_functional.h5"), "-o", str(tmp_path / "m.safetensors")]) == 0
    back = numpyrnn.load_all(tmp_path / "m.safetensors")
    assert list(back) == ["bigru", "lstm_a"] and all(m.batch_first for m in back.values())
    np.testing.assert_allclose(_run(back["lstm_a"], io["k2_functional/lstm_a/input"]),
                               io["k2_functional/lstm_b/output"], rtol=0, atol=2e-5)


def test_directly_against_tf_keras(tmp_path):
    keras = pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) is an optional test dependency")
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((5, 3)),
                              keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="b0"),
                              keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="b1"),
                              keras.layers.SimpleRNN(3, activation="relu", return_sequences=True, name="r")])
    for layer in model.layers:
        layer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(w.dtype) for w in layer.get_weights()])
    model.save(tmp_path / "m.h5")
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    mods = numpyrnn.load_all(tmp_path / "m.h5")
    assert list(mods) == ["b0", "r"] and mods["b0"].num_layers == 2 and mods["r"].nonlinearity == "relu"
    mid = keras.Model(model.inputs, model.get_layer("b1").output)(x).numpy()
    np.testing.assert_allclose(_run(mods["b0"], x), mid, rtol=0, atol=2e-5)
    np.testing.assert_allclose(_run(mods["r"], mid), model(x).numpy(), rtol=0, atol=2e-5)
