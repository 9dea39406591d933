"""TensorFlow checkpoints read without TensorFlow, checked against the outputs TensorFlow saved with them."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError
from numpyrnn.formats import tfckpt

from .tfckpt_cases import CASES, DATA, check_case


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_tensorflow(case):
    check_case(DATA, case)


def test_crc32c_known_value():
    assert tfckpt.crc32c(b"123456789") == 0xE3069283
    assert tfckpt.crc32c(b"") == 0


@pytest.mark.parametrize("n", [1, 7, 4095, 4096, 4097, 50_001])
def test_crc32c_lanes_match_bytewise(n):
    data = np.random.default_rng(n).integers(0, 256, n).astype(np.uint8).tobytes()
    crc = 0xFFFFFFFF
    for b in data:
        crc = int(tfckpt._T[(crc ^ b) & 0xFF]) ^ (crc >> 8)
    assert tfckpt.crc32c(data) == crc ^ 0xFFFFFFFF


def test_read_checkpoint_names_and_values():
    arrays = tfckpt.read_checkpoint(DATA / "lstm_stack.ckpt")
    assert arrays["rnn/multi_rnn_cell/cell_0/lstm_cell/kernel"].shape == (7, 16)
    assert arrays["global_step"].dtype == np.int64
    assert "rnn/multi_rnn_cell/cell_1/lstm_cell/bias/Adam_1" in arrays
    # every path form names the same checkpoint
    for p in ("lstm_stack.ckpt.index", "lstm_stack.ckpt.data-00000-of-00001"):
        again = tfckpt.read_checkpoint(DATA / p)
        np.testing.assert_array_equal(again["rnn/multi_rnn_cell/cell_0/lstm_cell/kernel"],
                                      arrays["rnn/multi_rnn_cell/cell_0/lstm_cell/kernel"])


def test_object_graph_is_skipped_not_read():
    _, skipped, _ = tfckpt.scan(DATA / "keras_object.ckpt")
    assert ("_CHECKPOINTABLE_OBJECT_GRAPH", "string tensor") in skipped
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" not in tfckpt.read_checkpoint(DATA / "keras_object.ckpt")
    bundle = tfckpt.open_bundle(DATA / "keras_object.ckpt")
    with pytest.raises(LayoutError, match="dtype string; only numeric tensors are read"):
        bundle.read("_CHECKPOINTABLE_OBJECT_GRAPH")


def test_config_records_structure():
    (name, cell, config, _), = tfckpt.read(DATA / "lstm_proj.ckpt")
    assert (name, cell) == ("rnn", "lstm")
    assert {k: config[k] for k in ("input_size", "hidden_size", "proj_size", "num_layers",
                                                              "bidirectional", "forget_bias")} == dict(
        input_size=3, hidden_size=4, proj_size=2, num_layers=1, bidirectional=False, forget_bias=1.0)
    (_, _, config, _), = tfckpt.read(DATA / "stack_bidir.ckpt")
    assert config["num_layers"] == 2 and config["bidirectional"] is True


def test_cudnn_bias_split_in_halves_as_tensorflow_restores_it():
    arrays = tfckpt.read_checkpoint(DATA / "cudnn_lstm.ckpt")
    module = tfckpt.load_all_from_checkpoint(DATA / "cudnn_lstm.ckpt")["cudnn_lstm/rnn"]
    b = arrays["cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/bias"]
    i, j, f, o = np.split(b, 4)  # TF order i, j, f, o -> torch i, f, g, o
    half = np.concatenate([i, f, j, o]) * 0.5
    np.testing.assert_array_equal(module.bias_ih_l0.detach().numpy(), half)
    np.testing.assert_array_equal(module.bias_hh_l0.detach().numpy(), half)
    whole = tfckpt.load_all_from_checkpoint(DATA / "cudnn_lstm.ckpt", split_bias=False)["cudnn_lstm/rnn"]
    np.testing.assert_array_equal(whole.bias_ih_l0.detach().numpy(), half * 2)
    assert not whole.bias_hh_l0.detach().any()
    with pytest.raises(LayoutError, match="add no forget bias"):
        tfckpt.load_all_from_checkpoint(DATA / "cudnn_lstm.ckpt", forget_bias=1.0)


def test_cudnn_gru_splits_gates_only():
    arrays = tfckpt.read_checkpoint(DATA / "cudnn_gru.ckpt")
    module = tfckpt.load_all_from_checkpoint(DATA / "cudnn_gru.ckpt")["cudnn_gru/rnn"]
    scope = "cudnn_gru/rnn/multi_rnn_cell/cell_0/cudnn_compatible_gru_cell/"
    gates = arrays[scope + "gates/bias"]
    np.testing.assert_array_equal(module.bias_ih_l0.detach().numpy()[:8], gates * 0.5)
    np.testing.assert_array_equal(module.bias_hh_l0.detach().numpy()[:8], gates * 0.5)
    np.testing.assert_array_equal(module.bias_ih_l0.detach().numpy()[8:], arrays[scope + "candidate/input_projection/bias"])
    np.testing.assert_array_equal(module.bias_hh_l0.detach().numpy()[8:], arrays[scope + "candidate/hidden_projection/bias"])


def test_forget_bias_option_for_lstm_cell():
    a = tfckpt.load_all_from_checkpoint(DATA / "lstm_proj.ckpt")["rnn"]
    b = tfckpt.load_all_from_checkpoint(DATA / "lstm_proj.ckpt", forget_bias=0.0)["rnn"]
    diff = (a.bias_ih_l0 - b.bias_ih_l0).detach().numpy()
    np.testing.assert_allclose(diff, np.r_[np.zeros(4), np.ones(4), np.zeros(8)], atol=1e-6)


def test_build_options_reach_the_module():
    build = tfckpt.read(DATA / "bidir.ckpt")[0][3]
    m = build(dtype=torch.float64, batch_first=True, freeze=True)
    assert m.batch_first and m.weight_ih_l0.dtype == torch.float64 and not m.weight_ih_l0.requires_grad


@pytest.mark.parametrize("case, match", [
    ("gru_cell", r"rnn/gru_cell: cannot be loaded into torch: TF1's GRUCell .* reset gate before the candidate matmul"),
    ("peephole", r"rnn/lstm_cell: cannot be loaded into torch: \['w_f_diag', 'w_i_diag', 'w_o_diag'\]: .*peephole"),
    ("keras_gru_v1", r"layer_with_weights-0/cell/bias: shape \(12,\): .*reset_after=False"),
])
def test_refusals_name_the_scope_and_reason(case, match):
    with pytest.raises(LayoutError, match=match):
        tfckpt.read(DATA / f"{case}.ckpt")


def test_independent_stacks_are_two_modules_with_a_note():
    modules, _, problems = tfckpt.scan(DATA / "independent.ckpt")
    assert [m[0] for m in modules] == ["bidirectional_rnn/bw", "bidirectional_rnn/fw"]
    assert "time-reversed input" in modules[0][2]["note"]
    assert any("time-reversed" in p for p in problems)


def test_sniff():
    assert tfckpt.sniff(DATA / "bidir.ckpt")
    assert tfckpt.sniff(DATA / "bidir.ckpt.index")
    assert not tfckpt.sniff(DATA / "bidir.npz")
    assert not tfckpt.sniff(DATA / "nothing.ckpt")


def test_directory_with_checkpoint_state(tmp_path):
    for f in DATA.glob("bidir.ckpt.*"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "bidir.ckpt"\nall_model_checkpoint_paths: "bidir.ckpt"\n')
    assert list(tfckpt.load_all_from_checkpoint(tmp_path)) == ["bidirectional_rnn"]


# --------------------------------------------------------------------------------------
# damaged and hostile files
# --------------------------------------------------------------------------------------

@pytest.fixture
def copy(tmp_path):
    def make(case="bidir"):
        for f in DATA.glob(f"{case}.ckpt.*"):
            shutil.copy(f, tmp_path / f.name)
        return tmp_path / f"{case}.ckpt"
    return make


def test_missing_index(tmp_path):
    with pytest.raises(LayoutError, match=r"no checkpoint index model.ckpt.index"):
        tfckpt.read_checkpoint(tmp_path / "model.ckpt")


def test_missing_shard(copy):
    prefix = copy()
    prefix.with_name(prefix.name + ".data-00000-of-00001").unlink()
    with pytest.raises(LayoutError, match=r"data shard bidir.ckpt.data-00000-of-00001 is missing"):
        tfckpt.read_checkpoint(prefix)


def test_truncated_shard(copy):
    prefix = copy()
    shard = prefix.with_name(prefix.name + ".data-00000-of-00001")
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(LayoutError, match=r"bytes \d+\.\.\d+ lie outside bidir.ckpt.data-00000-of-00001 \(100 bytes\)"):
        tfckpt.read_checkpoint(prefix)


def test_flipped_data_byte_fails_crc(copy):
    prefix = copy()
    shard = prefix.with_name(prefix.name + ".data-00000-of-00001")
    raw = bytearray(shard.read_bytes())
    raw[5] ^= 0x40
    shard.write_bytes(bytes(raw))
    with pytest.raises(LayoutError, match=r"CRC32C of its \d+ bytes in bidir.ckpt.data-00000-of-00001 does not match"):
        tfckpt.read_checkpoint(prefix)
    assert tfckpt.read_checkpoint(prefix, check_crc=False)


@pytest.mark.parametrize("at", [0, 10, 40])
def test_flipped_index_byte_is_refused(copy, at):
    prefix = copy()
    index = prefix.with_name(prefix.name + ".index")
    raw = bytearray(index.read_bytes())
    raw[at] ^= 0x01
    index.write_bytes(bytes(raw))
    with pytest.raises(LayoutError, match=r"bidir.ckpt.index"):
        tfckpt.read_checkpoint(prefix)


@pytest.mark.parametrize("size", [0, 20, 47])
def test_short_index(copy, size):
    prefix = copy()
    index = prefix.with_name(prefix.name + ".index")
    index.write_bytes(index.read_bytes()[:size])
    with pytest.raises(LayoutError, match=r"shorter than a table footer|no table magic"):
        tfckpt.read_checkpoint(prefix)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.index").write_bytes(b"\0" * 64)
    with pytest.raises(LayoutError, match=r"x.index: no table magic number at the end; not a TensorFlow checkpoint index"):
        tfckpt.read_checkpoint(tmp_path / "x")


def test_no_recurrent_cell(copy, monkeypatch):
    prefix = copy("lstm_stack")
    # the same checkpoint without its cells: only global_step and Adam's beta powers remain
    bundle = tfckpt.open_bundle(prefix)
    bundle.entries = {k: v for k, v in bundle.entries.items() if "lstm_cell" not in k}
    monkeypatch.setattr(tfckpt, "open_bundle", lambda path: bundle)
    with pytest.raises(LayoutError, match=r"no recurrent cell that torch can compute among 3 variables \(beta1_power"):
        tfckpt.read(prefix)


def _entry_bytes(offset, size):
    def varint(v):
        out = b""
        while True:
            b, v = v & 0x7F, v >> 7
            out += struct.pack("B", b | (0x80 if v else 0))
            if not v:
                return out
    shape = b"\x12" + varint(2) + b"\x08" + varint(4)
    return b"\x08\x01\x12" + varint(len(shape)) + shape + b"\x20" + varint(offset) + b"\x28" + varint(size)


def test_entry_decoding_checks_sizes():
    e = tfckpt._entry("t", _entry_bytes(8, 16), "t")
    assert (e.shape, e.offset, e.size, e.dtype_name) == ((4,), 8, 16, "float32")
    with pytest.raises(LayoutError, match="truncated varint"):
        tfckpt._entry("t", b"\x08", "t")
    with pytest.raises(LayoutError, match="length 5 runs past the end"):
        tfckpt._entry("t", b"\x12\x05\x00", "t")


def test_every_flipped_index_bit_is_caught(copy):
    """Any single bit flip in an index is refused, except an equivalent varint encoding."""
    prefix = copy()
    index = prefix.with_name(prefix.name + ".index")
    orig = index.read_bytes()
    want = tfckpt.read_checkpoint(prefix)
    passed = []
    for i in range(len(orig)):
        for bit in (0x01, 0x80):
            raw = bytearray(orig)
            raw[i] ^= bit
            index.write_bytes(bytes(raw))
            try:
                got = tfckpt.read_checkpoint(prefix)
            except LayoutError:
                continue
            assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
            passed.append((i, bit))
    assert len(passed) <= 1  # 0x8F 0x00 reads as 15, like 0x0F


def test_every_truncation_is_refused(copy):
    prefix = copy()
    index = prefix.with_name(prefix.name + ".index")
    orig = index.read_bytes()
    for n in range(len(orig)):
        index.write_bytes(orig[:n])
        with pytest.raises(LayoutError):
            tfckpt.read_checkpoint(prefix)


def test_savedmodel_variables_named_through_the_object_graph():
    bundle = tfckpt.open_bundle(DATA / "keras_savedmodel")
    names = tfckpt.object_graph_names(bundle)
    assert names["variables/0/.ATTRIBUTES/VARIABLE_VALUE"] == "layer_with_weights-0/cell/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert names["variables/6/.ATTRIBUTES/VARIABLE_VALUE"] == \
        "layer_with_weights-1/backward_layer/cell/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def test_keras2_cudnn_layer_in_a_checkpoint():
    (name, cell, config, _), = tfckpt.read(DATA / "keras_cu_dnnlstm.ckpt")
    assert (name, cell, config["keras_layer"]) == ("cu_dnnlstm", "lstm", "CuDNNLSTM")


def test_every_flipped_shard_bit_of_the_object_graph_is_harmless(tmp_path):
    src = DATA / "keras_savedmodel" / "variables"
    (tmp_path / "variables").mkdir()
    for f in src.iterdir():
        shutil.copy(f, tmp_path / "variables" / f.name)
    shard = tmp_path / "variables" / "variables.data-00000-of-00001"
    orig = shard.read_bytes()
    e = tfckpt.open_bundle(tmp_path).entries["_CHECKPOINTABLE_OBJECT_GRAPH"]
    for i in range(e.offset, e.offset + e.size, 41):  # every 41st byte: the graph is 8 kB
        raw = bytearray(orig)
        raw[i] ^= 0x80
        shard.write_bytes(bytes(raw))
        try:
            tfckpt.read(tmp_path)
        except LayoutError:
            pass


@pytest.mark.parametrize("case,cls", [("gru_cell", "ResetBeforeGRU"), ("peephole", "PeepholeLSTM")])
def test_variants_build_the_cells_torch_cannot(case, cls, tmp_path, capsys):
    """TF1's GRUCell and LSTMCell(use_peepholes=True) with variants=True, against TensorFlow's saved output."""
    import warnings

    import numpyrnn
    from numpyrnn.cli import main
    from numpyrnn.variants import VariantWarning

    path = DATA / f"{case}.ckpt"
    with pytest.raises(LayoutError, match=rf"; variants=True builds {cls} \(numpyrnn\.variants\), which computes it"):
        numpyrnn.load(path)
    with pytest.warns(VariantWarning, match=rf"^{case}\.ckpt: module 'rnn': built {cls}\(3, 4"):
        mods = numpyrnn.load_all(path, variants=True)
    m = mods["rnn"]
    assert type(m).__name__ == cls and not m.batch_first
    data = np.load(DATA / f"{case}.npz")
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(data["x"]))[0].numpy(), data["y"], rtol=0, atol=1e-5)
    assert numpyrnn.read_model(path, variants=True).modules[0].config["variant"]["class"] == cls
    out = tmp_path / "m.safetensors"
    assert main(["convert", str(path), "-o", str(out), "--variants"]) == 0
    assert cls in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantWarning)
        back = numpyrnn.load(out)
    assert type(back) is type(m)
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
