"""``numpyrnn.files``: the safe readers and atomic writers, called directly."""

from __future__ import annotations

import importlib.util
import io
import mmap
import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, files
from numpyrnn.formats.native import infer_state_spec, module_from_state_dict

from ..extras import needs


def _huge_npy_bytes(shape=(10**6, 10**6), payload: bytes = b"\0" * 16) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


class _Plant:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


# --------------------------------------------------------------------------------------
# .npy / .npz
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mmap", [True, False])
def test_huge_npy_header_refused_before_allocating(tmp_path, mmap):
    (tmp_path / "w0.npy").write_bytes(_huge_npy_bytes())
    with pytest.raises(LayoutError, match=r"w0\.npy: the header declares shape \(1000000, 1000000\) of float64 "
                                          r"\(8000000000000 bytes\), but only 16 bytes follow it"):
        files.read_npy(tmp_path / "w0.npy", mmap=mmap)


def test_huge_npz_member_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.npz", "w") as zf:
        zf.writestr("w0.npy", _huge_npy_bytes())
    with pytest.raises(LayoutError, match=r"w\.npz\['w0'\]: the header declares shape \(1000000, 1000000\)"):
        files.read_npz(tmp_path / "w.npz")


def test_truncated_npy_refused(tmp_path):
    np.save(tmp_path / "w0.npy", np.ones((4, 5), dtype=np.float32))
    data = (tmp_path / "w0.npy").read_bytes()
    (tmp_path / "w0.npy").write_bytes(data[:-8])
    with pytest.raises(LayoutError, match=r"\(80 bytes\), but only 72 bytes follow it: the file is truncated"):
        files.read_npy(tmp_path / "w0.npy")


