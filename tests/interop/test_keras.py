"""Keras 3 layers (torch backend) as the oracle for ``from_keras``/``to_keras``.

Every case builds real Keras layers, randomises every weight and bias (Keras
initialises biases to zero, which would hide bias bugs), runs them, imports them
into numpyrnn and compares outputs and final states; then exports with
``to_keras``, loads the result into fresh Keras layers with ``set_weights`` and
compares again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, NumpyRNN

os.environ.setdefault("KERAS_BACKEND", "torch")

ROOT = Path(__file__).resolve().parents[2]
ATOL = 1e-5
N, T, I, H = 2, 5, 3, 4

#: case -> (numpyrnn class, Keras layer name, layer kwargs, torch mode)
CELLS = {
    "GRU": (NumpyGRU, "GRU", {}, "GRU"),
    "LSTM": (NumpyLSTM, "LSTM", {}, "LSTM"),
    "SimpleRNN": (NumpyRNN, "SimpleRNN", {}, "RNN_TANH"),
    "SimpleRNN-relu": (NumpyRNN, "SimpleRNN", {"activation": "relu"}, "RNN_RELU"),
}
#: topology -> (layers, bidirectional)
TOPOLOGIES = {"uni": (1, False), "bi": (1, True), "stack": (2, False), "bistack": (2, True)}

# Keras's torch backend converts with np.array(x) and numpy 2 complains about the copy keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras", reason="keras not installed: pip install \"numpyrnn[interop]\"")


def to_np(keras, t) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(t))


def randomise(layer, rng) -> None:
    """Every weight and bias uniform in [-0.6, 0.6]: nothing left at Keras's zero bias init."""
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in layer.get_weights()])


def make_layers(keras, cell: str, kwargs: dict, layers: int, bidirectional: bool, bias: bool, seed: int):
    """Built, randomised Keras layers: bottom first, each returning sequences and states."""
    rng = np.random.default_rng(seed)
    out, width = [], I
    for _ in range(layers):
        layer = getattr(keras.layers, cell)(H, return_sequences=True, return_state=True, use_bias=bias, **kwargs)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer)
        layer.build((None, None, width))
        randomise(layer, rng)
        out.append(layer)
        width = H * (2 if bidirectional else 1)
    return out


def run_keras(keras, layers, x, bidirectional: bool):
    """Top output and ``{(layer, direction): [h, (c)]}`` final states."""
    states = {}
    y = x
    for k, layer in enumerate(layers):
        res = layer(y)
        y, rest = res[0], [to_np(keras, s) for s in res[1:]]
        per = len(rest) // (2 if bidirectional else 1)
        for d in range(2 if bidirectional else 1):
            states[(k, d)] = rest[d * per:(d + 1) * per]
    return to_np(keras, y), states


def run_torch(module, x: np.ndarray):
    with torch.no_grad():
        y, hn = module(torch.from_numpy(x))
    hn = hn if isinstance(hn, tuple) else (hn,)
    return y.numpy(), [h.numpy() for h in hn]


def assert_matches(module, x, out, states, bidirectional):
    """Torch output and every final state equal Keras's (``h_n`` index = layer*D + direction)."""
    y, hn = run_torch(module, x)
    np.testing.assert_allclose(y, out, atol=ATOL, rtol=0)
    D = 2 if bidirectional else 1
    for (k, d), keras_states in states.items():
        for which, ks in enumerate(keras_states):  # Keras [h, c]; torch (h_n, c_n)
            np.testing.assert_allclose(hn[which][k * D + d], ks, atol=ATOL, rtol=0,
                                       err_msg=f"state {which} of layer {k} direction {d}")


def params(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module", params=[(c, t, b) for c in CELLS for t in TOPOLOGIES for b in (True, False)],
                ids=lambda p: f"{p[0]}-{p[1]}-{'bias' if p[2] else 'nobias'}")
def case(request, keras):
    cell, topology, bias = request.param
    cls, name, kwargs, mode = CELLS[cell]
    L, bidirectional = TOPOLOGIES[topology]
    layers = make_layers(keras, name, kwargs, L, bidirectional, bias, seed=sum(map(ord, f"{cell}{topology}{bias}")))
    x = np.random.default_rng(7).uniform(-1, 1, (N, T, I)).astype(np.float32)
    out, states = run_keras(keras, layers, x, bidirectional)
    source = layers if L > 1 else layers[0]
    return dict(cls=cls, name=name, kwargs=kwargs, mode=mode, L=L, bidirectional=bidirectional, bias=bias,
                layers=layers, source=source, x=x, out=out, states=states, module=cls.from_keras(source))


