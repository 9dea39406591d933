"""torch's tools see numpyrnn's modules as the torch classes they are: quantization, TorchScript's
look-up, ``safe_globals`` as a context manager, and warnings left to the user's filters."""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN


class Model(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)


def pair(parent: type, twin: type, **kw):
    torch.manual_seed(0)
    ref = Model(parent(4, 6, **kw))
    mine = Model(twin(4, 6, **kw))
    mine.load_state_dict(ref.state_dict())
    return ref, mine


quantize_dynamic = torch.ao.quantization.quantize_dynamic
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.mark.parametrize("parent, twin", [(nn.LSTM, NumpyLSTM), (nn.GRU, NumpyGRU)], ids=["lstm", "gru"])
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True}], ids=["1l", "2l-bi"])
def test_quantize_dynamic_default_spec_quantizes_like_torch(parent, twin, kw):
    ref, mine = pair(parent, twin, **kw)
    qref, qmine = quantize_dynamic(ref), quantize_dynamic(mine)
    assert type(qmine.rnn) is type(qref.rnn) and type(qref.rnn).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert type(qmine.head) is type(qref.head)
    x = torch.randn(5, 2, 4)
    assert torch.equal(qmine(x), qref(x))
    assert type(mine.rnn) is twin  # the original is untouched (quantize_dynamic copies)
    assert not torch.equal(qmine(x), mine(x))  # it really is quantized


def test_quantize_dynamic_explicit_spec_naming_the_torch_class_covers_the_twin():
    ref, mine = pair(nn.LSTM, NumpyLSTM)
    q = quantize_dynamic(mine, {nn.LSTM}, dtype=torch.qint8)
    assert type(q.rnn) is type(quantize_dynamic(ref, {nn.LSTM}).rnn)
    assert type(q.head) is nn.Linear  # not named in the spec
    q = quantize_dynamic(mine, {nn.GRU})
    assert type(q.rnn) is NumpyLSTM  # a spec that does not name its class leaves it alone
    q = quantize_dynamic(mine, {nn.LSTM}, inplace=True)
    assert q is mine and type(mine.rnn) is not NumpyLSTM


def test_quantize_dynamic_leaves_subclasses_and_rnn_alone_as_for_torch():
    sub = type("MyLSTM", (NumpyLSTM,), {})
    assert type(quantize_dynamic(Model(sub(4, 6))).rnn) is sub
    ref, mine = pair(nn.RNN, NumpyRNN)  # torch's default spec has no nn.RNN
    assert type(quantize_dynamic(ref).rnn) is nn.RNN and type(quantize_dynamic(mine).rnn) is NumpyRNN


def test_safe_globals_is_a_list_and_a_context_manager():
    buf = io.BytesIO()
    torch.save(NumpyLSTM(3, 4), buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buf, weights_only=True)
    buf.seek(0)
    with numpyrnn.safe_globals() as allowed:
        assert allowed == [NumpyGRU, NumpyLSTM, NumpyRNN]
        assert type(torch.load(buf, weights_only=True)) is NumpyLSTM
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):  # allowed only inside the block
        torch.load(buf, weights_only=True)
    buf.seek(0)
    with torch.serialization.safe_globals(numpyrnn.safe_globals()):
        assert type(torch.load(buf, weights_only=True)) is NumpyLSTM
    sg = numpyrnn.safe_globals()
    with sg, sg:  # re-entrant
        buf.seek(0)
        torch.load(buf, weights_only=True)


def test_torchscript_lookup_is_transparent():
    from torch import _jit_internal

    patched = _jit_internal._get_overloaded_methods
    original = patched._numpyrnn_original
    method = nn.GRU.forward
    assert patched(method, NumpyGRU) == original(method, nn.GRU)
    assert patched(method=method, mod_class=NumpyGRU) == original(method, nn.GRU)
    assert patched(method, nn.GRU) == original(method, nn.GRU)
    assert patched(nn.Linear.forward, nn.Linear) == original(nn.Linear.forward, nn.Linear)
    torch.jit.script(NumpyGRU(3, 4))


def test_to_tf1_forget_bias_is_keyword_only():
    lstm = NumpyLSTM(3, 4)
    with pytest.raises(TypeError):
        lstm.to_tf1(0.5)  # type: ignore[misc]
    assert np.array_equal(lstm.to_tf1(forget_bias=0.5)[0]["kernel"], lstm.to_tf1()[0]["kernel"])


def test_from_tf1_is_batch_major_by_default():
    rng = np.random.default_rng(0)
    v = {"kernel": rng.standard_normal((3 + 4, 16)).astype(np.float32), "bias": np.zeros(16, np.float32)}
    assert NumpyLSTM.from_tf1(v).batch_first
    assert not NumpyLSTM.from_tf1(v, batch_first=False).batch_first


def test_user_warning_filters_are_respected():
    w0 = np.zeros((1, 4, 21), np.float32)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("ignore")
        NumpyGRU.from_numpy(w0, dropout=0.5)  # torch warns about dropout with one layer
    assert not seen
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="dropout"):
            NumpyGRU.from_numpy(w0, dropout=0.5)


def test_pickle_by_reference_and_deepcopy_keep_working():
    gru = NumpyGRU(3, 4)
    again = pickle.loads(pickle.dumps(gru))
    assert type(again) is NumpyGRU and type(copy.deepcopy(gru)) is NumpyGRU
    assert b"numpyrnn.modules" in pickle.dumps(gru)
