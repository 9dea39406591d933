"""Variant modules through model files: ``load``/``load_all``/``read_model(variants=True)`` and ``--variants``.

Each file is written by the real framework (Keras 3 on its torch backend, ONNX
models run in onnxruntime, TF1 GRUCell variables checked against TF's
documented equations; Keras 2 files in ``tests/data/keras2_files`` with
tf_keras's own outputs). By default the layers are refused with the reason and
the way out; with ``variants=True`` they load as :mod:`numpyrnn.variants`
modules, and a converted file rebuilds them exactly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM
from numpyrnn.cli import main
from numpyrnn.variants import Directions, PeepholeLSTM, ResetBeforeGRU, VariantWarning

DATA = Path(__file__).resolve().parent.parent / "data" / "keras2_files"
T, N, I, H = 5, 2, 3, 4


def run(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x))[0].numpy()


def load_all_variants(path, **kw):
    """``load_all(path, variants=True)``, checking that each variant module built is named by a VariantWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mods = numpyrnn.load_all(path, variants=True, **kw)
    said = [str(w.message) for w in caught if issubclass(w.category, VariantWarning)]
    for name, m in mods.items():
        if isinstance(m, (Directions, ResetBeforeGRU, PeepholeLSTM)):
            assert any(f"module {name!r}: built {type(m).__name__}(" in s and "numpyrnn.variants" in s for s in said), said
    return mods


def convert_and_reload(src: Path, out: Path, *extra: str):
    """``numpyrnn convert SRC -o OUT --variants``, then ``numpyrnn.load_all(OUT)`` (which needs no flag)."""
    assert main(["convert", str(src), "-o", str(out), "--variants", *extra]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantWarning)
        return numpyrnn.load_all(out)


def same_module(a, b, x):
    assert type(a) is type(b)
    assert a.state_dict().keys() == b.state_dict().keys()
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    np.testing.assert_array_equal(run(a, x), run(b, x))


# --------------------------------------------------------------------------------------
# Keras 3 files
# --------------------------------------------------------------------------------------

def _keras_model(keras, seed=0):
    """reset_after=False GRU with hard_sigmoid -> Bidirectional(LSTM, merge_mode='sum') -> go_backwards LSTM."""
    inp = keras.Input((T, I))
    a = keras.layers.GRU(H, reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True,
                         name="reset_before")(inp)
    b = keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True), merge_mode="sum", name="summed")(a)
    c = keras.layers.LSTM(3, go_backwards=True, return_sequences=True, name="backwards")(b)
    d = keras.layers.Dense(2, name="head")(c)
    model = keras.Model(inp, d)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.7, 0.7, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def keras_file(keras3, tmp_path_factory):
    model = _keras_model(keras3)
    path = tmp_path_factory.mktemp("k3") / "model.keras"
    model.save(path)
    x = np.random.default_rng(1).standard_normal((N, T, I)).astype(np.float32)
    outs = {n: keras3.ops.convert_to_numpy(keras3.Model(model.input, model.get_layer(n).output)(x))
            for n in ("reset_before", "summed", "backwards")}
    inputs = {"reset_before": x, "summed": outs["reset_before"], "backwards": outs["summed"]}
    return path, inputs, outs


def test_keras_refused_by_default_with_the_way_out(keras_file):
    path, _, _ = keras_file
    with pytest.raises(LayoutError) as caught:
        numpyrnn.load_all(path)
    text = str(caught.value)
    assert ("layer 'reset_before': recurrent_activation='hard_sigmoid'; nn.GRU uses sigmoid" in text
            and "variants=True builds ResetBeforeGRU (numpyrnn.variants), which computes it" in text)
    assert ("layer 'summed': Bidirectional merge_mode='sum'" in text
            and "variants=True builds Directions(PeepholeLSTM)" in text)
    assert "layer 'backwards': go_backwards=True" in text
    assert "--variants" not in text
    mf = numpyrnn.read_model(path)
    assert mf.modules == [] and len(mf.problems) == 3 and mf.skipped == [("head", "Dense")]
    with pytest.raises(LayoutError, match=r"^model\.keras: layer 'summed' is not converted: layer 'summed': "
                                          r"Bidirectional merge_mode='sum'.*; variants=True builds"):
        numpyrnn.load(path, layer="summed")