def test_import_matches_keras(case):
    module = case["module"]
    assert module.mode == case["mode"]
    assert module.num_layers == case["L"] and module.bidirectional == case["bidirectional"]
    assert module.bias == case["bias"] and module.batch_first
    assert all(p.is_contiguous() for p in module.parameters())  # copied, never a transposed view
    assert_matches(module, case["x"], case["out"], case["states"], case["bidirectional"])


def test_raw_arrays_load_the_same_weights(case):
    weights = [layer.get_weights() for layer in case["layers"]]
    raw = weights if case["L"] > 1 else weights[0]
    if case["mode"] == "RNN_RELU":  # get_weights() does not say relu: build the module, load in place
        module = NumpyRNN(I, H, num_layers=case["L"], bidirectional=case["bidirectional"], bias=case["bias"],
                          nonlinearity="relu", batch_first=True)
        from numpyrnn.engine import load_layout
        from numpyrnn.layouts.keras import KERAS
        load_layout(module, KERAS, raw)
    else:
        module = case["cls"].from_keras(raw)
    for k, v in params(case["module"]).items():
        torch.testing.assert_close(params(module)[k], v, rtol=0, atol=0)


def test_export_round_trip_is_exact(case):
    exported = case["module"].to_keras()
    assert len(exported) == case["L"]
    for layer, arrays in zip(case["layers"], exported):
        original = layer.get_weights()
        assert len(arrays) == len(original)
        for a, b in zip(arrays, original):
            np.testing.assert_array_equal(a, b)
    again = case["cls"].from_keras(exported)
    if case["mode"] != "RNN_RELU":  # raw arrays cannot say relu
        for k, v in params(case["module"]).items():
            torch.testing.assert_close(params(again)[k], v, rtol=0, atol=0)


def test_exported_weights_run_in_keras(case, keras):
    fresh = make_layers(keras, case["name"], case["kwargs"], case["L"], case["bidirectional"], case["bias"], seed=99)
    for layer, arrays in zip(fresh, case["module"].to_keras()):
        layer.set_weights(arrays)
    out, states = run_keras(keras, fresh, case["x"], case["bidirectional"])
    np.testing.assert_allclose(out, case["out"], atol=0, rtol=0)
    assert_matches(case["module"], case["x"], out, states, case["bidirectional"])


