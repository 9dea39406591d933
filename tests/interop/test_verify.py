"""``numpyrnn.verify`` against the real frameworks: Keras (torch backend), onnxruntime, Flax.

Every source is built in its own framework with random weights (biases included),
never through numpyrnn's export, and checked for every cell, uni- and
bidirectional, one layer and stacks. Then verify must catch what is wrong: one
weight changed, blocks read as the row loop read them, a hand-loaded module
without the gate swap.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, VerifyReport, files, verify
from numpyrnn._seed import row_loop, seed_arrays

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

I, H = 3, 4
TOPOLOGIES = {"uni": (1, False), "bi": (1, True), "stack": (2, False), "bistack": (2, True)}
CELLS = ("gru", "lstm", "rnn")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def expected_rows(cell: str, L: int, D: int) -> int:
    return 1 + L * D * (2 if cell == "lstm" else 1)


def perturbed(module: nn.Module, name: str) -> nn.Module:
    """A copy of ``module`` with one element of one weight changed by 1e-2."""
    import copy

    other = copy.deepcopy(module)
    with torch.no_grad():
        getattr(other, name).view(-1)[0] += 1e-2
    return other


def assert_ok(report: VerifyReport, oracle: str, cell: str, L: int, D: int) -> None:
    assert report.ok, str(report)
    assert oracle in report.oracle
    assert len(report.rows) == expected_rows(cell, L, D)
    assert report.max_error < report.atol == 1e-5
    assert report.dtype == "float32"
    text = str(report)
    assert text.startswith("source: ") and "OK:" in text and "1e-05" in text
    for r in report.rows:
        assert r.ok and r.max_error < 1e-5 and r.output in text


def assert_caught(report: VerifyReport, layer: int) -> None:
    assert not report.ok and not report
    assert report.max_error > report.atol
    assert "FAILED:" in str(report) and "FAIL" in str(report)
    bad = [r.output for r in report.rows if not r.ok]
    assert "y" in bad
    # the final states of the layers below the changed one are still right
    assert all(f"layer {k}" not in out for out in bad for k in range(layer))


# --------------------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras", reason="keras not installed: pip install numpyrnn[interop]")


KERAS_NAMES = {"gru": "GRU", "lstm": "LSTM", "rnn": "SimpleRNN"}


def keras_layers(keras, cell: str, L: int, bidirectional: bool, seed: int, **kwargs):
    rng = np.random.default_rng(seed)
    out, width = [], I
    for _ in range(L):
        layer = getattr(keras.layers, KERAS_NAMES[cell])(H, return_sequences=True, **kwargs)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer)
        layer.build((None, None, width))
        layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in layer.get_weights()])
        out.append(layer)
        width = H * (2 if bidirectional else 1)
    return out


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", CELLS)
def test_keras(keras, cell, topology):
    L, bi = TOPOLOGIES[topology]
    layers = keras_layers(keras, cell, L, bi, seed=len(cell) * 10 + L + bi)
    report = verify(layers if L > 1 else layers[0])
    assert_ok(report, "keras", cell, L, 2 if bi else 1)
    # the reference over the Keras arrays agrees, without running Keras
    assert_ok(verify(layers if L > 1 else layers[0], oracle="reference"), "numpyrnn.reference", cell, L, 2 if bi else 1)
    # one weight of the top layer changed is caught, and only the top layer's rows fail
    converted = _cls(cell).from_keras(layers if L > 1 else layers[0])
    name = f"weight_hh_l{L - 1}" + ("_reverse" if bi else "")
    assert_caught(verify(layers if L > 1 else layers[0], perturbed(converted, name)), layer=L - 1)


def _cls(cell: str):
    return {"gru": numpyrnn.NumpyGRU, "lstm": numpyrnn.NumpyLSTM, "rnn": numpyrnn.NumpyRNN}[cell]


def test_keras_relu_and_unreturned_sequences(keras):
    # the user's layer returns only the last step and no states: verify runs its own copy
    layer = keras_layers(keras, "rnn", 1, False, seed=3, activation="relu")[0]
    layer.return_sequences = False
    assert verify(layer).ok


def test_keras_model_checks_each_recurrent_layer(keras):
    model = keras.Sequential([keras.Input((None, I)), keras.layers.LSTM(H, return_sequences=True, name="enc"),
                              keras.layers.Dense(5), keras.layers.GRU(H, name="dec")])
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    report = verify(model)
    assert report.ok, str(report)
    assert {r.module for r in report.rows} == {"enc", "dec"}
    assert "module: dec: GRU(input=5" in str(report)
    with pytest.raises(LayoutError, match="holds 2 recurrent modules"):
        verify(model, NumpyGRU(5, H))


def test_keras_file(keras, tmp_path):
    model = keras.Sequential([keras.Input((None, I)), keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True))])
    rng = np.random.default_rng(1)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    path = tmp_path / "m.keras"
    model.save(path)
    report = verify(path)
    assert report.ok and "keras" in report.oracle and report.source == str(path), str(report)
    # a converted file as the module: the same check, through the file
    converted = NumpyGRU.from_keras(model.layers[0])
    pt = tmp_path / "gru.safetensors"
    files.write_state_dict(pt, converted.state_dict())
    assert verify(path, pt).ok
    files.write_state_dict(pt, perturbed(converted, "bias_hh_l0_reverse").state_dict())
    assert not verify(path, pt).ok


def test_keras_file_modules_are_load_alls(keras, tmp_path):
    """A stack the graph proves is one module, a layer behind a Dense another: verify checks what load_all builds."""
    model = keras.Sequential([keras.Input((None, I)),
                              keras.layers.LSTM(H, return_sequences=True, name="low"),
                              keras.layers.LSTM(H, return_sequences=True, name="high"),
                              keras.layers.Dense(5, name="mix"),
                              keras.layers.Bidirectional(keras.layers.SimpleRNN(H, activation="relu",
                                                                                return_sequences=True), name="top")])
    rng = np.random.default_rng(2)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    path = tmp_path / "m.keras"
    model.save(path)
    report = verify(path)
    assert report.ok and "keras" in report.oracle, str(report)
    loaded = numpyrnn.load_all(path)
    assert list(report.modules) == list(loaded) == ["low", "top"]
    assert [r.module for r in report.rows].count("low") == expected_rows("lstm", 2, 1)
    assert [r.module for r in report.rows].count("top") == expected_rows("rnn", 1, 2)
    assert "module: top: RNN(input=5, hidden=4, layers=1, bidirectional, bias, relu)" in str(report)
    only = verify(path, layer="top")
    assert only.ok and list(only.modules) == ["top"]
    # the modules given by name: only those are checked, and a wrong one is caught
    wrong = verify(path, {"low": perturbed(loaded["low"], "weight_hh_l1")})
    assert not wrong.ok and {r.module for r in wrong.rows} == {"low"}
    assert_caught(wrong, layer=1)
    with pytest.raises(LayoutError, match=r"module: .*m.keras holds no module named 'high'; it holds 'low', 'top'"):
        verify(path, {"high": loaded["low"]})


def test_plain_gru_loaded_by_hand(keras):
    """A user's own nn.GRU filled from a Keras GRU: right with the z/r swap, caught without it."""
    layer = keras_layers(keras, "gru", 1, False, seed=9)[0]
    kernel, rec, bias = layer.get_weights()  # gates z, r, h along the columns; bias rows input, recurrent

    def rzn(a):  # Keras z, r, h -> torch r, z, n
        return np.concatenate([a[..., H:2 * H], a[..., :H], a[..., 2 * H:]], axis=-1)

    def load(swap: bool) -> nn.GRU:
        gru = nn.GRU(I, H, batch_first=True)
        order = rzn if swap else (lambda a: a)
        with torch.no_grad():
            gru.weight_ih_l0.copy_(torch.from_numpy(order(kernel).T.copy()))
            gru.weight_hh_l0.copy_(torch.from_numpy(order(rec).T.copy()))
            gru.bias_ih_l0.copy_(torch.from_numpy(order(bias[0]).copy()))
            gru.bias_hh_l0.copy_(torch.from_numpy(order(bias[1]).copy()))
        return gru

    good = verify(layer, load(swap=True))
    assert good.ok, str(good)
    assert not verify(layer, load(swap=False)).ok
    with pytest.raises(LayoutError, match="does not have the source's configuration"):
        verify(layer, nn.GRU(I, H + 1))


