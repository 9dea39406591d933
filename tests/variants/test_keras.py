"""Keras layers torch cannot compute, loaded with variants=True, against real Keras (torch backend)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, variants
from numpyrnn.variants import Directions, PeepholeLSTM, ResetAfterGRU, ResetBeforeGRU, VariantWarning

if os.environ.get("KERAS_BACKEND", "torch") != "torch":
    pytest.skip("these tests run Keras on its torch backend (KERAS_BACKEND=torch)", allow_module_level=True)
os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras", reason="needs the interop extra (keras)")
# Keras's own variables warn about numpy 2's copy keyword; nothing of numpyrnn's
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

I, H, T, N = 3, 4, 5, 2
CLASS = {"GRU": NumpyGRU, "LSTM": NumpyLSTM}


def _layer(cell, *, bidirectional=False, merge_mode="concat", **kw):
    layer = getattr(keras.layers, cell)(H, return_sequences=True, **kw)
    return keras.layers.Bidirectional(layer, merge_mode=merge_mode) if bidirectional else layer


def _randomize(layers, seed):
    rng = np.random.default_rng(seed)
    for layer in layers:
        layer.set_weights([rng.uniform(-0.7, 0.7, w.shape).astype(np.float32) for w in layer.get_weights()])


def _run_keras(layers, x):
    y = x
    for layer in layers:
        y = layer(y)
    if isinstance(y, (list, tuple)):
        return [keras.ops.convert_to_numpy(a) for a in y]
    return keras.ops.convert_to_numpy(y)


def _build(layers, x):
    _run_keras(layers, x)  # builds the layers
    _randomize(layers, seed=len(layers))


def _load(cls, source):
    with pytest.warns(VariantWarning, match=r"from_keras: built .*numpyrnn.variants"):
        return cls.from_keras(source, variants=True)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).standard_normal((N, T, I)).astype(np.float32)


GRU_CASES = [dict(reset_after=False), dict(reset_after=False, recurrent_activation="hard_sigmoid"),
             dict(reset_after=True, recurrent_activation="hard_sigmoid"),
             dict(reset_after=False, use_bias=False), dict(reset_after=False, activation="relu")]
LSTM_CASES = [dict(recurrent_activation="hard_sigmoid"), dict(recurrent_activation="hard_sigmoid", use_bias=False),
              dict(activation="relu")]
CASES = [("GRU", c) for c in GRU_CASES] + [("LSTM", c) for c in LSTM_CASES]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell,kw", CASES, ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={w}" for k, w in v.items()))
def test_matches_keras_and_round_trips(cell, kw, bidirectional, layers, x):
    stack = [_layer(cell, bidirectional=bidirectional, **kw) for _ in range(layers)]
    _build(stack, x)
    want = _run_keras(stack, x)
    m = _load(CLASS[cell], stack if layers > 1 else stack[0])
    expected = {("GRU", False): ResetBeforeGRU, ("GRU", True): ResetAfterGRU}.get((cell, kw.get("reset_after")), PeepholeLSTM)
    assert type(m) is expected
    assert m.num_layers == layers and m.bidirectional == bidirectional
    with torch.no_grad():
        got = m(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # export: fresh Keras layers built from the config compute the same
    weights, config = variants.to_keras(m)
    again = [_layer(cell, bidirectional=bidirectional, use_bias=kw.get("use_bias", True), **config)
             for _ in range(layers)]
    _run_keras(again, x)
    for layer, w in zip(again, weights):
        layer.set_weights(w)
    np.testing.assert_allclose(_run_keras(again, x), want, rtol=0, atol=1e-5)
    for layer, mine in zip(stack, weights):
        for a, b in zip(layer.get_weights(), mine):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-7 if "reset_after" not in kw or kw["reset_after"] else 0)


def test_keras3_hard_sigmoid_is_x_over_6(x):
    layer = _layer("GRU", recurrent_activation="hard_sigmoid", reset_after=False)
    _build([layer], x)
    m = _load(NumpyGRU, layer)
    assert m.recurrent_activation == "hard_sigmoid_keras3"
    other = ResetBeforeGRU(I, H, batch_first=True, recurrent_activation="hard_sigmoid")
    other.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert np.abs(other(torch.from_numpy(x))[0].numpy() - _run_keras([layer], x)).max() > 1e-4


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave", None])
@pytest.mark.parametrize("cell,kw", [("GRU", {}), ("GRU", dict(reset_after=False)), ("LSTM", {})])
@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_merge_modes(cell, kw, merge_mode, layers, x):
    stack = [_layer(cell, bidirectional=True, **kw) for _ in range(layers - 1)]
    stack.append(_layer(cell, bidirectional=True, merge_mode=merge_mode, **kw))
    _build(stack, x)
    want = _run_keras(stack, x)
    m = _load(CLASS[cell], stack if layers > 1 else stack[0])
    assert isinstance(m, Directions) and m.merge_mode == merge_mode
    with torch.no_grad():
        got = m(torch.from_numpy(x))[0]
    if merge_mode is None:
        assert isinstance(got, tuple) and len(got) == 2
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=1e-5)
    else:
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5)
    weights, config = variants.to_keras(m)
    assert config["merge_mode"] == merge_mode


def test_merge_mode_below_the_top_is_refused(x):
    stack = [_layer("GRU", bidirectional=True, merge_mode="sum"), _layer("GRU", bidirectional=True)]
    _build(stack, x)
    with pytest.raises(LayoutError, match=r"source\[0\]: merge_mode='sum' below the top layer"):
        NumpyGRU.from_keras(stack, variants=True)


@pytest.mark.parametrize("cell,kw", [("GRU", {}), ("GRU", dict(reset_after=False)), ("LSTM", {})])
def test_go_backwards_lone_layer(cell, kw, x):
    layer = _layer(cell, go_backwards=True, **kw)
    _build([layer], x)
    want = _run_keras([layer], x)
    m = _load(CLASS[cell], layer)
    assert isinstance(m, Directions) and m.time == "go_backwards"
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x))[0].numpy(), want, rtol=0, atol=1e-5)
    assert variants.to_keras(m)[1]["go_backwards"] is True


def test_go_backwards_in_a_stack_is_refused(x):
    stack = [_layer("GRU", go_backwards=True), _layer("GRU", go_backwards=True)]
    _build(stack, x)
    with pytest.raises(LayoutError, match="go_backwards=True in a stack"):
        NumpyGRU.from_keras(stack, variants=True)


def test_mixed_stack_is_refused(x):
    stack = [_layer("GRU", reset_after=False), _layer("GRU")]
    _build(stack, x)
    with pytest.raises(LayoutError, match=r"reset_after is not the same in every layer \(source\[0\]: False; 2 layers"):
        NumpyGRU.from_keras(stack, variants=True)


@pytest.mark.parametrize("kw,match", [
    (dict(reset_after=False), "reset_after=False cannot be loaded into torch"),
    (dict(recurrent_activation="hard_sigmoid"), "recurrent_activation=hard_sigmoid cannot be loaded"),
    (dict(go_backwards=True), "go_backwards=True cannot be loaded"),
])
def test_refused_by_default(kw, match, x):
    layer = _layer("GRU", **kw)
    _build([layer], x)
    with pytest.raises(LayoutError, match=match):
        NumpyGRU.from_keras(layer)


def test_plain_layer_with_variants_is_a_plain_module(x):
    layer = _layer("GRU")
    _build([layer], x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VariantWarning)
        m = NumpyGRU.from_keras(layer, variants=True)
    assert type(m) is NumpyGRU


def test_raw_get_weights_with_a_reset_before_bias(x):
    layer = _layer("GRU", reset_after=False)
    _build([layer], x)
    with pytest.raises(LayoutError, match=r"a GRU bias of shape \(3\*units,\)"):
        NumpyGRU.from_keras(layer.get_weights())
    m = _load(NumpyGRU, layer.get_weights())
    assert type(m) is ResetBeforeGRU
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x))[0].numpy(), _run_keras([layer], x), rtol=0, atol=1e-5)


def test_export_refuses_what_keras_lacks():
    with pytest.raises(LayoutError, match="peepholes=True: Keras recurrent layers have no such option"):
        variants.to_keras(PeepholeLSTM(I, H, peepholes=True))
    with pytest.raises(LayoutError, match="recurrent_activation='hard_sigmoid': Keras 3 has no such activation"):
        variants.to_keras(ResetBeforeGRU(I, H, recurrent_activation="hard_sigmoid"))