@pytest.mark.parametrize("cell", ["GRU", "LSTM", "SimpleRNN"])
def test_torch_module_to_keras(cell, keras):
    """A module that did not come from Keras (both torch biases non-zero) exports correctly."""
    cls, name, kwargs, _ = CELLS[cell]
    torch.manual_seed(0)
    module = cls(I, H, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    layers = make_layers(keras, name, kwargs, 2, True, True, seed=3)
    for layer, arrays in zip(layers, module.to_keras()):
        layer.set_weights(arrays)
    x = np.random.default_rng(1).uniform(-1, 1, (N, T, I)).astype(np.float32)
    out, states = run_keras(keras, layers, x, True)
    assert_matches(module, x, out, states, True)


def test_batch_first_false(keras):
    layer = make_layers(keras, "GRU", {}, 1, True, True, seed=5)[0]
    x = np.random.default_rng(2).uniform(-1, 1, (N, T, I)).astype(np.float32)
    out, _ = run_keras(keras, [layer], x, True)
    module = NumpyGRU.from_keras(layer, batch_first=False)
    y, _ = run_torch(module, np.ascontiguousarray(x.transpose(1, 0, 2)))
    np.testing.assert_allclose(y.transpose(1, 0, 2), out, atol=ATOL, rtol=0)


def test_rnn_layer_over_a_cell(keras):
    """``keras.layers.RNN(GRUCell(...))`` is the same computation as ``keras.layers.GRU``."""
    layer = keras.layers.RNN(keras.layers.GRUCell(H), return_sequences=True, return_state=True)
    layer.build((None, None, I))
    randomise(layer, np.random.default_rng(4))
    x = np.random.default_rng(3).uniform(-1, 1, (N, T, I)).astype(np.float32)
    out, states = run_keras(keras, [layer], x, False)
    assert_matches(NumpyGRU.from_keras(layer), x, out, states, False)


def test_no_keras_import_for_raw_arrays():
    """Importing numpyrnn and loading get_weights() arrays never imports Keras (or TF, jax)."""
    code = (
        "import sys, numpy as np\n"
        "import numpyrnn\n"
        "from numpyrnn import NumpyGRU\n"
        "w = [np.ones((3, 12), 'f'), np.ones((4, 12), 'f'), np.ones((2, 12), 'f')]\n"
        "m = NumpyGRU.from_keras(w)\n"
        "m.to_keras()\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('keras', 'tensorflow', 'jax', 'flax'))\n"
        "print('IMPORTED', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------------------
# refusals: what torch cannot compute
# --------------------------------------------------------------------------------------

def built(keras, layer, width=I):
    layer.build((None, None, width))
    return layer


def test_refuses_gru_reset_before(keras):
    layer = built(keras, keras.layers.GRU(H, reset_after=False))
    with pytest.raises(LayoutError, match=r"reset_after=False.*applies the reset gate before the recurrent matmul"):
        NumpyGRU.from_keras(layer)
    # the same arrays without the layer: the (3*units,) bias gives it away
    with pytest.raises(LayoutError, match=r"source\[2\]: a GRU bias of shape \(3\*units,\) = \(12,\).*reset_after=False"):
        NumpyGRU.from_keras(layer.get_weights())


@pytest.mark.parametrize("cell, kwargs, what", [
    ("GRU", {"recurrent_activation": "hard_sigmoid"}, "recurrent_activation=hard_sigmoid"),
    ("GRU", {"activation": "relu"}, "activation=relu"),
    ("LSTM", {"activation": "linear"}, "activation=linear"),
    ("LSTM", {"recurrent_activation": "tanh"}, "recurrent_activation=tanh"),
    ("SimpleRNN", {"activation": "sigmoid"}, "activation=sigmoid"),
])
def test_refuses_activations(keras, cell, kwargs, what):
    cls = CELLS[cell][0]
    layer = built(keras, getattr(keras.layers, cell)(H, **kwargs))
    with pytest.raises(LayoutError, match=rf"source: {what} cannot be loaded into torch: torch computes"):
        cls.from_keras(layer)


def test_refuses_custom_activation_function(keras):
    def tanh(x):  # same name as Keras's, but not Keras's
        return keras.ops.tanh(x)

    layer = built(keras, keras.layers.SimpleRNN(H, activation=tanh))
    with pytest.raises(LayoutError, match=r"activation=tanh \(from .*not a Keras activation\)"):
        NumpyRNN.from_keras(layer)


@pytest.mark.parametrize("cell", ["GRU", "LSTM", "SimpleRNN"])
def test_refuses_go_backwards(keras, cell):
    layer = built(keras, getattr(keras.layers, cell)(H, go_backwards=True))
    with pytest.raises(LayoutError, match=r"source: go_backwards=True cannot be loaded.*reads the sequence backwards"):
        CELLS[cell][0].from_keras(layer)


def test_refuses_go_backwards_inside_a_stack(keras):
    layers = [built(keras, keras.layers.LSTM(H, return_sequences=True)), built(keras, keras.layers.LSTM(H, go_backwards=True), H)]
    with pytest.raises(LayoutError, match=r"source\[1\]: go_backwards=True"):
        NumpyLSTM.from_keras(layers)


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave", None])
def test_refuses_merge_modes(keras, merge_mode):
    layer = built(keras, keras.layers.Bidirectional(keras.layers.GRU(H), merge_mode=merge_mode))
    with pytest.raises(LayoutError, match=rf"Bidirectional\(merge_mode={merge_mode!r}\).*always concatenate"):
        NumpyGRU.from_keras(layer)


def test_refuses_time_major(keras):
    layer = built(keras, keras.layers.GRU(H))
    layer.time_major = True  # Keras 2 layers had it; Keras 3 has no such argument
    with pytest.raises(LayoutError, match=r"time_major=True.*with batch_first=False instead"):
        NumpyGRU.from_keras(layer)


def test_refuses_bidirectional_with_mismatched_backward_layer(keras):
    layer = keras.layers.Bidirectional(keras.layers.GRU(H), backward_layer=keras.layers.GRU(H + 1, go_backwards=True))
    built(keras, layer)
    with pytest.raises(LayoutError, match=r"backward_layer has units=5, forward_layer units=4"):
        NumpyGRU.from_keras(layer)


@pytest.mark.parametrize("cls, cell, other", [
    (NumpyGRU, "LSTM", "NumpyLSTM"), (NumpyLSTM, "GRU", "NumpyGRU"), (NumpyRNN, "LSTM", "NumpyLSTM"),
    (NumpyGRU, "SimpleRNN", "NumpyRNN"),
])
def test_refuses_layers_and_arrays_of_another_cell(keras, cls, cell, other):
    layer = built(keras, getattr(keras.layers, cell)(H))
    name = {"SimpleRNN": "SimpleRNN"}.get(cell, cell)
    with pytest.raises(LayoutError, match=rf"source: is a Keras {name} layer.*use {other}\.from_keras"):
        cls.from_keras(layer)
    with pytest.raises(LayoutError, match=rf"source\[1\] \(recurrent_kernel\).*belongs to a Keras {name}.*use {other}\.from_keras"):
        cls.from_keras(layer.get_weights())


def test_refuses_non_recurrent_layers(keras):
    dense = built(keras, keras.layers.Dense(H))
    with pytest.raises(LayoutError, match=r"source: a Keras Dense is not a layer numpyrnn can load"):
        NumpyGRU.from_keras(dense)
    model = keras.Sequential([keras.Input((None, I)), keras.layers.GRU(H)])
    with pytest.raises(LayoutError, match=r"source: a Keras Sequential is not .*pass the list of its recurrent layers"):
        NumpyGRU.from_keras(model)
    stacked = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.GRUCell(H), keras.layers.GRUCell(H)]))
    with pytest.raises(LayoutError, match=r"RNN over StackedRNNCells.*one layer per cell"):
        NumpyGRU.from_keras(built(keras, stacked))


