"""PaddlePaddle .pdparams read without Paddle, checked against the outputs Paddle saved with them."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from numpyrnn import LayoutError
from numpyrnn.formats import paddle

from .paddle_cases import CASES, DATA, check_case


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_paddle(case):
    check_case(DATA, case)


def test_projection_read_from_cell_names_not_flat_names():
    # Paddle 3.3 attaches its flat names to the wrong arrays when proj_size is set
    arrays = paddle.read_pdparams(DATA / "lstm_proj_bidirect.pdparams")
    assert arrays["weight_ih_l0_reverse"].shape == (4, 2)  # really 0.cell_fw.weight_ho
    m = paddle.load_all_from_pdparams(DATA / "lstm_proj_bidirect.pdparams")["rnn"]
    np.testing.assert_array_equal(m.weight_hr_l0.detach().numpy(), arrays["0.cell_fw.weight_ho"].T)
    np.testing.assert_array_equal(m.weight_ih_l1_reverse.detach().numpy(), arrays["1.cell_bw.weight_ih"])


def test_config_and_skipped():
    modules, skipped, problems = paddle.scan(DATA / "model.pdparams")
    (name, cell, config, _), = modules
    assert (name, cell) == ("encoder", "gru")
    assert {k: config[k] for k in ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first")} == \
        dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=False, batch_first=True)
    assert sorted(skipped) == [("head.bias", "not a recurrent weight"), ("head.weight", "not a recurrent weight")]
    _, _, problems = paddle.scan(DATA / "rnn_relu.pdparams")
    assert any("activation is not stored" in p for p in problems)


def test_time_major_and_batch_first_contradiction():
    build = paddle.read(DATA / "lstm2.pdparams")[0][3]
    assert build(time_major=True).batch_first is False
    assert build().batch_first is True
    with pytest.raises(LayoutError, match="time_major=True and batch_first=True contradict"):
        build(time_major=True, batch_first=True)


def test_nonlinearity_only_for_simple_rnn():
    build = paddle.read(DATA / "lstm2.pdparams")[0][3]
    with pytest.raises(TypeError, match="nonlinearity= applies to a SimpleRNN only"):
        build(nonlinearity="relu")


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload, match", [
    ({"w": _Evil()}, r"refused: the pickle names (posix|nt|os)\.system"),
    ({"w": np.array(["a"], dtype=object)}, r"refused: the pickle names numpy.dtype\('O8'\) \(only numeric dtypes are read\)"),
    ({"w": np.ma.masked_array([1.0])}, r"refused: the pickle names numpy.ma.core._mareconstruct"),
])
def test_allow_list_refuses_code(tmp_path, payload, match):
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(LayoutError, match=match):
        paddle.read_pdparams(path)


def test_non_numeric_array_refused(tmp_path):
    path = tmp_path / "s.pdparams"
    path.write_bytes(pickle.dumps({"w": np.array(["ab"])}, protocol=4))
    with pytest.raises(LayoutError, match=r"s.pdparams: refused: the pickle names numpy.dtype\('U2'\)"):
        paddle.read_pdparams(path)


def test_truncated_pickle(tmp_path):
    path = tmp_path / "t.pdparams"
    path.write_bytes((DATA / "lstm2.pdparams").read_bytes()[:200])
    with pytest.raises(LayoutError, match=r"t.pdparams: not a readable .pdparams pickle"):
        paddle.read_pdparams(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "l.pdparams"
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(LayoutError, match=r"expected a state dict .* got list"):
        paddle.read_pdparams(path)


def test_no_recurrent_weights(tmp_path):
    path = tmp_path / "lin.pdparams"
    path.write_bytes(pickle.dumps({"fc.weight": np.zeros((2, 2), np.float32)}))
    with pytest.raises(LayoutError, match=r"no paddle.nn.LSTM/GRU/SimpleRNN weights .* among fc.weight"):
        paddle.read(path)


def test_wrong_shape_named_by_paddle_key(tmp_path):
    arrays = paddle.read_pdparams(DATA / "lstm2.pdparams")
    arrays = {k: v for k, v in arrays.items() if ".cell." in k}
    arrays["1.cell.weight_hh"] = np.zeros((16, 5), np.float32)
    path = tmp_path / "bad.pdparams"
    path.write_bytes(pickle.dumps(arrays))
    with pytest.raises(LayoutError, match=r"bad.pdparams: .*1.cell.weight_hh \(weight_hh_l1\)"):
        paddle.load_all_from_pdparams(path)


def test_missing_direction(tmp_path):
    arrays = paddle.read_pdparams(DATA / "gru_bidirect.pdparams")
    arrays = {k: v for k, v in arrays.items() if not k.startswith("1.cell_bw")and "_l" not in k}
    path = tmp_path / "half.pdparams"
    path.write_bytes(pickle.dumps(arrays))
    with pytest.raises(LayoutError, match=r"layer 1 lacks a direction"):
        paddle.read(path)


def test_missing_parameter_named(tmp_path):
    arrays = paddle.read_pdparams(DATA / "lstm2.pdparams")
    arrays = {k: v for k, v in arrays.items() if ".cell." in k and k != "1.cell.bias_hh"}
    path = tmp_path / "m.pdparams"
    path.write_bytes(pickle.dumps(arrays))
    with pytest.raises(LayoutError, match=r"m.pdparams: 1.cell: missing \['bias_hh'\]"):
        paddle.read(path)


def test_every_flipped_byte_is_a_layout_error_or_loads(tmp_path):
    orig = (DATA / "rnn_relu.pdparams").read_bytes()
    path = tmp_path / "f.pdparams"
    for i in range(len(orig)):
        for bit in (0x01, 0x80, 0xFF):
            raw = bytearray(orig)
            raw[i] ^= bit
            path.write_bytes(bytes(raw))
            try:
                for _, _, _, build in paddle.read(path):
                    build()
            except LayoutError:
                pass


def test_sniff(tmp_path):
    assert paddle.sniff(DATA / "lstm2.pdparams")
    shutil.copy(DATA / "lstm2.npz", tmp_path / "x.pdparams")
    assert not paddle.sniff(tmp_path / "x.pdparams")
    assert not paddle.sniff(DATA / "lstm2.npz")
