"""TF checkpoints and Paddle state dicts through the format registry: load_all, convert, load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import numpyrnn
from numpyrnn.formats import detect_format, paddle, tfckpt

DATA = Path(__file__).resolve().parent.parent / "data"
CHECKPOINTS = ["basic.ckpt", "bidir.ckpt", "lstm_stack.ckpt", "stack_bidir.ckpt", "lstm_proj.ckpt", "cudnn_lstm.ckpt"]
PADDLE = ["lstm2.pdparams", "gru_bidirect.pdparams"]


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        sa, sb = a[name].state_dict(), b[name].state_dict()
        assert list(sa) == list(sb), name
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)
        assert a[name].batch_first == b[name].batch_first, name


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_checkpoints_load_through_the_registry_as_the_reader_builds_them(name):
    path = DATA / "tf_checkpoints" / name
    assert detect_format(path).name == "tfckpt"  # a prefix names two files: it is sniffed as it is
    _same(numpyrnn.load_all(path), tfckpt.load_all_from_checkpoint(path))


@pytest.mark.parametrize("name", PADDLE)
def test_paddle_state_dicts_load_through_the_registry_as_the_reader_builds_them(name):
    path = DATA / "paddle_params" / name
    assert detect_format(path).name == "paddle"
    _same(numpyrnn.load_all(path), paddle.load_all_from_pdparams(path))


@pytest.mark.parametrize("path", [DATA / "tf_checkpoints" / "bidir.ckpt", DATA / "paddle_params" / "lstm2.pdparams"])
def test_convert_then_load_rebuilds_the_modules(tmp_path, path):
    from numpyrnn.cli import main

    out = tmp_path / "out.safetensors"
    pytest.importorskip("safetensors")
    assert main(["convert", str(path), "-o", str(out)]) == 0
    _same(numpyrnn.load_all(out), numpyrnn.load_all(path))


def test_refused_cells_are_listed_with_their_reason():
    mf = numpyrnn.read_model(DATA / "tf_checkpoints" / "lstm_stack.ckpt")
    assert mf.format == "tfckpt" and mf.modules
    with pytest.raises(numpyrnn.LayoutError, match="GRUCell"):
        numpyrnn.read_model(DATA / "tf_checkpoints" / "gru_cell.ckpt")