def test_refuses_unbuilt_layer(keras):
    with pytest.raises(LayoutError, match=r"source: the layer has no weights yet; build it first"):
        NumpyLSTM.from_keras(keras.layers.LSTM(H))


def test_refuses_mixed_simple_rnn_activations(keras):
    layers = [built(keras, keras.layers.SimpleRNN(H, return_sequences=True)),
              built(keras, keras.layers.SimpleRNN(H, activation="relu"), H)]
    with pytest.raises(LayoutError, match=r"different activations \['relu', 'tanh'\]; nn.RNN has one nonlinearity"):
        NumpyRNN.from_keras(layers)


def test_refuses_export_of_projection():
    module = NumpyLSTM(I, H, proj_size=2)
    with pytest.raises(LayoutError, match=r"Keras LSTM layers have no projection: .*proj_size=2"):
        module.to_keras()


# --------------------------------------------------------------------------------------
# bad structures: no Keras needed
# --------------------------------------------------------------------------------------

def gru_weights(rng, width=I, bias=True, units=H):
    out = [rng.standard_normal((width, 3 * units)).astype(np.float32),
           rng.standard_normal((units, 3 * units)).astype(np.float32)]
    return out + [rng.standard_normal((2, 3 * units)).astype(np.float32)] if bias else out


def test_raw_gru_arrays_match_the_formulas(rng):
    """Without Keras: the mapping itself, written out gate by gate (Keras z,r,h -> torch r,z,n)."""
    k, rk, b = gru_weights(rng)
    m = NumpyGRU.from_keras([k, rk, b])
    for torch_gate, keras_gate in enumerate([1, 0, 2]):
        rows = slice(torch_gate * H, (torch_gate + 1) * H)
        cols = slice(keras_gate * H, (keras_gate + 1) * H)
        np.testing.assert_array_equal(m.weight_ih_l0.detach().numpy()[rows], k[:, cols].T)
        np.testing.assert_array_equal(m.weight_hh_l0.detach().numpy()[rows], rk[:, cols].T)
        np.testing.assert_array_equal(m.bias_ih_l0.detach().numpy()[rows], b[0, cols])
        np.testing.assert_array_equal(m.bias_hh_l0.detach().numpy()[rows], b[1, cols])


def test_single_bias_goes_to_bias_ih(rng):
    k = rng.standard_normal((I, 4 * H)).astype(np.float32)
    rk = rng.standard_normal((H, 4 * H)).astype(np.float32)
    b = rng.standard_normal(4 * H).astype(np.float32)
    m = NumpyLSTM.from_keras([k, rk, b])
    np.testing.assert_array_equal(m.bias_ih_l0.detach().numpy(), b)
    np.testing.assert_array_equal(m.bias_hh_l0.detach().numpy(), np.zeros(4 * H, np.float32))
    with torch.no_grad():
        m.bias_hh_l0.fill_(0.25)
    np.testing.assert_allclose(m.to_keras()[0][2], b + np.float32(0.25), rtol=0, atol=0)


