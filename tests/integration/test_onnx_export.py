"""torch.onnx.export of models holding numpyrnn modules, run back in onnxruntime."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from numpyrnn import NumpyGRU

from .common import CLASSES, build, class_id, inputs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

EXPORTERS = ["torchscript", "dynamo"]


class Model(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        out, _ = self.rnn(x)
        return out


def export(model: nn.Module, x: torch.Tensor, exporter: str):
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
        program = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], output_names=["y"], verbose=False)
        return program.model_proto
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"])
    return onnx.load_from_string(buf.getvalue())


def run_ort(proto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def recurrent_nodes(proto, op: str):
    return [n for n in proto.graph.node if n.op_type == op]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_export_runs_in_onnxruntime(cls, exporter):
    model = Model(build(cls, layers=2, bidirectional=True)).eval()
    x = inputs()
    proto = export(model, x, exporter)
    onnx.checker.check_model(proto)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(run_ort(proto, x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_exported_gru_resets_after_the_matmul(exporter):
    """torch's GRU is ONNX's ``linear_before_reset=1``; the default 0 would compute something else."""
    model = Model(build(NumpyGRU)).eval()
    proto = export(model, inputs(), exporter)
    grus = recurrent_nodes(proto, "GRU")
    assert grus, f"no GRU node in {[n.op_type for n in proto.graph.node]}"
    for node in grus:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs.get("linear_before_reset") == 1, attrs


def test_lstm_projection_export_fails_like_torch():
    """The TorchScript-based exporter refuses LSTM projections for nn.LSTM; the same for NumpyLSTM."""
    from numpyrnn import NumpyLSTM

    x = inputs()
    for module in (NumpyLSTM(3, 4, proj_size=2, batch_first=True), nn.LSTM(3, 4, proj_size=2, batch_first=True)):
        with pytest.raises(Exception, match="LSTMs with projections"):
            export(Model(module).eval(), x, "torchscript")
