"""Whole Keras models in, named modules out, each checked against the Keras sub-model ending at its layer.

Every model here is built with real Keras (torch backend), its weights and
biases randomised, saved in each file format Keras writes (``.keras``,
``.h5``), read back by numpyrnn without Keras, and every module numpyrnn
returns is run on the input Keras gives its bottom layer and compared with
the output of its top layer.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    "ignore:You are saving your model as an HDF5 file:UserWarning",
)

T, N = 6, 2


def _randomise(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(w.dtype) for w in ws])


def _x(model, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = [N if d is None else d for d in t.shape]
        if "int" in str(t.dtype):
            out.append(rng.integers(0, 7, shape).astype(np.int32))
        else:
            out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def _np(t) -> np.ndarray:
    if isinstance(t, (list, tuple)):
        t = t[0]
    return np.asarray(t.detach().cpu() if hasattr(t, "detach") else t)


def check_against_keras(model, modules: dict, names_layers: dict[str, list[str]] | None = None) -> None:
    """Each module's output equals the Keras sub-model ending at its (top) layer, fed what its bottom layer sees."""
    xs = _x(model)
    feed = xs if len(xs) > 1 else xs[0]
    for name, module in modules.items():
        layers = (names_layers or {}).get(name, [name])
        bottom, top = model.get_layer(layers[0]), model.get_layer(layers[-1])
        x_in = _np(keras.Model(model.inputs, bottom.input)(feed))
        want = _np(keras.Model(model.inputs, top.output)(feed))
        with torch.no_grad():
            y, h = module(torch.from_numpy(x_in))
        got = y.numpy()
        if want.ndim == 2:  # return_sequences=False: the final state of each direction of the top layer
            h = h[0] if isinstance(h, tuple) else h
            D = 2 if module.bidirectional else 1
            got = torch.cat(list(h[-D:]), dim=-1).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5, err_msg=name)


def _save_all(model, tmp_path) -> list:
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    return [tmp_path / "m.keras", tmp_path / "m.h5"]


def _lstm_dense_lstm(kind: str):
    if kind == "sequential":
        return keras.Sequential([keras.Input((T, 3)), keras.layers.LSTM(4, return_sequences=True, name="low"),
                                 keras.layers.Dense(4, name="mid"), keras.layers.LSTM(4, name="high")])
    x = keras.Input((T, 3))
    y = keras.layers.LSTM(4, return_sequences=True, name="low")(x)
    y = keras.layers.Dense(4, name="mid")(y)
    return keras.Model(x, keras.layers.LSTM(4, return_sequences=True, name="high")(y))


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_a_dense_between_two_lstms_keeps_them_apart(tmp_path, kind):
    model = _lstm_dense_lstm(kind)
    _randomise(model)
    for path in _save_all(model, tmp_path):
        mf = numpyrnn.read_model(path)
        assert mf.names() == ["low", "high"], path
        assert ("mid", "Dense") in mf.skipped and not mf.problems
        modules = numpyrnn.load_all(path)
        assert all(type(m) is NumpyLSTM and m.num_layers == 1 and m.batch_first for m in modules.values())
        check_against_keras(model, modules)


def test_two_lstms_side_by_side_are_two_modules(tmp_path):
    x = keras.Input((T, 3))
    a = keras.layers.LSTM(4, return_sequences=True, name="left")(x)
    b = keras.layers.LSTM(4, return_sequences=True, name="right")(x)
    model = keras.Model(x, keras.layers.Concatenate(name="join")([a, b]))
    _randomise(model)
    for path in _save_all(model, tmp_path):
        modules = numpyrnn.load_all(path)
        assert list(modules) == ["left", "right"]
        check_against_keras(model, modules)
        assert ("join", "Concatenate") in numpyrnn.read_model(path).skipped


