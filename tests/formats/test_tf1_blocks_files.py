"""TF1 and block files through the registry: one module per TF1 scope, the cell where the file proves it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, formats
from numpyrnn.formats.tf1 import tf1_arrays
from numpyrnn.spec import RNNSpec

from ..conftest import make_blocks


def test_tf1_scopes_are_separate_modules(tmp_path):
    torch.manual_seed(0)
    enc, dec = torch.nn.LSTM(3, 4, 2), torch.nn.LSTM(5, 4)
    arrays = {f"encoder/{k}": v for k, v in tf1_arrays(NumpyLSTM.to_tf1(enc)).items()}
    arrays.update({f"decoder/{k}": v for k, v in tf1_arrays(NumpyLSTM.to_tf1(dec)).items()})
    arrays["global_step"] = np.array(7)
    np.savez(tmp_path / "ckpt.npz", **arrays)
    mf = numpyrnn.read_model(tmp_path / "ckpt.npz")
    assert mf.format == "tf1" and mf.names() == ["decoder", "encoder"]
    assert ("global_step", "variable (not a TF1 cell's)") in mf.skipped
    mods = numpyrnn.load_all(tmp_path / "ckpt.npz")  # lstm_cell in the names: no cell= needed
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(mods["encoder"](x)[0], enc(x)[0], rtol=0, atol=1e-5)
    with pytest.raises(LayoutError, match=r"the file records an LSTM cell \(scope 'decoder'\), but cell='rnn'"):
        numpyrnn.load_all(tmp_path / "ckpt.npz", cell="rnn")


def test_tf1_names_that_do_not_say_the_cell_need_it(tmp_path):
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(3, 4)
    arrays = {k.replace("lstm_cell/", "my_cell/"): v for k, v in tf1_arrays(NumpyLSTM.to_tf1(lstm)).items()}
    np.savez(tmp_path / "ckpt.npz", **arrays)
    with pytest.raises(formats.NeedsOption, match=r"ckpt\.npz: the variable names of scope 'rnn' do not record the "
                                                  r"cell; pass cell='lstm' or cell='rnn'"):
        numpyrnn.load(tmp_path / "ckpt.npz")
    module = numpyrnn.load(tmp_path / "ckpt.npz", cell="lstm", forget_bias=1.0)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(module(x)[0], lstm(x)[0], rtol=0, atol=1e-5)


def test_blocks_with_biases_record_their_cell(tmp_path):
    spec = RNNSpec("GRU", input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    arrays = {k: v for k, v in make_blocks(spec, dtype=np.float64).items() if v is not None}
    np.savez(tmp_path / "w.npz", **arrays)
    module = numpyrnn.load(tmp_path / "w.npz", gates="rzn")
    assert type(module) is NumpyGRU and module.weight_ih_l0.dtype == torch.float64 and not module.batch_first
    want = NumpyGRU.from_numpy(**arrays, dtype=torch.float64)
    for k, v in want.state_dict().items():
        assert torch.equal(module.state_dict()[k], v)
    assert numpyrnn.load(tmp_path / "w.npz", dtype="float32").weight_ih_l0.dtype == torch.float32
    assert numpyrnn.load(tmp_path / "w.npz", batch_first=True).batch_first


def test_detect_format_by_content():
    names = [f.name for f in formats.all_formats()]
    assert names == ["numpyrnn", "keras", "onnx", "flax", "tf1", "tfckpt", "paddle", "blocks"]
    assert formats.get("keras").suffixes == (".keras", ".weights.h5", ".h5")
