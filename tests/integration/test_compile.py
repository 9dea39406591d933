"""torch.compile: numpyrnn modules compile exactly as their torch parents do.

Dynamo refuses to trace ``nn.GRU``/``LSTM``/``RNN`` (and any subclass) unless
``torch._dynamo.config.allow_rnn`` is set: with the default it falls back to eager
for the frame that calls the module, and ``fullgraph=True`` raises.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from numpyrnn import NumpyLSTM

from .common import CLASSES, build, class_id, inputs, torch_twin

# inductor's import path uses torch.jit.script_method, which torch itself deprecates
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


class Model(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.inp = nn.Linear(3, 3)
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, 2)

    def forward(self, x):
        out, _ = self.rnn(torch.tanh(self.inp(x)))
        return self.head(out)


def _pair(cls):
    """The same model twice: once around the numpyrnn module, once around its torch parent."""
    torch.manual_seed(0)
    ours = Model(build(cls))
    theirs = Model(torch_twin(ours.rnn))
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_default_compile_equals_eager_like_torch(cls):
    ours, theirs = _pair(cls)
    x = inputs()
    ours_count, theirs_count = CompileCounterWithBackend("inductor"), CompileCounterWithBackend("inductor")
    out = torch.compile(ours, backend=ours_count)(x)
    ref = torch.compile(theirs, backend=theirs_count)(x)
    torch.testing.assert_close(out, ours(x), rtol=0, atol=0)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # dynamo treats the subclass exactly like the parent (today: the frame falls back to eager)
    assert (ours_count.frame_count, ours_count.op_count) == (theirs_count.frame_count, theirs_count.op_count)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_fullgraph_needs_allow_rnn(cls):
    ours, _ = _pair(cls)
    with pytest.raises(Exception, match="Attempted to wrap RNN, GRU, or LSTM"):
        torch.compile(ours, backend="eager", fullgraph=True)(inputs())


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_fullgraph_with_allow_rnn_forward_and_backward(cls):
    ours, _ = _pair(cls)
    x = inputs()
    counter = CompileCounterWithBackend("eager")
    with torch._dynamo.config.patch(allow_rnn=True):
        compiled = torch.compile(ours, backend=counter, fullgraph=True)
        out = compiled(x)
        grads = torch.autograd.grad(out.square().sum(), list(ours.parameters()))
    assert counter.frame_count == 1
    ref = ours(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(ours.parameters()))
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_aot_eager_inference_with_allow_rnn(cls):
    ours, _ = _pair(cls)
    x = inputs()
    with torch._dynamo.config.patch(allow_rnn=True), torch.no_grad():
        out = torch.compile(ours, backend="aot_eager", fullgraph=True)(x)
        ref = ours(x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)


def _outcome(model, x):
    try:
        out = model(x)
        out.sum().backward()
        return "ok", out.detach()
    except Exception as exc:  # noqa: BLE001 - compared between the two classes below
        return type(exc).__name__, None


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_aot_eager_training_behaves_like_torch(cls):
    """With autograd, AOTAutograd handles the subclass exactly as the parent (for LSTM,
    torch 2.13 raises inside AOTAutograd for both)."""
    ours, theirs = _pair(cls)
    x = inputs()
    with torch._dynamo.config.patch(allow_rnn=True):
        ours_kind, ours_out = _outcome(torch.compile(ours, backend="aot_eager", fullgraph=True), x)
        torch._dynamo.reset()
        theirs_kind, theirs_out = _outcome(torch.compile(theirs, backend="aot_eager", fullgraph=True), x)
    assert ours_kind == theirs_kind
    if ours_kind == "ok":
        torch.testing.assert_close(ours_out, theirs_out, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_inductor_compiles_the_recurrent_module():
    """One real inductor compile (the cheapest of the three on a CPU: the LSTM stays one op)."""
    rnn = build(NumpyLSTM)
    x = inputs()
    counter = CompileCounterWithBackend("inductor")
    with torch._dynamo.config.patch(allow_rnn=True), torch.no_grad():
        out, (h, c) = torch.compile(rnn, backend=counter, fullgraph=True)(x)
        ref, (h_ref, c_ref) = rnn(x)
    assert counter.frame_count == 1 and counter.op_count > 0
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h, h_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c, c_ref, rtol=1e-6, atol=1e-6)