def test_object_arrays_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "fired"
    np.savez(tmp_path / "evil.npz", w0=np.array([_Plant(marker)], dtype=object))
    np.save(tmp_path / "evil.npy", np.array([_Plant(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(LayoutError, match=r"evil\.npz\['w0'\]: holds Python objects \(dtype object\)"):
        files.read_npz(tmp_path / "evil.npz")
    with pytest.raises(LayoutError, match=r"evil\.npy: holds Python objects"):
        files.read_npy(tmp_path / "evil.npy")
    assert not marker.exists()
    np.load(tmp_path / "evil.npy", allow_pickle=True)  # the plant is live: unpickling fires it
    assert marker.exists()


def test_npy_folder_is_memory_mapped_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((2, 4, 3 * (3 + 4)), dtype=np.float32)
    b0 = np.asfortranarray(rng.standard_normal((2, 4, 6)).astype(np.float32))
    np.save(tmp_path / "w0.npy", w0)
    np.save(tmp_path / "b0.npy", b0)
    arrays = files.read_blocks(tmp_path)
    assert isinstance(arrays["w0"], np.memmap) and not arrays["w0"].flags.writeable
    gru = NumpyGRU.from_numpy(**arrays)
    torch.testing.assert_close(gru.state_dict(), NumpyGRU.from_numpy(w0, b0=b0).state_dict(), rtol=0, atol=0)


def test_npz_round_trip_keeps_fortran_order_values(tmp_path):
    a = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    files.write_npz(tmp_path / "a.npz", {"w0": a, "w": None})
    got = files.read_npz(tmp_path / "a.npz")
    assert list(got) == ["w0"]
    np.testing.assert_array_equal(got["w0"], a)


def test_blocks_unknown_key_and_missing_w0(tmp_path):
    np.savez(tmp_path / "x.npz", w0=np.zeros((1, 2, 9)), kernel=np.zeros(3))
    with pytest.raises(LayoutError, match=r"x\.npz: unexpected key\(s\) 'kernel'.*need format='tf1'"):
        files.read_blocks(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", w=np.zeros((1, 1, 2, 9)))
    with pytest.raises(LayoutError, match=r"y\.npz: no 'w0'"):
        files.read_blocks(tmp_path / "y.npz")


# --------------------------------------------------------------------------------------
# torch state_dicts
# --------------------------------------------------------------------------------------

def test_state_dict_wrappers_and_prefix(tmp_path):
    gru = nn.GRU(3, 4)
    torch.save({"state_dict": {f"rnn.{k}": v for k, v in gru.state_dict().items()}}, tmp_path / "w.pt")
    sd = files.read_state_dict(tmp_path / "w.pt")
    torch.testing.assert_close(sd, gru.state_dict(), rtol=0, atol=0)


def test_pickled_module_refused(tmp_path):
    torch.save(nn.GRU(3, 4), tmp_path / "module.pt")
    with pytest.raises(LayoutError, match=r"module\.pt: refused: loading it would run pickled code "
                                          r"\(Unsupported global: GLOBAL torch\.nn\.modules\.rnn\.GRU\)"):
        files.read_state_dict(tmp_path / "module.pt")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_state_dict_writers_load_weights_only(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    lstm = nn.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=True)
    n = files.write_state_dict(tmp_path / f"w{suffix}", lstm.state_dict(), metadata={"numpyrnn.mode": "LSTM"})
    assert n == (tmp_path / f"w{suffix}").stat().st_size
    back = files.read_state_dict(tmp_path / f"w{suffix}")
    torch.testing.assert_close(back, lstm.state_dict(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("mode", "make", "spec_text"),
    [
        ("GRU", lambda: nn.GRU(3, 4, 2, bidirectional=True), "GRU(input=3, hidden=4, layers=2, bidirectional, bias)"),
        ("LSTM", lambda: nn.LSTM(3, 5, proj_size=2, bias=False), "LSTM(input=3, hidden=5, layers=1, unidirectional, no bias, proj=2)"),
        ("RNN_RELU", lambda: nn.RNN(3, 4, 3, nonlinearity="relu"), "RNN(input=3, hidden=4, layers=3, unidirectional, bias, relu)"),
    ],
)
def test_state_dict_spec_inference(mode, make, spec_text):
    rnn = make()
    assert infer_state_spec(rnn.state_dict(), mode).describe() == spec_text
    module = module_from_state_dict(rnn.state_dict(), mode)
    torch.testing.assert_close(module.state_dict(), rnn.state_dict(), rtol=0, atol=0)


def test_state_dict_wrong_cell_and_bad_values():
    sd = nn.GRU(3, 4).state_dict()
    with pytest.raises(LayoutError, match=r"weight_hh_l0 is \(12, 4\); for --cell lstm \(4 gates, hidden=3\) it would be "
                                          r"\(12, 3\): is --cell right\?"):
        infer_state_spec(sd, "LSTM")
    with pytest.raises(LayoutError, match=r"weight_hh_l0 has 15 rows, not a multiple of 4 gates: not --cell lstm"):
        infer_state_spec(nn.GRU(3, 5).state_dict(), "LSTM")
    with pytest.raises(LayoutError, match=r"unexpected key\(s\) 'extra'"):
        infer_state_spec({**sd, "extra": torch.zeros(1)}, "GRU")
    model = nn.Sequential(nn.GRU(3, 4), nn.Linear(4, 2)).state_dict()
    with pytest.raises(LayoutError, match=r"the file holds a whole model: save the recurrent module's own state_dict, "
                                          r"e\.g\. model\.0\.state_dict\(\)"):
        infer_state_spec(model, "GRU")
    bad = dict(sd, bias_hh_l0=torch.zeros(11))
    with pytest.raises(LayoutError, match=r"bias_hh_l0 \(state_dict layout\): expected \(bias_hh_l0\[0\]=12,\), got \(11,\)"):
        module_from_state_dict(bad, "GRU")
    with pytest.raises(TypeError, match=r"weight_ih_l0: dtype torch.int64 cannot hold weights"):
        module_from_state_dict(dict(sd, weight_ih_l0=torch.zeros(12, 3, dtype=torch.long)), "GRU")


# --------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------

def test_atomic_write_failure_leaves_old_content_and_no_temp(tmp_path):
    out = tmp_path / "out.pt"
    out.write_bytes(b"precious")

    def half_then_fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.atomic_write(out, half_then_fail)
    assert out.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["out.pt"]
    assert files.atomic_write(out, lambda tmp: pathlib.Path(tmp).write_bytes(b"new")) == 3
    assert out.read_bytes() == b"new" and os.listdir(tmp_path) == ["out.pt"]


def test_atomic_write_refuses_folders(tmp_path):
    with pytest.raises(LayoutError, match="is a folder; give a file name"):
        files.atomic_write(tmp_path, lambda tmp: None)
    with pytest.raises(LayoutError, match="the output folder .* does not exist"):
        files.atomic_write(tmp_path / "missing" / "x.pt", lambda tmp: None)


# --------------------------------------------------------------------------------------
# TF1 names and Flax trees
# --------------------------------------------------------------------------------------

def test_tf1_structure_groups_layers_and_directions():
    z = np.zeros
    arrays = {
        "stack_bidirectional_rnn/cell_1/bidirectional_rnn/fw/lstm_cell/kernel": z((8, 16)),
        "stack_bidirectional_rnn/cell_1/bidirectional_rnn/fw/lstm_cell/bias": z(16),
        "stack_bidirectional_rnn/cell_1/bidirectional_rnn/bw/lstm_cell/kernel": z((8, 16)),
        "stack_bidirectional_rnn/cell_1/bidirectional_rnn/bw/lstm_cell/bias": z(16),
        "stack_bidirectional_rnn/cell_0/bidirectional_rnn/fw/lstm_cell/kernel": z((7, 16)),
        "stack_bidirectional_rnn/cell_0/bidirectional_rnn/fw/lstm_cell/bias": z(16),
        "stack_bidirectional_rnn/cell_0/bidirectional_rnn/bw/lstm_cell/kernel": z((7, 16)),
        "stack_bidirectional_rnn/cell_0/bidirectional_rnn/bw/lstm_cell/bias": z(16),
        "stack_bidirectional_rnn/cell_0/bidirectional_rnn/bw/lstm_cell/kernel/Adam": z((7, 16)),
        "global_step": z(()),
    }
    source, ignored = files.tf1_structure(arrays)
    assert [sorted(layer) for layer in source] == [["bw", "fw"], ["bw", "fw"]]
    assert source[0]["fw"]["kernel"].shape == (7, 16) and source[1]["bw"]["kernel"].shape == (8, 16)
    assert sorted(ignored) == ["global_step", "stack_bidirectional_rnn/cell_0/bidirectional_rnn/bw/lstm_cell/kernel/Adam"]
    written = files.tf1_arrays(source)
    assert set(written) == {k for k in arrays if k not in ignored}


def test_tf1_single_cell_projection_and_gru_scopes():
    single = {"rnn/lstm_cell/kernel": np.zeros((5, 12)), "rnn/lstm_cell/bias": np.zeros(12),
              "rnn/lstm_cell/projection/kernel": np.zeros((3, 2))}
    source, _ = files.tf1_structure(single)
    assert sorted(source) == ["bias", "kernel", "projection/kernel"]
    assert files.tf1_arrays([source]) == single
    scope = "rnn/multi_rnn_cell/cell_{}/cudnn_compatible_gru_cell/"
    leaves = ["gates/kernel", "gates/bias", "candidate/input_projection/kernel", "candidate/input_projection/bias",
              "candidate/hidden_projection/kernel", "candidate/hidden_projection/bias"]
    gru = {scope.format(k) + leaf: np.full(1, k) for k in (1, 0) for leaf in leaves}
    source, ignored = files.tf1_structure(gru)
    assert ignored == [] and [sorted(layer) for layer in source] == [sorted(leaves)] * 2
    assert [int(layer["gates/kernel"][0]) for layer in source] == [0, 1]
    assert files.tf1_arrays(source, mode="GRU") == gru


@pytest.mark.skipif(importlib.util.find_spec("numpyrnn.layouts.tf1") is None, reason="no TF1 layout in this checkout")
def test_tf1_peepholes_reach_the_layout_and_are_refused():
    from numpyrnn import NumpyLSTM

    cell = {"rnn/lstm_cell/kernel": np.zeros((5, 12)), "rnn/lstm_cell/bias": np.zeros(12),
            "rnn/lstm_cell/w_f_diag": np.zeros(3)}
    source, _ = files.tf1_structure(cell)
    assert "w_f_diag" in source
    with pytest.raises(LayoutError, match=r"\['w_f_diag'\] cannot be loaded into torch"):
        NumpyLSTM.from_tf1(source)


def test_flax_layers_finds_nested_layers_in_order():
    cell = {k: {"kernel": np.zeros((2, 2))} for k in ("i", "h")}
    tree = {"params": {f"RNN_{k}": {"cell": {**cell, "marker": np.full(1, k)}} for k in (10, 2, 0, 1)}}
    tree["params"]["Dense_0"] = {"kernel": np.zeros((2, 2))}
    layers = files.flax_layers(tree)
    assert [int(layer["cell"]["marker"][0]) for layer in layers] == [0, 1, 2, 10]
    with pytest.raises(LayoutError, match="no recurrent layer found"):
        files.flax_layers({"params": {"Dense_0": {"kernel": np.zeros(2)}}})


def test_msgpack_matches_flax_serialization(tmp_path):
    serialization = pytest.importorskip("flax.serialization")
    rng = np.random.default_rng(0)
    tree = {"0": {"cell": {"ir": {"kernel": rng.standard_normal((3, 4)).astype(np.float32),
                                  "bias": rng.standard_normal(4)}}}}
    files.write_msgpack(tmp_path / "a.msgpack", [tree["0"]])
    restored = serialization.msgpack_restore((tmp_path / "a.msgpack").read_bytes())
    np.testing.assert_array_equal(restored["0"]["cell"]["ir"]["kernel"], tree["0"]["cell"]["ir"]["kernel"])
    (tmp_path / "b.msgpack").write_bytes(serialization.to_bytes(tree))
    got = files.read_msgpack(tmp_path / "b.msgpack")
    assert list(files.listing(got)) == list(files.listing(tree))
    np.testing.assert_array_equal(got["0"]["cell"]["ir"]["bias"], tree["0"]["cell"]["ir"]["bias"])


def test_msgpack_bad_records_refused(tmp_path):
    msgpack = pytest.importorskip("msgpack")
    short = msgpack.packb(((100, 100), "float32", b"\0" * 8), use_bin_type=True)
    (tmp_path / "short.msgpack").write_bytes(msgpack.packb({"k": msgpack.ExtType(1, short)}, use_bin_type=True))
    with pytest.raises(LayoutError, match=r"declares shape \(100, 100\) of float32 \(40000 bytes\) but holds 8 bytes"):
        files.read_msgpack(tmp_path / "short.msgpack")
    obj = msgpack.packb(((1,), "object", pickle.dumps(1)), use_bin_type=True)
    (tmp_path / "obj.msgpack").write_bytes(msgpack.packb({"k": msgpack.ExtType(1, obj)}, use_bin_type=True))
    with pytest.raises(LayoutError, match=r"array dtype 'object' is not a plain numeric type; refused"):
        files.read_msgpack(tmp_path / "obj.msgpack")
    (tmp_path / "junk.msgpack").write_bytes(b"\xc1\xc1\xc1")
    with pytest.raises(LayoutError, match=r"junk\.msgpack: not a readable Flax msgpack checkpoint"):
        files.read_msgpack(tmp_path / "junk.msgpack")


# --------------------------------------------------------------------------------------
# Keras files, read without Keras; checked against a real Keras 3 model
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def test_keras_files_read_with_h5py(tmp_path, keras):
    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.LSTM(4, return_sequences=True),
        keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True)),
        keras.layers.Dense(2),
    ])
    model.save(tmp_path / "m.keras")
    layers, info = files.read_keras(tmp_path / "m.keras")
    assert info["names"] == [model.layers[0].name, model.layers[1].name] and info["activation"] == "tanh"
    for got, layer in zip(layers, model.layers[:2]):
        want = layer.get_weights()
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    single = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4)])
    single.save_weights(tmp_path / "one.weights.h5")
    (got,), _ = files.read_keras(tmp_path / "one.weights.h5")
    for a, b in zip(got, single.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    model.save_weights(tmp_path / "two.weights.h5")
    # no config: the groups are separate modules, and the file says what it cannot prove
    mf = numpyrnn.read_model(tmp_path / "two.weights.h5")
    assert mf.names() == ["bidirectional", "lstm"] and ("dense", "layer with weights (not recurrent)") in mf.skipped
    assert "no model config: the file records neither the layer names" in mf.notes[0]
    assert "no layers are stacked" in mf.notes[0]


def test_keras_groups_follow_class_names_not_layer_names(tmp_path, keras):
    """Keras stores layers under gru, gru_1, ... whatever their names: read them in model order."""
    layers = [keras.layers.GRU(n, return_sequences=True, name=f"custom_{9 - n}") for n in range(2, 14)]
    model = keras.Sequential([keras.Input((4, 3)), *layers])
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    for name in ("m.keras", "m.weights.h5"):
        got, info = files.read_keras(tmp_path / name)
        assert [w[1].shape[0] for w in got] == list(range(2, 14))
        for ws, layer in zip(got, layers):
            for a, b in zip(ws, layer.get_weights()):
                np.testing.assert_array_equal(a, b)
    assert files.read_keras(tmp_path / "m.keras")[1]["names"][:2] == ["custom_7", "custom_6"]


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (lambda k: k.layers.GRU(3, recurrent_activation="hard_sigmoid"), r"recurrent_activation='hard_sigmoid'; nn.GRU uses sigmoid"),
        (lambda k: k.layers.LSTM(3, go_backwards=True), r"go_backwards=True returns a time-reversed sequence"),
        (lambda k: k.layers.Bidirectional(k.layers.GRU(3), merge_mode="sum"), r"merge_mode='sum'; torch concatenates"),
        (lambda k: k.layers.SimpleRNN(3, activation="sigmoid"), r"activation='sigmoid'; nn.RNN supports 'tanh' and 'relu' only"),
    ],
)
def test_keras_settings_torch_cannot_compute_are_refused(tmp_path, keras, layer, message):
    keras.Sequential([keras.Input((5, 2)), layer(keras)]).save(tmp_path / "m.keras")
    with pytest.raises(LayoutError, match=message):
        files.read_keras(tmp_path / "m.keras")


