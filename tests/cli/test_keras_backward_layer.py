"""A ``.keras`` file's ``Bidirectional(backward_layer=...)``: checked as the forward layer is, and against it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, files

from .conftest import run_cli

T, I, H = 5, 3, 4


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("h5py", reason="the keras extra (h5py)")
    return pytest.importorskip("keras", reason="the keras extra")


def _model(keras, cell: str, back: dict, fwd: dict | None = None):
    layer = getattr(keras.layers, cell)
    bidi = keras.layers.Bidirectional(layer(H, return_sequences=True, **(fwd or {})),
                                      backward_layer=layer(H, **{"return_sequences": True, "go_backwards": True, **back}))
    return keras.Sequential([keras.Input((T, I)), bidi])


REFUSED = [
    ("GRU", dict(activation="relu", recurrent_activation="hard_sigmoid"),
     r"layer 'bidirectional(_\d+)?\.backward_layer': activation='relu'; nn\.GRU uses tanh"),
    ("GRU", dict(recurrent_activation="hard_sigmoid"),
     r"layer 'bidirectional(_\d+)?\.backward_layer': recurrent_activation='hard_sigmoid'; nn\.GRU uses sigmoid"),
    ("GRU", dict(reset_after=False), r"layer 'bidirectional(_\d+)?\.backward_layer': reset_after=False"),
    ("GRU", dict(use_bias=False), r"backward_layer has use_bias=False, the forward layer use_bias=True"),
    ("LSTM", dict(activation="sigmoid"), r"'bidirectional(_\d+)?\.backward_layer': activation='sigmoid'; nn\.LSTM uses tanh"),
    ("LSTM", dict(recurrent_activation="hard_sigmoid"), r"recurrent_activation='hard_sigmoid'; nn\.LSTM uses sigmoid"),
    ("SimpleRNN", dict(activation="relu"), r"backward_layer has activation='relu', the forward layer activation='tanh'"),
    ("SimpleRNN", dict(activation="sigmoid"), r"activation='sigmoid'; nn\.RNN supports 'tanh' and 'relu' only"),
]


@pytest.mark.parametrize(("cell", "back", "message"), REFUSED, ids=[f"{c}-{'-'.join(b)}" for c, b, _ in REFUSED])
def test_backward_layer_settings_torch_cannot_compute_are_refused(tmp_path, keras, cell, back, message):
    _model(keras, cell, back).save(tmp_path / "m.keras")
    with pytest.raises(LayoutError, match=message):
        files.read_keras(tmp_path / "m.keras")
    proc = run_cli("convert", tmp_path / "m.keras", "-o", tmp_path / "o.pt", "--cell",
                   {"SimpleRNN": "rnn"}.get(cell, cell.lower()))
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "o.pt").exists()


def test_backward_layer_with_other_units_is_refused(tmp_path, keras):
    layer = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True),
                                       backward_layer=keras.layers.GRU(H + 1, return_sequences=True, go_backwards=True))
    keras.Sequential([keras.Input((T, I)), layer]).save(tmp_path / "m.keras")
    with pytest.raises(LayoutError, match=r"backward_layer has units=5, the forward layer units=4"):
        files.read_keras(tmp_path / "m.keras")


def test_forward_layer_that_reads_backwards_is_refused(tmp_path, keras):
    _model(keras, "GRU", dict(go_backwards=False), fwd=dict(go_backwards=True)).save(tmp_path / "m.keras")
    with pytest.raises(LayoutError, match=r"go_backwards"):
        files.read_keras(tmp_path / "m.keras")


@pytest.mark.parametrize(("cell", "cls"), [("GRU", NumpyGRU), ("LSTM", NumpyLSTM)])
def test_matching_backward_layer_converts_and_computes_like_keras(tmp_path, keras, cell, cls):
    keras.utils.set_random_seed(0)
    model = _model(keras, cell, {})
    for w in model.weights:  # biases are zero after init: give them values
        w.assign(np.random.default_rng(len(w.path)).standard_normal(tuple(w.shape)).astype(np.float32) * 0.5)
    model.save(tmp_path / "m.keras")
    layers, _ = files.read_keras(tmp_path / "m.keras")
    module = cls.from_keras(layers, batch_first=True)
    x = np.random.default_rng(1).standard_normal((2, T, I)).astype(np.float32)
    want = np.asarray(model(x).detach().cpu() if hasattr(model(x), "detach") else model(x))
    with torch.no_grad():
        got = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