def test_two_lstms_where_the_lower_one_feeds_two_layers_are_not_stacked(tmp_path):
    x = keras.Input((T, 3))
    a = keras.layers.LSTM(4, return_sequences=True, name="low")(x)
    b = keras.layers.LSTM(4, return_sequences=True, name="high")(a)
    model = keras.Model(x, keras.layers.Concatenate()([a, b]))
    _randomise(model)
    model.save(tmp_path / "m.keras")
    modules = numpyrnn.load_all(tmp_path / "m.keras")
    assert list(modules) == ["low", "high"]
    check_against_keras(model, modules)


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_a_bidirectional_gru_under_an_lstm(tmp_path, kind):
    if kind == "sequential":
        model = keras.Sequential([keras.Input((T, 3)),
                                  keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True), name="bigru"),
                                  keras.layers.LSTM(5, name="lstm_top")])
    else:
        x = keras.Input((T, 3))
        y = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True), name="bigru")(x)
        model = keras.Model(x, keras.layers.LSTM(5, return_sequences=True, name="lstm_top")(y))
    _randomise(model)
    for path in _save_all(model, tmp_path):
        modules = numpyrnn.load_all(path)
        assert list(modules) == ["bigru", "lstm_top"]
        assert type(modules["bigru"]) is NumpyGRU and modules["bigru"].bidirectional
        assert type(modules["lstm_top"]) is NumpyLSTM and modules["lstm_top"].input_size == 8
        check_against_keras(model, modules)
        # one layer by name; the other's cell is no obstacle
        assert type(numpyrnn.load(path, layer="lstm_top")) is NumpyLSTM
        with pytest.raises(LayoutError, match=r"m\.(keras|h5): holds 2 recurrent module\(s\) \('bigru', 'lstm_top'\); "
                                              r"pick one with layer='bigru', or take them all with load_all\(path\)"):
            numpyrnn.load(path)
        with pytest.raises(LayoutError, match=r"the file records a GRU cell \(layer 'bigru'\), but cell='lstm' was "
                                              r"given; drop cell=\.\.\. \(the file says its cell\)"):
            numpyrnn.load(path, layer="lstm_top", cell="lstm")


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_a_true_two_layer_bidirectional_stack_is_one_module(tmp_path, kind):
    def bi(name, seqs=True):
        return keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=seqs), name=name)

    if kind == "sequential":
        model = keras.Sequential([keras.Input((T, 3)), bi("b0"), bi("b1", False)])
    else:
        x = keras.Input((T, 3))
        model = keras.Model(x, bi("b1")(bi("b0")(x)))
    _randomise(model)
    for path in _save_all(model, tmp_path):
        mf = numpyrnn.read_model(path)
        assert mf.names() == ["b0"] and mf.modules[0].config["layers"] == ["b0", "b1"]
        (module,) = numpyrnn.load_all(path).values()
        assert module.num_layers == 2 and module.bidirectional and module.batch_first
        check_against_keras(model, {"b0": module}, {"b0": ["b0", "b1"]})
        with pytest.raises(LayoutError, match=r"layer 'b1' is part of the stacked module 'b0' \(layers b0, b1\)"):
            numpyrnn.load(path, layer="b1")


def test_layers_of_different_sizes_or_options_are_not_stacked(tmp_path):
    model = keras.Sequential([keras.Input((T, 3)), keras.layers.GRU(4, return_sequences=True, name="g4"),
                              keras.layers.GRU(5, return_sequences=True, name="g5"),
                              keras.layers.GRU(5, return_sequences=True, use_bias=False, name="g5nb")])
    _randomise(model)
    model.save(tmp_path / "m.keras")
    modules = numpyrnn.load_all(tmp_path / "m.keras")
    assert list(modules) == ["g4", "g5", "g5nb"]
    check_against_keras(model, modules)


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_an_embedding_before_an_rnn(tmp_path, kind):
    if kind == "sequential":
        model = keras.Sequential([keras.Input((T,), dtype="int32"), keras.layers.Embedding(7, 3, name="emb"),
                                  keras.layers.SimpleRNN(4, activation="relu", return_sequences=True, name="rnn")])
    else:
        x = keras.Input((T,), dtype="int32")
        y = keras.layers.Embedding(7, 3, name="emb")(x)
        model = keras.Model(x, keras.layers.SimpleRNN(4, activation="relu", return_sequences=True, name="rnn")(y))
    _randomise(model)
    for path in _save_all(model, tmp_path):
        mf = numpyrnn.read_model(path)
        assert mf.names() == ["rnn"] and ("emb", "Embedding") in mf.skipped
        module = numpyrnn.load(path)
        assert module.nonlinearity == "relu"
        check_against_keras(model, {"rnn": module})