def test_keras_corrupted_archive(tmp_path):
    needs("h5py")
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LayoutError, match=r"bad\.keras: not a readable \.keras archive"):
        files.read_keras(tmp_path / "bad.keras")


# --------------------------------------------------------------------------------------
# ONNX: the writer builds a model onnxruntime runs like torch
# --------------------------------------------------------------------------------------

def _onnx_weights(rnn: nn.RNNBase, order: list[int]) -> list[dict]:
    """W/R/B per layer in ONNX gate order, computed here from the torch parameters."""
    G = len(order)
    H = rnn.hidden_size
    out = []
    for k in range(rnn.num_layers):
        sufs = [f"_l{k}"] + ([f"_l{k}_reverse"] if rnn.bidirectional else [])

        def stack(name, sufs=sufs):
            return np.stack([np.concatenate([getattr(rnn, name + s).detach().numpy()[g * H:(g + 1) * H] for g in order])
                             for s in sufs])

        out.append({"W": stack("weight_ih"), "R": stack("weight_hh"),
                    "B": np.concatenate([stack("bias_ih"), stack("bias_hh")], axis=-1)})
        assert out[-1]["W"].shape[1] == G * H
    return out


@pytest.mark.parametrize(
    ("make", "mode", "order"),
    [
        (lambda: nn.GRU(3, 4, 2, bidirectional=True), "GRU", [1, 0, 2]),  # torch r,z,n -> onnx z,r,h
        (lambda: nn.LSTM(3, 5, 2), "LSTM", [0, 3, 1, 2]),  # torch i,f,g,o -> onnx i,o,f,c
        (lambda: nn.RNN(3, 4, 1, nonlinearity="relu", bidirectional=True), "RNN_RELU", [0]),
    ],
)
def test_write_onnx_runs_like_torch(tmp_path, make, mode, order):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    rnn = make()
    files.write_onnx(tmp_path / "m.onnx", _onnx_weights(rnn, order), mode=mode)
    x = np.random.default_rng(1).standard_normal((6, 2, 3)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (y,) = sess.run(["Y"], {"X": x})
    np.testing.assert_allclose(y, rnn(torch.from_numpy(x))[0].detach().numpy(), rtol=0, atol=1e-5)
    model = files.read_onnx(tmp_path / "m.onnx")
    assert model.graph.node[0].op_type == {"GRU": "GRU", "LSTM": "LSTM", "RNN_RELU": "RNN"}[mode]


def test_read_onnx_refuses_junk_and_external_data(tmp_path):
    onnx = pytest.importorskip("onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage\xff\xff")
    with pytest.raises(LayoutError, match=r"junk\.onnx: not"):
        files.read_onnx(tmp_path / "junk.onnx")
    torch.manual_seed(0)
    files.write_onnx(tmp_path / "m.onnx", _onnx_weights(nn.GRU(3, 4), [1, 0, 2]), mode="GRU")
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    got = files.read_onnx(tmp_path / "ext.onnx")  # external data beside the model is read
    for a, b in zip(got.graph.initializer, onnx.load(str(tmp_path / "m.onnx")).graph.initializer):
        assert a.name == b.name
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))


def test_stored_npz_members_are_memory_mapped(tmp_path):
    """np.savez stores members uncompressed: they are mapped read-only, not read into memory."""
    rng = np.random.default_rng(0)
    arrays = {"w0": rng.standard_normal((2, 3, 27)).astype(np.float32),
              "b0": rng.standard_normal((2, 3, 6)),  # float64
              "proj": np.asfortranarray(rng.standard_normal((1, 2, 2, 3)).astype(np.float16)),
              "e": np.zeros((0, 4), np.float32)}
    np.savez(tmp_path / "s.npz", **arrays)
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    stored, packed = files.read_npz(tmp_path / "s.npz"), files.read_npz(tmp_path / "c.npz")
    plain = files.read_npz(tmp_path / "s.npz", mmap=False)
    for k, v in arrays.items():
        for got in (stored, packed, plain):
            assert got[k].shape == v.shape and got[k].dtype == v.dtype and np.array_equal(got[k], v), k
        if v.size:
            assert not stored[k].flags.writeable and isinstance(_root(stored[k]), mmap.mmap), k
            assert not isinstance(_root(packed[k]), mmap.mmap), k
    assert stored["proj"].flags.f_contiguous


def _root(a):
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a.obj if isinstance(a, memoryview) else a
