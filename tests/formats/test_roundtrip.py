"""Converted files describe themselves: convert, then numpyrnn.load rebuilds the modules exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, NumpyRNN, formats
from numpyrnn.spec import RNNSpec

from ..conftest import make_blocks

safetensors = pytest.importorskip("safetensors")


def _same(a, b) -> None:
    assert type(a) is type(b)
    assert RNNSpec.of(a) == RNNSpec.of(b) and a.batch_first == b.batch_first
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_multi_module_file_round_trip(tmp_path, suffix):
    from numpyrnn.formats import config_of, native

    torch.manual_seed(0)
    mods = {"encoder": NumpyLSTM(3, 4, 2, bidirectional=True, batch_first=True, proj_size=2),
            "decoder": NumpyGRU(5, 6, dtype=torch.float64),
            "relu": NumpyRNN(2, 3, nonlinearity="relu", bias=False, batch_first=True)}
    configs = {n: config_of(m, source=n) for n, m in mods.items()}
    native.write(tmp_path / f"m{suffix}", mods, configs)
    back = numpyrnn.load_all(tmp_path / f"m{suffix}")
    assert list(back) == list(mods)
    for n in mods:
        _same(back[n], mods[n])
    x = torch.randn(2, 7, 3)
    torch.testing.assert_close(back["encoder"](x)[0], mods["encoder"](x)[0], rtol=0, atol=0)
    mf = numpyrnn.read_model(tmp_path / f"m{suffix}")
    assert mf.format == "numpyrnn"
    assert mf.entry("relu").config == {**configs["relu"]}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_each_build_of_a_file_gives_a_module_of_its_own(tmp_path, suffix):
    """The first build that asks for the module as read gets the one built while reading (no copy);
    every other build validates and copies the file's tensors again: training a module that was
    handed out never changes what a later build gives, and options still apply."""
    from numpyrnn.formats import config_of, native

    torch.manual_seed(3)
    gru = NumpyGRU(3, 4, 2, bidirectional=True, batch_first=True)
    native.write(tmp_path / f"m{suffix}", {"g": gru}, {"g": config_of(gru, source="g")})
    mf = numpyrnn.read_model(tmp_path / f"m{suffix}")
    entry = mf.entry("g")
    first = entry.build()
    _same(first, gru)
    assert first.batch_first is True and first.weight_ih_l0.requires_grad
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)  # trained after the load
    second = entry.build()
    _same(second, gru)
    ptrs = {p.data_ptr() for p in first.parameters()}
    assert not ptrs & {p.data_ptr() for p in second.parameters()}
    wide = entry.build(dtype=torch.float64, batch_first=False, dropout=0.25, freeze=True)
    assert wide.weight_ih_l0.dtype == torch.float64 and wide.batch_first is False and wide.dropout == 0.25
    assert not any(p.requires_grad for p in wide.parameters())
    for k, v in wide.state_dict().items():
        assert torch.equal(v, gru.state_dict()[k].double()), k
    again = numpyrnn.load(tmp_path / f"m{suffix}")
    _same(again, gru)
    frozen = entry.build(freeze=True, device="cpu", dtype="float32")
    _same(frozen, gru)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_the_record_is_machine_readable_without_numpyrnn(tmp_path):
    """safetensors: JSON in the metadata; .pt: inside the object torch.load(weights_only=True) returns."""
    from safetensors import safe_open

    torch.manual_seed(1)
    spec = RNNSpec("GRU", input_size=5, hidden_size=4, num_layers=2, bidirectional=True)
    arrays = {k: v for k, v in make_blocks(spec).items() if v is not None}
    np.savez(tmp_path / "w.npz", **arrays)
    from numpyrnn.cli import main

    for suffix in (".safetensors", ".pt"):
        assert main(["convert", str(tmp_path / "w.npz"), "-o", str(tmp_path / f"g{suffix}"), "--batch-first"]) == 0
    with safe_open(str(tmp_path / "g.safetensors"), framework="pt") as f:
        record = json.loads(f.metadata()["numpyrnn"])
    sd = torch.load(tmp_path / "g.pt", weights_only=True)
    assert sd._metadata[""]["numpyrnn"] == record
    (entry,) = record["modules"]
    assert entry["prefix"] == "" and entry["name"] == "w"
    assert entry["config"] == {"cell": "gru", "input_size": 5, "hidden_size": 4, "num_layers": 2,
                               "bidirectional": True, "bias": True, "proj_size": 0, "batch_first": True,
                               "nonlinearity": "tanh", "dtype": "float32", "source": "w", "format": "blocks"}
    # the plain keys still load into the torch module the record describes
    plain = torch.nn.GRU(**{k: entry["config"][k] for k in ("input_size", "hidden_size", "num_layers",
                                                            "bidirectional", "bias", "batch_first")})
    plain.load_state_dict(sd)
    for suffix in (".safetensors", ".pt"):
        back = numpyrnn.load(tmp_path / f"g{suffix}")
        assert back.batch_first
        _same(back, NumpyGRU.from_numpy(**arrays, batch_first=True))
        x = torch.randn(3, 7, 5)
        torch.testing.assert_close(back(x)[0], plain(x)[0], rtol=0, atol=0)


def test_keras_file_to_torch_and_back_keeps_batch_first(tmp_path):
    keras = pytest.importorskip("keras")
    from numpyrnn.cli import main

    x_in = keras.Input((6, 3))
    y = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True), name="enc")(x_in)
    y = keras.layers.Dense(3, name="proj")(y)
    y = keras.layers.LSTM(5, return_sequences=True, name="dec")(y)
    model = keras.Model(x_in, y)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(w.dtype) for w in layer.get_weights()])
    model.save(tmp_path / "m.keras")
    assert main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "dec.pt"), "--layer", "dec"]) == 0
    direct = numpyrnn.load_all(tmp_path / "m.keras")
    back = numpyrnn.load_all(tmp_path / "m.safetensors")
    assert list(back) == ["enc", "dec"]
    for n in back:
        assert back[n].batch_first
        _same(back[n], direct[n])
    _same(numpyrnn.load(tmp_path / "dec.pt"), direct["dec"])
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    enc_out = np.asarray(keras.Model(model.inputs, model.get_layer("enc").output)(x).detach().cpu())
    with torch.no_grad():
        np.testing.assert_allclose(back["enc"](torch.from_numpy(x))[0].numpy(), enc_out, rtol=0, atol=2e-5)


def test_load_messages(tmp_path):
    from numpyrnn.formats import config_of, native

    mods = {"a": NumpyGRU(2, 3), "b": NumpyGRU(3, 3)}
    native.write(tmp_path / "m.pt", mods, {n: config_of(m, source=n) for n, m in mods.items()})
    with pytest.raises(LayoutError, match=r"^m\.pt: holds 2 recurrent module\(s\) \('a', 'b'\); pick one with "
                                          r"layer='a', or take them all with load_all\(path\)$"):
        numpyrnn.load(tmp_path / "m.pt")
    with pytest.raises(LayoutError, match=r"^m\.pt: no recurrent module named 'c'; the file holds 'a', 'b'$"):
        numpyrnn.load(tmp_path / "m.pt", layer="c")
    with pytest.raises(LayoutError, match=r"^m\.pt: the file records a GRU cell \(module 'a'\), but cell='lstm' was "
                                          r"given; drop cell=\.\.\. \(the file says its cell\) or pass cell='gru'$"):
        numpyrnn.load(tmp_path / "m.pt", layer="a", cell="lstm")
    (tmp_path / "what.xyz").write_bytes(b"nothing")
    with pytest.raises(LayoutError, match=r"^what\.xyz: no format recognises this file; numpyrnn reads numpyrnn "
                                          r"\(\.safetensors, .*; name one with format='<name>'$") as caught:
        numpyrnn.load(tmp_path / "what.xyz")
    for fmt in formats.all_formats():  # every format is named, with the suffixes it claims
        assert f"{fmt.name} ({', '.join(fmt.suffixes) or 'folders'})" in str(caught.value)
    with pytest.raises(LayoutError, match=r"^unknown format 'nope'; numpyrnn reads numpyrnn, keras, onnx, flax, tf1, "
                                          r"tfckpt, paddle, blocks$"):
        numpyrnn.load(tmp_path / "m.pt", format="nope")
    np.savez(tmp_path / "w.npz", w0=np.zeros((1, 3, 3 * 5), np.float32))
    with pytest.raises(formats.NeedsOption, match=r"^w\.npz: block arrays do not record their cell; pass cell='gru', "
                                                  r"cell='lstm' or cell='rnn'$"):
        numpyrnn.load(tmp_path / "w.npz")
    assert type(numpyrnn.load(tmp_path / "w.npz", cell="gru")) is NumpyGRU


def test_a_plain_state_dict_loads_with_its_cell_from_the_shapes(tmp_path):
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(3, 4, 2)
    torch.save(lstm.state_dict(), tmp_path / "plain.pt")
    mf = numpyrnn.read_model(tmp_path / "plain.pt")
    assert "a plain state_dict: it records no configuration" in mf.notes[0]
    back = numpyrnn.load(tmp_path / "plain.pt")
    assert type(back) is NumpyLSTM and back.num_layers == 2
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(back(x)[0], lstm(x)[0], rtol=0, atol=0)


def test_a_record_that_disagrees_with_the_tensors_is_refused(tmp_path):
    from numpyrnn.formats import config_of, native

    m = NumpyGRU(2, 3)
    config = config_of(m, source="g")
    native.write(tmp_path / "m.pt", {"g": m}, {"g": {**config, "hidden_size": 4}})
    with pytest.raises(LayoutError, match=r"module 'g': the record says hidden_size=4, the tensors give 3"):
        numpyrnn.load(tmp_path / "m.pt")