def test_an_encoder_decoder_with_initial_state(tmp_path):
    enc_in, dec_in = keras.Input((T, 3), name="source"), keras.Input((T, 2), name="target")
    _, h, c = keras.layers.LSTM(4, return_state=True, name="encoder")(enc_in)
    y = keras.layers.LSTM(4, return_sequences=True, name="decoder")(dec_in, initial_state=[h, c])
    model = keras.Model([enc_in, dec_in], keras.layers.Dense(5, name="out")(y))
    _randomise(model)
    model.save(tmp_path / "m.keras")
    mods = numpyrnn.load_all(tmp_path / "m.keras")
    assert list(mods) == ["encoder", "decoder"]
    xs = _x(model)
    want = _np(keras.Model(model.inputs, model.get_layer("decoder").output)(xs))
    with torch.no_grad():
        _, (h_n, c_n) = mods["encoder"](torch.from_numpy(xs[0]))
        got = mods["decoder"](torch.from_numpy(xs[1]), (h_n, c_n))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_refused_layers_are_problems_and_the_others_still_load(tmp_path):
    model = keras.Sequential([keras.Input((T, 3)), keras.layers.LSTM(4, return_sequences=True, name="ok"),
                              keras.layers.GRU(3, reset_after=False, name="old_gru")])
    _randomise(model)
    model.save(tmp_path / "m.keras")
    mf = numpyrnn.read_model(tmp_path / "m.keras")
    assert mf.names() == ["ok"]
    assert mf.problems and "layer 'old_gru': reset_after=False" in mf.problems[0]
    with pytest.raises(LayoutError, match=r"m\.keras: layer 'old_gru': reset_after=False.*pick them with layer='ok'"):
        numpyrnn.load_all(tmp_path / "m.keras")
    with pytest.raises(LayoutError, match=r"layer 'old_gru' is not converted: layer 'old_gru': reset_after=False"):
        numpyrnn.load(tmp_path / "m.keras", layer="old_gru")
    check_against_keras(model, {"ok": numpyrnn.load(tmp_path / "m.keras", layer="ok")})


def test_weights_h5_without_config_says_what_it_cannot_prove(tmp_path):
    model = _lstm_dense_lstm("sequential")
    _randomise(model)
    model.save_weights(tmp_path / "m.weights.h5")
    mf = numpyrnn.read_model(tmp_path / "m.weights.h5")
    assert mf.names() == ["lstm", "lstm_1"]  # the file's group names, never stacked
    assert ("dense", "layer with weights (not recurrent)") in mf.skipped
    (note,) = mf.notes
    assert "no model config" in note and "no layers are stacked" in note and "tanh and sigmoid" in note
    mods = numpyrnn.load_all(tmp_path / "m.weights.h5")
    check_against_keras(model, {"low": mods["lstm"], "high": mods["lstm_1"]})


def test_a_nested_model_is_a_problem_not_a_guess(tmp_path):
    inner = keras.Sequential([keras.Input((T, 3)), keras.layers.LSTM(4, return_sequences=True)], name="inner")
    x = keras.Input((T, 3))
    model = keras.Model(x, keras.layers.GRU(2, name="g")(inner(x)))
    model.save(tmp_path / "m.keras")
    mf = numpyrnn.read_model(tmp_path / "m.keras")
    assert mf.names() == ["g"]
    assert any("layer 'inner': a nested Sequential model" in p for p in mf.problems)