def test_keras_load_all_variants_match_keras(keras_file):
    path, inputs, outs = keras_file
    mods = load_all_variants(path)
    assert list(mods) == ["reset_before", "summed", "backwards"]
    assert type(mods["reset_before"]) is ResetBeforeGRU
    assert mods["reset_before"].recurrent_activation == "hard_sigmoid_keras3"  # Keras 3's x/6 + 1/2
    assert type(mods["summed"]) is Directions and mods["summed"].merge_mode == "sum"
    assert type(mods["backwards"]) is Directions and mods["backwards"].time == "go_backwards"
    for name, m in mods.items():
        assert m.batch_first
        np.testing.assert_allclose(run(m, inputs[name]), outs[name], rtol=0, atol=1e-5)
    with pytest.warns(VariantWarning, match=r"^model\.keras: module 'summed': built Directions\("):
        one = numpyrnn.load(path, layer="summed", variants=True, dtype=torch.float64)
    assert next(one.parameters()).dtype == torch.float64
    np.testing.assert_allclose(run(one, inputs["summed"].astype(np.float64)), outs["summed"], rtol=0, atol=1e-5)


def test_keras_read_model_and_inspect_show_the_variant(keras_file, capsys):
    path, _, _ = keras_file
    with warnings.catch_warnings():
        warnings.simplefilter("error", VariantWarning)  # reading builds nothing the caller sees
        mf = numpyrnn.read_model(path, variants=True)
    assert [e.config["variant"]["class"] for e in mf.modules] == ["ResetBeforeGRU", "PeepholeLSTM", "PeepholeLSTM"]
    assert mf.modules[1].config["variant"]["merge_mode"] == "sum"
    assert mf.modules[0].config["variant"]["options"]["recurrent_activation"] == "hard_sigmoid_keras3"
    assert main(["inspect", str(path)]) == 1
    out = capsys.readouterr().out
    assert "--variants builds ResetBeforeGRU (numpyrnn.variants), which computes it" in out
    assert "variants=True" not in out
    assert main(["inspect", str(path), "--variants"]) == 0
    out = capsys.readouterr().out
    assert ("module 'reset_before': cell=gru input=3 hidden=4 layers=1 directions=1 bias=yes" in out
            and "  variant module: numpyrnn.variants.ResetBeforeGRU(recurrent_activation='hard_sigmoid_keras3', "
                "activation='tanh')" in out)
    assert "  variant module: numpyrnn.variants.PeepholeLSTM(recurrent_activation='sigmoid', activation='tanh', " \
           "merge_mode='sum')" in out
    assert "time='go_backwards'" in out and "not converted: head (Dense)" in out and "problems: none" in out


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_keras_convert_variants_then_load_rebuilds_exactly(keras_file, tmp_path, suffix, capsys):
    path, inputs, outs = keras_file
    out = tmp_path / f"out{suffix}"
    assert main(["convert", str(path), "-o", str(out)]) == 1
    assert "--variants builds" in capsys.readouterr().err and not out.exists()
    back = convert_and_reload(path, out)
    printed = capsys.readouterr().out
    assert "'reset_before': ResetBeforeGRU(recurrent_activation='hard_sigmoid_keras3', activation='tanh') float32, " \
           "batch_first" in printed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantWarning)
        direct = numpyrnn.load_all(path, variants=True)
    assert list(back) == list(direct)
    for name in back:
        same_module(back[name], direct[name], inputs[name])
        np.testing.assert_allclose(run(back[name], inputs[name]), outs[name], rtol=0, atol=1e-5)
    with pytest.warns(VariantWarning, match=r"module 'backwards': built Directions\(.*as the file records"):
        numpyrnn.load(out, layer="backwards")
    if suffix == ".safetensors":  # the configuration is machine-readable JSON in the metadata
        from safetensors import safe_open

        with safe_open(str(out), framework="pt") as f:
            record = json.loads(f.metadata()["numpyrnn"])
    else:
        record = torch.load(out, weights_only=True)._metadata[""]["numpyrnn"]
    by_name = {m["name"]: m for m in record["modules"]}
    assert by_name["summed"]["config"]["variant"] == {
        "class": "PeepholeLSTM", "options": {"recurrent_activation": "sigmoid", "activation": "tanh"},
        "merge_mode": "sum", "time": "forward"}
    assert by_name["reset_before"]["config"]["cell"] == "gru" and by_name["reset_before"]["config"]["batch_first"]