# --------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------

ONNX_MODES = {"gru": "GRU", "lstm": "LSTM", "rnn": "RNN_TANH"}


def onnx_model(cell: str, L: int, D: int, seed: int, tmp_path):
    """Random W, R, B in ONNX's own shapes and gate orders, written as a runnable graph."""
    onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install numpyrnn[interop]")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install numpyrnn[interop]")
    rng = np.random.default_rng(seed)
    G = {"gru": 3, "lstm": 4, "rnn": 1}[cell]
    layers, width = [], I
    for _ in range(L):
        layers.append({k: rng.uniform(-0.6, 0.6, s).astype(np.float32)
                       for k, s in (("W", (D, G * H, width)), ("R", (D, G * H, H)), ("B", (D, 2 * G * H)))})
        width = D * H
    path = tmp_path / "m.onnx"
    files.write_onnx(path, layers, mode=ONNX_MODES[cell])
    return onnx.load(str(path)), path


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", CELLS)
def test_onnx(cell, topology, tmp_path):
    L, bi = TOPOLOGIES[topology]
    D = 2 if bi else 1
    model, path = onnx_model(cell, L, D, seed=L * 7 + D, tmp_path=tmp_path)
    assert_ok(verify(model), "onnxruntime", cell, L, D)
    assert_ok(verify(path), "onnxruntime", cell, L, D)
    assert_ok(verify(model, oracle="reference"), "numpyrnn.reference", cell, L, D)
    converted = _cls(cell).from_onnx(model)
    assert_caught(verify(model, perturbed(converted, f"weight_ih_l{L - 1}")), layer=L - 1)
    assert_caught(verify(path, perturbed(converted, f"weight_ih_l{L - 1}"), oracle="reference"), layer=L - 1)