@pytest.mark.parametrize("make, error, match", [
    (lambda w: w[:1], LayoutError, r"source: 1 arrays; expected the list layer.get_weights\(\) returns"),
    (lambda w: w + w[:2], LayoutError, r"source: 5 arrays"),
    (lambda w: [], LayoutError, r"source: empty list"),
    (lambda w: [w[0], w[1], [w[2]]], LayoutError, r"source\[2\]: got a list where source\[0\] is an array"),
    (lambda w: [w, w[0]], LayoutError, r"source\[1\]: got an array where source\[0\] is a list"),
    (lambda w: [w, [w[0], w[1], "bias"]], LayoutError, r"source\[1\]\[2\]: expected an array, got str"),
    (lambda w: [w, None], LayoutError, r"source\[1\]: got a NoneType"),
    (lambda w: {"kernel": w[0]}, TypeError, r"from_keras takes a Keras GRU/LSTM/SimpleRNN layer.*got dict"),
    (lambda w: w[0], TypeError, r"got ndarray; a single array is not enough"),
    (lambda w: [w[0], w[1][:, :10], w[2]], LayoutError, r"source\[1\] \(recurrent_kernel\): shape \(4, 10\) is not \(units, G\*units\)"),
    (lambda w: [w[0][:2], w[1], w[2]], None, None),  # input size 2 is fine
    (lambda w: [w[0][:, :9], w[1], w[2]], LayoutError,
     r"source\[0\] \(layer 0, kernel\) \(keras layout\): expected \(input=3, 3\*units=12\), got \(3, 9\)"),
    (lambda w: [w[0], w[1], w[2][:1]], LayoutError, r"source\[2\] \(layer 0, bias\).*expected \(input/recurrent=2, 3\*units=12\)"),
    (lambda w: [w[0], w[1], w[2].reshape(-1)], LayoutError,
     r"source\[2\] \(layer 0, bias\).*got 1 axes \(24,\); a flat \(2\*3\*units,\) bias is how Keras 2's CuDNNGRU"),
    (lambda w: [w[0], w[1], w[2].astype(np.int32)], TypeError, r"source\[2\] \(layer 0, bias\): dtype int32"),
])
def test_bad_structures(rng, make, error, match):
    source = make(gru_weights(rng))
    if error is None:
        NumpyGRU.from_keras(source)
        return
    with pytest.raises(error, match=match):
        NumpyGRU.from_keras(source)


def test_bad_stacks(rng):
    w0 = gru_weights(rng)
    with pytest.raises(LayoutError, match=r"source\[1\]: has no bias \(use_bias=False\), but source\[0\] has one"):
        NumpyGRU.from_keras([w0, gru_weights(rng, H, bias=False)])
    with pytest.raises(LayoutError, match=r"source\[1\]: bidirectional, but source\[0\] is unidirectional"):
        NumpyGRU.from_keras([w0, gru_weights(rng, H) + gru_weights(rng, H)])
    with pytest.raises(LayoutError, match=r"source\[1\]\[1\] \(recurrent_kernel\): shape \(5, 15\) is a layer of 5 units, "
                                          r"but layer 0 has 4: every layer and direction"):
        NumpyGRU.from_keras([w0, gru_weights(rng, H, units=H + 1)])
    bi = gru_weights(rng) + gru_weights(rng)
    with pytest.raises(LayoutError, match=r"source\[1\]\[3\] \(layer 1, backward kernel\).*expected \(2\*units=8, 3\*units=12\), "
                                          r"got \(4, 12\).*is this layer's input from a unidirectional layer"):
        NumpyGRU.from_keras([bi, gru_weights(rng, 2 * H) + gru_weights(rng, H)])


def test_non_finite_weights_named(rng):
    w = gru_weights(rng) + gru_weights(rng)
    w[4][1, 2] = np.nan
    with pytest.raises(LayoutError, match=r"source\[4\] \(layer 0, backward recurrent_kernel\): holds nan at index \[1, 2\]"):
        NumpyGRU.from_keras(w)


def test_docs_example_runs(keras):
    """The example on the Keras documentation page runs and its assertion holds."""
    import re

    page = (ROOT / "docs" / "frameworks" / "keras.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    exec(compile(code, "docs/frameworks/keras.md", "exec"), {})