def test_a_stack_of_variant_layers_is_one_module(keras3, tmp_path):
    keras = keras3
    inp = keras.Input((T, I))
    a = keras.layers.GRU(H, reset_after=False, return_sequences=True, name="low")(inp)
    b = keras.layers.GRU(H, reset_after=False, return_sequences=True, name="high")(a)
    model = keras.Model(inp, b)
    rng = np.random.default_rng(4)
    model.set_weights([rng.uniform(-0.7, 0.7, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(tmp_path / "stack.keras")
    mods = load_all_variants(tmp_path / "stack.keras")
    assert list(mods) == ["low"] and type(mods["low"]) is ResetBeforeGRU and mods["low"].num_layers == 2
    x = np.random.default_rng(5).standard_normal((N, T, I)).astype(np.float32)
    np.testing.assert_allclose(run(mods["low"], x), keras.ops.convert_to_numpy(model(x)), rtol=0, atol=1e-5)
    back = convert_and_reload(tmp_path / "stack.keras", tmp_path / "stack.pt")
    same_module(back["low"], mods["low"], x)


def test_go_backwards_and_summed_layers_are_never_stacked(keras3, tmp_path):
    keras = keras3
    inp = keras.Input((T, I))
    a = keras.layers.LSTM(H, go_backwards=True, return_sequences=True, name="a")(inp)
    b = keras.layers.LSTM(H, return_sequences=True, name="b")(a)
    c = keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True), merge_mode="ave", name="c")(b)
    d = keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True), merge_mode="ave", name="d")(c)
    model = keras.Model(inp, d)
    rng = np.random.default_rng(6)
    model.set_weights([rng.uniform(-0.7, 0.7, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    mods = load_all_variants(tmp_path / "m.keras")
    assert list(mods) == ["a", "b", "c", "d"]
    assert type(mods["b"]) is NumpyLSTM  # nothing torch cannot compute: a plain module even with variants=True
    x = np.random.default_rng(7).standard_normal((N, T, I)).astype(np.float32)
    y = x
    for name in mods:
        want = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer(name).output)(x))
        y = run(mods[name], y)
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-5)


def test_variants_must_be_a_bool(keras_file):
    with pytest.raises(TypeError, match="variants should be of type bool, got: str"):
        numpyrnn.load_all(keras_file[0], variants="yes")


# --------------------------------------------------------------------------------------
# Keras 2 (tf_keras) files: hard_sigmoid is Keras 2's 0.2 x + 0.5
# --------------------------------------------------------------------------------------

def test_keras2_hard_sigmoid_refused_then_built(capsys):
    pytest.importorskip("h5py", reason="h5py is not installed: pip install numpyrnn[files]")
    path = DATA / "lstm_hard_sigmoid.h5"
    with pytest.raises(LayoutError, match=r"^lstm_hard_sigmoid\.h5: no recurrent module converts: layer 'lstm': "
                                          r"recurrent_activation='hard_sigmoid'; nn\.LSTM uses sigmoid \(Keras 2's "
                                          r"hard_sigmoid is clip\(0\.2 \* x \+ 0\.5, 0, 1\).*\); variants=True builds "
                                          r"PeepholeLSTM \(numpyrnn\.variants\), which computes it$"):
        numpyrnn.load(path)
    data = np.load(DATA / "lstm_hard_sigmoid.npz")
    m = load_all_variants(path)["lstm"]
    assert type(m) is PeepholeLSTM and m.recurrent_activation == "hard_sigmoid" and not m.peepholes
    np.testing.assert_allclose(run(m, data["x"]), data["y"], rtol=0, atol=1e-5)


def test_keras2_defaults_in_a_summed_bidirectional(tmp_path):
    pytest.importorskip("h5py", reason="h5py is not installed: pip install numpyrnn[files]")
    path = DATA / "bi_sum_gru_keras2_defaults.h5"
    data = np.load(DATA / "bi_sum_gru_keras2_defaults.npz")
    m = load_all_variants(path)["bi"]
    assert type(m) is Directions and m.merge_mode == "sum" and type(m.module) is ResetBeforeGRU
    assert m.module.recurrent_activation == "hard_sigmoid"
    np.testing.assert_allclose(run(m, data["x"]), data["y"], rtol=0, atol=1e-5)
    back = convert_and_reload(path, tmp_path / "bi.safetensors")["bi"]
    same_module(back, m, data["x"])


# --------------------------------------------------------------------------------------
# ONNX files, against onnxruntime
# --------------------------------------------------------------------------------------

