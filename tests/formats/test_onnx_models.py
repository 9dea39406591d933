"""ONNX models as torch.onnx.export writes them: both exporters, external data, separate modules."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM

onnx = pytest.importorskip("onnx")


class LinearBetween(nn.Module):
    def __init__(self):
        super().__init__()
        self.low = nn.LSTM(3, 16, batch_first=True)
        self.mid = nn.Linear(16, 24)
        self.high = nn.LSTM(24, 16, batch_first=True)

    def forward(self, x):
        y, _ = self.low(x)
        y, _ = self.high(self.mid(y))
        return y


class Stacked(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 16, num_layers=2, bidirectional=True)

    def forward(self, x):
        return self.gru(x)[0]


def _export(model, x, path, dynamo: bool) -> None:
    if dynamo:
        pytest.importorskip("onnxscript", reason="torch.onnx's dynamo exporter needs onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=dynamo)


def _external(path) -> None:
    """Move every initializer to ``<name>.data`` beside the model, as torch's exporter does for big models."""
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=path.name + ".data", size_threshold=0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
def test_a_linear_between_two_lstms_gives_two_modules(tmp_path, dynamo):
    model = LinearBetween().eval()
    x = torch.randn(2, 7, 3)
    path = tmp_path / "model.onnx"
    _export(model, x, path, dynamo)
    _external(path)
    assert (tmp_path / "model.onnx.data").exists()
    mf = numpyrnn.read_model(path)
    assert len(mf.modules) == 2 and not mf.problems
    low, high = numpyrnn.load_all(path).values()
    assert type(low) is NumpyLSTM and type(high) is NumpyLSTM and (low.input_size, high.input_size) == (3, 24)
    with torch.no_grad():
        want_low, _ = model.low(x)
        torch.testing.assert_close(low(x.transpose(0, 1))[0].transpose(0, 1), want_low, rtol=0, atol=1e-5)
        y = high(model.mid(want_low).transpose(0, 1))[0].transpose(0, 1)
        torch.testing.assert_close(y, model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
def test_a_chained_stack_stays_one_module(tmp_path, dynamo):
    model = Stacked().eval()
    x = torch.randn(7, 2, 3)
    path = tmp_path / "model.onnx"
    _export(model, x, path, dynamo)
    _external(path)
    (module,) = numpyrnn.load_all(path).values()
    assert type(module) is NumpyGRU and module.num_layers == 2 and module.bidirectional and not module.batch_first
    with torch.no_grad():
        torch.testing.assert_close(module(x)[0], model(x), rtol=0, atol=1e-5)


def test_the_dynamo_exporters_default_output_converts(tmp_path):
    """torch.onnx.export(dynamo=True) writes model.onnx and model.onnx.data; convert reads both."""
    from numpyrnn.cli import main

    lstm = nn.LSTM(3, 64, batch_first=True).eval()  # big enough for the exporter to put weights outside
    x = torch.randn(2, 5, 3)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, x):
            return self.lstm(x)[0]

    path = tmp_path / "model.onnx"
    _export(Wrap().eval(), x, path, dynamo=True)
    assert (tmp_path / "model.onnx.data").exists()
    assert main(["convert", str(path), "-o", str(tmp_path / "out.pt")]) == 0
    assert main(["inspect", str(path)]) == 0
    back = numpyrnn.load(tmp_path / "out.pt", batch_first=True)
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], lstm(x)[0], rtol=0, atol=1e-5)


def _with_location(tmp_path, location: str):
    model = Stacked().eval()
    path = tmp_path / "m.onnx"
    _export(model, torch.randn(4, 2, 3), path, dynamo=False)
    _external(path)
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(m, str(path))
    return path


def test_external_data_outside_the_models_folder_is_refused(tmp_path):
    inside = tmp_path / "model"
    inside.mkdir()
    path = _with_location(inside, "../secret.data")
    with pytest.raises(LayoutError, match=r"m\.onnx: initializer '.*': external data file '\.\./secret\.data': "
                                          r"names a parent folder \('\.\.'\)"):
        numpyrnn.read_model(path)
    path = _with_location(inside, str(tmp_path / "abs.data"))
    with pytest.raises(LayoutError, match=r"an absolute name; numpyrnn reads data files in the model's own folder"):
        numpyrnn.read_model(path)
    (tmp_path / "outside.data").write_bytes(b"\0" * 4096)
    os.symlink(tmp_path / "outside.data", inside / "link.data")
    path = _with_location(inside, "link.data")
    with pytest.raises(LayoutError, match=r"'link\.data': resolves to a file outside the model's folder"):
        numpyrnn.read_model(path)
    path = _with_location(inside, "missing.data")
    with pytest.raises(LayoutError, match=r"'missing\.data': no such file next to the model"):
        numpyrnn.read_model(path)


def test_a_truncated_data_file_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    _export(Stacked().eval(), torch.randn(4, 2, 3), path, dynamo=False)
    _external(path)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(LayoutError, match=r"but the file holds 100 bytes: truncated or not this model's data"):
        numpyrnn.read_model(path)


def test_cell_contradicting_the_node_names_the_recorded_cell(tmp_path):
    from numpyrnn.cli import main

    path = tmp_path / "m.onnx"
    _export(Stacked().eval(), torch.randn(4, 2, 3), path, dynamo=False)
    with pytest.raises(LayoutError, match=r"m\.onnx: the file records a GRU cell \(GRU node .*\), but cell='lstm' was given"):
        numpyrnn.load(path, cell="lstm")
    assert main(["convert", str(path), "-o", str(tmp_path / "o.pt"), "--cell", "lstm"]) == 1
    assert not (tmp_path / "o.pt").exists()
