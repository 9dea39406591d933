"""torch.fx: numpyrnn's modules are leaves for plain fx; numpyrnn's Tracer keeps every recurrent module as a leaf."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn.compat import Tracer

from .common import CLASSES, build, class_id, inputs


class Encoder(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.inp = nn.Linear(3, 3)
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, 2)

    def forward(self, x):
        out, _ = self.rnn(torch.relu(self.inp(x)))
        return self.head(out[:, -1])


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_symbolic_trace_keeps_numpyrnn_modules_as_leaves(cls):
    model = Encoder(build(cls))
    traced = numpyrnn.compat.symbolic_trace(model)
    calls = [n.target for n in traced.graph.nodes if n.op == "call_module"]
    assert calls == ["inp", "rnn", "head"]
    assert traced.rnn is model.rnn
    x = inputs()
    torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


def test_tracer_keeps_nested_and_torch_rnns_as_leaves():
    model = nn.Sequential(Encoder(build(numpyrnn.NumpyLSTM)), nn.Unflatten(1, (2, 1)))
    model.add_module("plain", nn.Identity())
    graph = Tracer().trace(model)
    calls = [n.target for n in graph.nodes if n.op == "call_module"]
    assert calls == ["0.inp", "0.rnn", "0.head", "1", "plain"]
    assert Tracer().is_leaf_module(nn.GRU(3, 4), "rnn")


def test_plain_symbolic_trace_keeps_numpyrnn_modules_as_leaves():
    """Plain fx keeps numpyrnn's three classes as leaves, as it keeps nn.GRU, without any change to the class."""
    for cls in (numpyrnn.NumpyGRU, nn.GRU):
        traced = torch.fx.symbolic_trace(Encoder(build(cls) if cls is not nn.GRU else nn.GRU(3, 4, batch_first=True)))
        assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["inp", "rnn", "head"]
    assert numpyrnn.NumpyGRU.__module__ == "numpyrnn.modules"
    # a subclass of a numpyrnn class may override forward: traced into, as fx does for a subclass of nn.GRU
    sub = type("MyGRU", (numpyrnn.NumpyGRU,), {})
    with pytest.raises(torch.fx.proxy.TraceError, match="symbolically traced variables cannot be used as inputs to control flow"):
        torch.fx.symbolic_trace(Encoder(sub(3, 4, batch_first=True)))
    traced = numpyrnn.compat.symbolic_trace(Encoder(sub(3, 4, batch_first=True)))  # the tracer keeps every recurrent module
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["inp", "rnn", "head"]