def _onnx_file(tmp_path, cell, attrs, *, D=1, L=1, peepholes=False, seed=0):
    pytest.importorskip("onnx", reason="onnx is not installed: pip install numpyrnn[interop]")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install numpyrnn[interop]")
    from .test_onnx import make_model, random_layers, run_onnx

    if D == 2:
        attrs = {**attrs, "direction": "bidirectional"}
    model = make_model(cell, random_layers(cell, D, L, seed=seed, peepholes=peepholes), {"hidden_size": H, **attrs})
    path = tmp_path / f"{cell.lower()}.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.random.default_rng(seed + 10).standard_normal((T, N, I)).astype(np.float32)
    y = run_onnx(model, x)  # (T, D, N, H) per node, reshaped to (T, N, D*H) between nodes
    y = y.transpose(0, 2, 1, 3).reshape(T, N, -1) if y.ndim == 4 else y
    return path, x, y


@pytest.mark.parametrize("D,L", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_onnx_linear_before_reset_0(tmp_path, D, L):
    path, x, want = _onnx_file(tmp_path, "GRU", {}, D=D, L=L, seed=D + L)
    with pytest.raises(LayoutError, match=r"linear_before_reset.*; variants=True builds ResetBeforeGRU "
                                          r"\(numpyrnn\.variants\), which computes it"):
        numpyrnn.load(path)
    mods = load_all_variants(path)
    assert list(mods) == ["rnn0"]
    m = mods["rnn0"]
    assert type(m) is ResetBeforeGRU and m.num_layers == L and m.bidirectional == (D == 2) and not m.batch_first
    np.testing.assert_allclose(run(m, x), want, rtol=0, atol=1e-5)
    back = convert_and_reload(path, tmp_path / "gru.pt")["rnn0"]
    same_module(back, m, x)


@pytest.mark.parametrize("D", [1, 2])
def test_onnx_peephole_lstm(tmp_path, D, capsys):
    path, x, want = _onnx_file(tmp_path, "LSTM", {}, D=D, peepholes=True, seed=3)
    assert main(["convert", str(path), "-o", str(tmp_path / "refused.pt")]) == 1
    err = capsys.readouterr().err
    assert "--variants builds PeepholeLSTM (numpyrnn.variants), which computes it" in err
    m = load_all_variants(path)["rnn0"]
    assert type(m) is PeepholeLSTM and m.peepholes
    np.testing.assert_allclose(run(m, x), want, rtol=0, atol=1e-5)
    back = convert_and_reload(path, tmp_path / "lstm.safetensors")["rnn0"]
    assert "weight_ci_l0" in back.state_dict()
    same_module(back, m, x)


def test_onnx_plain_nodes_stay_plain_with_variants(tmp_path):
    path, x, want = _onnx_file(tmp_path, "GRU", {"linear_before_reset": 1}, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VariantWarning)
        m = numpyrnn.load(path, variants=True)
    assert type(m) is NumpyGRU
    np.testing.assert_allclose(run(m, x), want, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------
# TF1 GRUCell variables (.npz), against TF's documented GRUCell equations
# --------------------------------------------------------------------------------------

def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _grucell(x, v):
    """``tf.compat.v1.nn.rnn_cell.GRUCell`` over ``x`` ``(N, T, I)``, as rnn_cell_impl.py computes it."""
    Hh = v["candidate/bias"].shape[0]
    h = np.zeros((x.shape[0], Hh))
    ys = []
    for t in range(x.shape[1]):
        gates = _sigmoid(np.concatenate([x[:, t], h], 1) @ v["gates/kernel"] + v["gates/bias"])
        r, u = gates[:, :Hh], gates[:, Hh:]
        c = np.tanh(np.concatenate([x[:, t], r * h], 1) @ v["candidate/kernel"] + v["candidate/bias"])
        h = u * h + (1 - u) * c
        ys.append(h)
    return np.stack(ys, 1)


@pytest.mark.parametrize("layers", [1, 2])
def test_tf1_grucell(tmp_path, layers, capsys):
    rng = np.random.default_rng(layers)
    arrays, variables = {}, []
    for k in range(layers):
        width = (I if k == 0 else H) + H
        v = {"gates/kernel": rng.uniform(-0.8, 0.8, (width, 2 * H)), "gates/bias": rng.uniform(-0.8, 0.8, (2 * H,)),
             "candidate/kernel": rng.uniform(-0.8, 0.8, (width, H)), "candidate/bias": rng.uniform(-0.8, 0.8, (H,))}
        variables.append(v)
        scope = "encoder/rnn/gru_cell" if layers == 1 else f"encoder/rnn/multi_rnn_cell/cell_{k}/gru_cell"
        arrays.update({f"{scope}/{n}": a.astype(np.float32) for n, a in v.items()})
    np.savez(tmp_path / "ckpt.npz", **arrays)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    want = x.astype(np.float64)
    for v in variables:
        want = _grucell(want, v)
    with pytest.raises(LayoutError, match=r"GRUCell.*; variants=True builds ResetBeforeGRU"):
        numpyrnn.load(tmp_path / "ckpt.npz")
    m = load_all_variants(tmp_path / "ckpt.npz", batch_first=True)["encoder"]
    assert type(m) is ResetBeforeGRU and m.num_layers == layers and m.batch_first
    np.testing.assert_allclose(run(m, x), want, rtol=0, atol=1e-5)
    back = convert_and_reload(tmp_path / "ckpt.npz", tmp_path / "gru.safetensors", "--batch-first")["encoder"]
    same_module(back, m, x)
    assert main(["inspect", str(tmp_path / "ckpt.npz"), "--variants"]) == 0
    assert "variant module: numpyrnn.variants.ResetBeforeGRU(" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# the command line's own checks
# --------------------------------------------------------------------------------------

def test_variants_flag_is_refused_where_it_means_nothing(tmp_path, capsys):
    np.savez(tmp_path / "w.npz", w0=np.zeros((1, 3, 3 * 5), np.float32))
    assert main(["convert", str(tmp_path / "w.npz"), "-o", str(tmp_path / "o.pt"), "--cell", "gru",
                 "--variants"]) == 2
    assert "--variants applies to Keras, ONNX and TF1 files" in capsys.readouterr().err


def test_a_record_naming_an_unknown_variant_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path, x, _ = _onnx_file(tmp_path, "GRU", {}, seed=2)
    out = tmp_path / "g.safetensors"
    convert_and_reload(path, out)
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        record = json.loads(f.metadata()["numpyrnn"])
    record["modules"][0]["config"]["variant"]["class"] = "os.system"
    save_file(load_file(str(out)), str(tmp_path / "bad.safetensors"), metadata={"numpyrnn": json.dumps(record)})
    with pytest.raises(LayoutError, match=r"variant class 'os\.system' is not one of ResetBeforeGRU, ResetAfterGRU, "
                                          r"PeepholeLSTM"):
        numpyrnn.load(tmp_path / "bad.safetensors")
    record["modules"][0]["config"]["variant"] = {"class": "ResetBeforeGRU", "options": {"peepholes": True}}
    save_file(load_file(str(out)), str(tmp_path / "bad2.safetensors"), metadata={"numpyrnn": json.dumps(record)})
    with pytest.raises(LayoutError, match=r"ResetBeforeGRU takes the options recurrent_activation, activation, "
                                          r"preactivation_clip, the record has \['peepholes'\]"):
        numpyrnn.load(tmp_path / "bad2.safetensors")


def test_keras_weights_file_without_config(keras3, tmp_path):
    """A ``.weights.h5`` records no config: only the bias shape tells ``reset_after=False``, which variants build."""
    keras = keras3
    model = keras.Sequential([keras.Input((T, I)), keras.layers.GRU(H, reset_after=False, return_sequences=True)])
    rng = np.random.default_rng(11)
    model.set_weights([rng.uniform(-0.7, 0.7, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save_weights(tmp_path / "g.weights.h5")
    with pytest.raises(LayoutError, match=r"reset_after=False.*; variants=True builds ResetBeforeGRU"):
        numpyrnn.load(tmp_path / "g.weights.h5")
    m = load_all_variants(tmp_path / "g.weights.h5")["gru"]
    x = np.random.default_rng(12).standard_normal((N, T, I)).astype(np.float32)
    assert type(m) is ResetBeforeGRU
    np.testing.assert_allclose(run(m, x), keras.ops.convert_to_numpy(model(x)), rtol=0, atol=1e-5)


def test_convert_verify_checks_variants(keras_file, tmp_path, capsys):
    path, _, _ = keras_file
    assert main(["convert", str(path), "-o", str(tmp_path / "o.pt"), "--variants", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "oracle: keras" in out and "OK:" in out and (tmp_path / "o.pt").exists()