# --------------------------------------------------------------------------------------
# Flax
# --------------------------------------------------------------------------------------

FLAX_CELLS = {"gru": "GRUCell", "lstm": "LSTMCell", "rnn": "SimpleCell"}


def flax_params(cell: str, L: int, bidirectional: bool, seed: int):
    jax = pytest.importorskip("jax", reason="jax not installed: pip install numpyrnn[interop]")
    fnn = pytest.importorskip("flax.linen", reason="flax not installed: pip install numpyrnn[interop]")
    make = getattr(fnn, FLAX_CELLS[cell])
    rng = np.random.default_rng(seed)
    params, width = [], I
    for _ in range(L):
        layer = fnn.Bidirectional(fnn.RNN(make(H)), fnn.RNN(make(H))) if bidirectional else fnn.RNN(make(H))
        shapes = jax.eval_shape(layer.init, jax.random.key(0), np.zeros((1, 2, width), np.float32))
        params.append(jax.tree_util.tree_map(lambda a: rng.uniform(-0.7, 0.7, a.shape).astype(np.float32),
                                             shapes)["params"])
        width = H * (2 if bidirectional else 1)
    return params


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", CELLS)
def test_flax(cell, topology):
    L, bi = TOPOLOGIES[topology]
    params = flax_params(cell, L, bi, seed=L * 3 + bi)
    source = params if L > 1 else {"params": params[0]}
    assert_ok(verify(source), "flax", cell, L, 2 if bi else 1)
    assert_ok(verify(source, oracle="reference"), "numpyrnn.reference", cell, L, 2 if bi else 1)
    converted = _cls(cell).from_flax(source)
    assert_caught(verify(source, perturbed(converted, f"bias_hh_l{L - 1}")), layer=L - 1)
    assert_caught(verify(source, perturbed(converted, f"bias_hh_l{L - 1}"), oracle="reference"), layer=L - 1)


def test_missing_framework_falls_back_to_the_reference(tmp_path, monkeypatch):
    model, path = onnx_model("lstm", 2, 2, seed=1, tmp_path=tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    report = verify(path)
    assert report.ok and report.oracle.startswith("numpyrnn.reference") and "onnxruntime is not installed" in report.oracle
    with pytest.raises(LayoutError, match="oracle='tf'"):
        verify(path, oracle="tf")


def test_keras_file_reference(keras, tmp_path):
    model = keras.Sequential([keras.Input((None, I)), keras.layers.SimpleRNN(H, activation="relu", return_sequences=True),
                              keras.layers.SimpleRNN(H, activation="relu")])
    rng = np.random.default_rng(3)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    for oracle in (None, "reference"):
        report = verify(tmp_path / "m.keras", oracle=oracle)
        assert report.ok and len(report.rows) == 3, str(report)


def test_flax_file(tmp_path):
    """A Flax file: one module per layer, as load_all builds them, each checked against flax; stack=True the stack."""
    from numpyrnn.formats import native

    params = flax_params("lstm", 2, True, seed=5)
    path = tmp_path / "p.msgpack"
    files.write_msgpack(path, {str(k): p for k, p in enumerate(params)})
    report = verify(path)
    assert report.ok and "flax" in report.oracle, str(report)
    loaded = numpyrnn.load_all(path)
    assert list(report.modules) == list(loaded) == ["0", "1"]
    assert [r.module for r in report.rows] == ["0"] * 5 + ["1"] * 5  # y, h_n and c_n per direction, per layer
    assert "module: 1: LSTM(input=8, hidden=4" in str(report)
    assert verify(path, oracle="reference").ok
    stacked = verify(path, stack=True)
    assert stacked.ok and list(stacked.modules) == list(numpyrnn.load_all(path, stack=True)) == ["0"], str(stacked)
    assert_ok(stacked, "flax", "lstm", 2, 2)
    # a converted file with the same module names is checked module by module: only the changed one fails
    mf = numpyrnn.read_model(path)
    out = tmp_path / "converted.safetensors"
    native.write(out, {"0": loaded["0"], "1": perturbed(loaded["1"], "weight_hh_l0_reverse")},
                 {e.name: e.config for e in mf.modules})
    mixed = verify(path, out)
    assert not mixed.ok
    assert {r.module for r in mixed.rows if not r.ok} == {"1"}
    # a file of some of the modules checks those; a module the source does not hold is refused
    native.write(out, {"0": loaded["0"]}, {"0": mf.modules[0].config})
    some = verify(path, out)
    assert some.ok and list(some.modules) == ["0"], str(some)
    native.write(out, {"2": loaded["0"]}, {"2": mf.modules[0].config})
    with pytest.raises(LayoutError, match=r"converted.safetensors: holds the module\(s\) '2', but the source .* "
                                          r"holds '0', '1'"):
        verify(path, out)
    with pytest.raises(LayoutError, match=r"p.msgpack: holds 2 recurrent modules \('0', '1'\); module= can only "
                                          r"replace one"):
        verify(path, loaded["0"])


# --------------------------------------------------------------------------------------
# block arrays and TF1 (numpyrnn.reference)
# --------------------------------------------------------------------------------------

def test_blocks_and_the_row_loop():
    w0, w = seed_arrays(I, H, 2, 2)
    arrays = {"w0": w0, "w": w}
    report = verify(arrays, cell="gru")
    assert report.ok and report.oracle.startswith("numpyrnn.reference"), str(report)
    # the row loop's reading of the same arrays is caught, whether numpyrnn or the loop loaded it
    assert not verify(arrays, NumpyGRU.from_numpy(w0, w, rowwise=True), cell="gru").ok
    loop = row_loop(nn.GRU(I, H, 2, bias=False, bidirectional=True), w0, w)
    wrong = verify(arrays, loop, cell="gru")
    assert not wrong.ok and wrong.max_error > 1e-2
    # ... and stated as the reading, it is what the loop computes
    assert verify(arrays, loop, cell="gru", rowwise=True).ok


@pytest.mark.parametrize("gates", ["zrn", "nzr"])
def test_blocks_gate_orders_and_biases(gates):
    rng = np.random.default_rng(2)
    arrays = {"w0": rng.standard_normal((1, H, 3 * (I + H))).astype(np.float32),
              "b0": rng.standard_normal((1, H, 6)).astype(np.float32)}
    assert verify(arrays, gates=gates).ok  # the cell is read from b0's 2*3 biases
    assert not verify(arrays, NumpyGRU.from_numpy(**arrays), gates=gates).ok


def test_lstm_projection_and_float64():
    rng = np.random.default_rng(4)
    arrays = {"w0": rng.standard_normal((2, H, 4 * (I + 2))), "proj": rng.standard_normal((1, 2, 2, H)),
              "b0": rng.standard_normal((2, H, 8))}
    report = verify(arrays)  # from_numpy builds float32 by default: float32's tolerance
    assert report.ok and report.dtype == "float32" and report.atol == 1e-5, str(report)
    exact = verify(arrays, NumpyLSTM.from_numpy(**arrays, dtype=torch.float64))
    assert exact.ok and exact.dtype == "float64" and exact.atol == 1e-9, str(exact)
    assert exact.max_error < 1e-12


def test_tf1_variables():
    rng = np.random.default_rng(6)
    cell = {"kernel": rng.uniform(-0.5, 0.5, (I + H, 4 * H)).astype(np.float32),
            "bias": rng.uniform(-0.5, 0.5, 4 * H).astype(np.float32)}
    assert verify(cell).ok
    assert verify({"fw": cell, "bw": cell}).ok
    # the forget bias TF1 adds at run time is part of the reading
    assert not verify(cell, numpyrnn.NumpyLSTM.from_tf1(cell, forget_bias=0.0)).ok
    assert verify(cell, numpyrnn.NumpyLSTM.from_tf1(cell, forget_bias=0.0), forget_bias=0.0).ok


def tf1_file(tmp_path, cell: str, L: int, bidirectional: bool, seed: int, proj: int | None = None):
    from .tf1_names import random_cell, tf1_names

    rng = np.random.default_rng(seed)
    layers, width = [], I
    for _ in range(L):
        if bidirectional:
            layers.append({d: random_cell(rng, cell, width, H, proj) for d in ("fw", "bw")})
        else:
            layers.append(random_cell(rng, cell, width, H, proj))
        width = (proj or H) * (2 if bidirectional else 1)
    path = tmp_path / "tf1.npz"
    np.savez(path, **tf1_names(layers, cell))
    return path


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", CELLS)
def test_tf1_file_without_tensorflow(cell, topology, tmp_path, monkeypatch):
    """Without TensorFlow the TF1 variables are checked against numpyrnn.reference, and the report says why."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if it were not installed
    L, bi = TOPOLOGIES[topology]
    D = 2 if bi else 1
    path = tf1_file(tmp_path, cell, L, bi, seed=L * 5 + D)
    options = {"cell": "rnn"} if cell == "rnn" else {}
    report = verify(path, **options)
    assert report.ok and len(report.rows) == expected_rows(cell, L, D), str(report)
    assert report.oracle.startswith("numpyrnn.reference (numpy, float64; ")
    why = "no CudnnCompatibleGRUCell" if cell == "gru" else "TensorFlow is not installed"
    assert why in report.oracle and report.dtype == "float32" and report.atol == 1e-5, report.oracle
    assert list(report.modules) == list(numpyrnn.load_all(path, **options))
    converted = numpyrnn.load(path, **options)
    name = f"weight_ih_l{L - 1}" + ("_reverse" if bi else "")
    assert_caught(verify(path, perturbed(converted, name), **options), layer=L - 1)


def test_tf1_file_forget_bias_and_projection(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    path = tf1_file(tmp_path, "lstm", 2, True, seed=8, proj=2)
    report = verify(path)
    assert report.ok and "TensorFlow is not installed" in report.oracle, str(report)
    assert "LSTM(input=3, hidden=4, layers=2, bidirectional, bias, proj=2)" in str(report)
    # the forget bias is the reading's: a module converted with another one is caught, unless it is stated
    other = numpyrnn.load(path, forget_bias=0.0)
    assert not verify(path, other).ok
    assert verify(path, other, forget_bias=0.0).ok


# --------------------------------------------------------------------------------------
# inputs, tolerances, refusals
# --------------------------------------------------------------------------------------

def test_given_inputs_and_tolerance():
    w0, w = seed_arrays(I, H, 2, 1)
    x = np.random.default_rng(0).uniform(-1, 1, (7, 3, I)).astype(np.float32)  # (T, N, I): batch_first=False
    h0 = np.zeros((2, 3, H), np.float32)
    report = verify({"w0": w0, "w": w}, inputs=(x, h0), cell="gru")
    assert report.ok and report.rows[0].shape == (3, 7, H)
    assert "given x; given h0" in str(report)
    strict = verify({"w0": w0, "w": w}, cell="gru", atol=0.0)
    assert strict.atol == 0.0 and "overridden" in str(strict)
    assert verify({"w0": w0, "w": w}, cell="gru", seed=1).rows[0].max_error != report.rows[0].max_error
    with pytest.raises(LayoutError, match=r"inputs: x must be \(time, batch, input\) with input=3"):
        verify({"w0": w0, "w": w}, inputs=x[..., :2], cell="gru")
    with pytest.raises(LayoutError, match=r"inputs: h0 must be \(layers\*directions=2, batch=3, 4\)"):
        verify({"w0": w0, "w": w}, inputs=(x, h0[:1]), cell="gru")


def test_refusals(tmp_path):
    """Each refusal says which file, module or option, what was expected and what was found."""
    w0, _ = seed_arrays(I, H, 1, 1)
    with pytest.raises(LayoutError, match=r"block arrays: the cell cannot be told from w0 alone \(no b0 or proj\); "
                                          r"pass cell='gru', 'lstm' or 'rnn'"):
        verify({"w0": w0})
    with pytest.raises(TypeError, match="cannot read a source of type int: expected a path, a Keras layer"):
        verify(3)
    with pytest.raises(FileNotFoundError, match="missing.npz: no such file or folder"):
        verify(tmp_path / "missing.npz")
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(LayoutError, match=r"w.bin: not a readable torch file"):
        verify(tmp_path / "w.bin")
    np.savez(tmp_path / "w.npz", w0=w0)
    with pytest.raises(LayoutError, match=r"w.npz: block arrays do not record their cell; pass cell='gru', "
                                          r"cell='lstm' or cell='rnn'"):
        verify(tmp_path / "w.npz")
    with pytest.raises(LayoutError, match=r"w.npz: w0: axis 2 should be 4\*\(input\+hidden\).* got 21"):
        verify(tmp_path / "w.npz", cell="lstm")
    with pytest.raises(LayoutError, match=r"w.npz: nonlinearity='relu' applies to cell='rnn' only, not cell='gru'"):
        verify(tmp_path / "w.npz", cell="gru", nonlinearity="relu")
    # the module: its configuration must be the source's, named by the source's module
    with pytest.raises(LayoutError, match=r"module for 'w': GRU\(input=3, hidden=5.*does not have the source's "
                                          r"configuration GRU\(input=3, hidden=4"):
        verify(tmp_path / "w.npz", nn.GRU(I, H + 1), cell="gru")
    with pytest.raises(LayoutError, match=r"nothere.pt: no such file or folder"):
        verify(tmp_path / "w.npz", tmp_path / "nothere.pt", cell="gru")
    with pytest.raises(TypeError, match="module: expected a torch.nn.GRU/LSTM/RNN, a mapping of names to them, or a path, got int"):
        verify(tmp_path / "w.npz", 5, cell="gru")
    # a converted file is the module to check, not a source
    files.write_state_dict(tmp_path / "m.safetensors", NumpyGRU.from_numpy(w0).state_dict())
    with pytest.raises(LayoutError, match=r"m.safetensors: a numpyrnn file holds converted modules, not a source"):
        verify(tmp_path / "m.safetensors")
    with pytest.raises(LayoutError, match=r"oracle='tf': expected None \(the source's framework\) or 'reference'"):
        verify({"w0": w0}, cell="gru", oracle="tf")
    with pytest.raises(LayoutError, match=r"inputs: x must be \(time, batch, input\) with input=3 \(the module's "
                                          r"input_size\), got shape \(2, 3\)"):
        verify({"w0": w0}, cell="gru", inputs=np.zeros((2, 3)))
    with pytest.raises(LayoutError, match=r"inputs: a \(h0, c0\) pair is for an LSTM"):
        verify({"w0": w0}, cell="gru", inputs=(np.zeros((5, 2, I)), (np.zeros((1, 2, H)), np.zeros((1, 2, H)))))
    # the file's own record wins over a contradicting option, as in numpyrnn.load
    pytest.importorskip("msgpack", reason="msgpack not installed: pip install numpyrnn[files]")
    files.write_msgpack(tmp_path / "p.msgpack", {"0": {"cell": {
        "i": {"kernel": np.zeros((I, H), np.float32), "bias": np.zeros(H, np.float32)},
        "h": {"kernel": np.zeros((H, H), np.float32)}}}})
    with pytest.raises(LayoutError, match=r"p.msgpack: the file records a RNN cell \(layer '0'\), but cell='gru' "
                                          r"was given"):
        verify(tmp_path / "p.msgpack", cell="gru")
