"""NumpyGRU/LSTM/RNN behave exactly like the torch modules they subclass."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import numpyrnn
from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN
from numpyrnn.spec import RNNSpec

from .conftest import make_blocks

CASES = {
    "GRU": (NumpyGRU, nn.GRU, RNNSpec("GRU", 5, 4, num_layers=2, bidirectional=True, bias=True)),
    "LSTM": (NumpyLSTM, nn.LSTM, RNNSpec("LSTM", 5, 4, num_layers=2, bidirectional=True, bias=True, proj_size=3)),
    "RNN": (NumpyRNN, nn.RNN, RNNSpec("RNN_TANH", 5, 4, num_layers=2, bidirectional=True, bias=True)),
}


def blocks_for(name, spec, **kw):
    a = make_blocks(spec, **kw)
    if name != "LSTM":
        a.pop("proj")
    return a


@pytest.fixture(params=list(CASES))
def case(request):
    cls, parent, spec = CASES[request.param]
    arrays = blocks_for(request.param, spec)
    return request.param, cls, parent, spec, arrays, cls.from_numpy(**arrays)


def run(module, x):
    out = module(x)
    return out[0]


X = torch.from_numpy(np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32))


def test_isinstance_and_same_state_dict_layout(case):
    name, cls, parent, spec, arrays, m = case
    assert isinstance(m, parent) and isinstance(m, nn.RNNBase)
    ref = parent(**spec.module_kwargs())
    assert [(k, v.shape) for k, v in m.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
    assert m._flat_weights_names == ref._flat_weights_names
    assert all(a is b for a, b in zip(m._flat_weights, (getattr(m, n) for n in m._flat_weights_names)))
    assert "forward" not in cls.__dict__  # forward is the parent's


def test_state_dict_loads_both_ways(case):
    name, cls, parent, spec, arrays, m = case
    plain = parent(**spec.module_kwargs())
    plain.load_state_dict(m.state_dict())
    back = cls(**spec.module_kwargs())
    back.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(run(plain, X), run(m, X), rtol=0, atol=0)
        torch.testing.assert_close(run(back, X), run(m, X), rtol=0, atol=0)


def test_plain_constructor_works_like_parent(case):
    name, cls, parent, spec, arrays, m = case
    torch.manual_seed(0)
    a = cls(**spec.module_kwargs())
    torch.manual_seed(0)
    b = parent(**spec.module_kwargs())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_deepcopy_pickle_and_torch_save(case, tmp_path):
    name, cls, parent, spec, arrays, m = case
    with torch.no_grad():
        expected = run(m, X)
        for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            assert type(other) is cls
            torch.testing.assert_close(run(other, X), expected, rtol=0, atol=0)
            assert other.weight_ih_l0.data_ptr() != m.weight_ih_l0.data_ptr()
        path = tmp_path / "whole.pt"
        torch.save(m, path)
        whole = torch.load(path, weights_only=False)
        torch.testing.assert_close(run(whole, X), expected, rtol=0, atol=0)
        buf = io.BytesIO()
        torch.save(m.state_dict(), buf)
        buf.seek(0)
        fresh = cls(**spec.module_kwargs())
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        torch.testing.assert_close(run(fresh, X), expected, rtol=0, atol=0)


def test_to_dtype_keeps_working(case):
    name, cls, parent, spec, arrays, m = case
    d = copy.deepcopy(m).to(torch.float64)
    assert all(p.dtype == torch.float64 for p in d.parameters())
    assert all(a is getattr(d, n) for a, n in zip(d._flat_weights, d._flat_weights_names))
    with torch.no_grad():
        torch.testing.assert_close(run(d, X.double()).float(), run(m, X), rtol=1e-5, atol=1e-5)


def test_packed_sequence(case):
    name, cls, parent, spec, arrays, m = case
    plain = parent(**spec.module_kwargs())
    plain.load_state_dict(m.state_dict())
    lengths = torch.tensor([6, 4, 2])
    packed = pack_padded_sequence(X, lengths)
    with torch.no_grad():
        ours, _ = pad_packed_sequence(m(packed)[0])
        theirs, _ = pad_packed_sequence(plain(packed)[0])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_dropout_is_applied_in_training_only():
    spec = CASES["GRU"][2]
    arrays = blocks_for("GRU", spec)
    m = NumpyGRU.from_numpy(**arrays, dropout=0.5)
    assert m.dropout == 0.5
    m.eval()
    with torch.no_grad():
        a, b = run(m, X), run(m, X)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    m.train()
    torch.manual_seed(0)
    with torch.no_grad():
        c = run(m, X)
    assert not torch.allclose(a, c)


def test_fine_tuning_lowers_the_loss(case):
    name, cls, parent, spec, arrays, m = case
    assert all(p.requires_grad for p in m.parameters())
    target = torch.zeros_like(run(m, X))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = ((run(m, X) - target) ** 2).mean()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_freeze(case):
    name, cls, parent, spec, arrays, m = case
    frozen = cls.from_numpy(**arrays, freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not run(frozen, X).requires_grad


def test_dtype_defaults_to_torch_default_whatever_numpy_says():
    spec = CASES["GRU"][2]
    a64 = blocks_for("GRU", spec, dtype=np.float64)
    assert NumpyGRU.from_numpy(**a64).weight_ih_l0.dtype == torch.get_default_dtype()
    prev = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert NumpyGRU.from_numpy(**blocks_for("GRU", spec)).weight_ih_l0.dtype == torch.float64
    finally:
        torch.set_default_dtype(prev)
    assert NumpyGRU.from_numpy(**a64, dtype=torch.float16).weight_hh_l1.dtype == torch.float16


def test_device_argument_builds_there():
    spec = CASES["GRU"][2]
    m = NumpyGRU.from_numpy(**blocks_for("GRU", spec), device="cpu")
    assert all(p.device.type == "cpu" for p in m.parameters())


def test_constructor_flags_are_forwarded():
    spec = CASES["GRU"][2]
    m = NumpyGRU.from_numpy(**blocks_for("GRU", spec), batch_first=True)
    assert m.batch_first is True
    with pytest.raises(TypeError, match="batch_first should be of type bool"):
        NumpyGRU.from_numpy(**blocks_for("GRU", spec), batch_first=1)


def test_bias_none_means_biases_exactly_when_b0_given():
    spec = CASES["GRU"][2]
    a = blocks_for("GRU", spec)
    assert NumpyGRU.from_numpy(a["w0"], a["w"]).bias is False
    assert NumpyGRU.from_numpy(**a).bias is True


def test_bias_true_without_b0_gives_zero_biases():
    spec = CASES["GRU"][2]
    a = blocks_for("GRU", spec)
    m = NumpyGRU.from_numpy(a["w0"], a["w"], bias=True)
    assert m.bias is True
    for name, p in m.named_parameters():
        if name.startswith("bias"):
            assert torch.count_nonzero(p) == 0, name


def test_module_never_aliases_caller_memory(case):
    name, cls, parent, spec, arrays, m = case
    with torch.no_grad():
        before = run(m, X).clone()
    for v in arrays.values():
        if v is not None:
            v[...] = 0
    with torch.no_grad():
        torch.testing.assert_close(run(m, X), before, rtol=0, atol=0)


def test_to_numpy_returns_fresh_arrays_in_module_dtype(case):
    name, cls, parent, spec, arrays, m = case
    out = m.to_numpy()
    assert set(out) == {"w0", "w", "b0", "b", "proj"}
    for k, v in arrays.items():
        np.testing.assert_array_equal(out[k], v)
        assert out[k].dtype == np.float32
    if name != "LSTM":
        assert out["proj"] is None
    out["w0"][...] = 0
    assert torch.count_nonzero(m.weight_ih_l0) > 0
    m64 = copy.deepcopy(m).double()
    assert m64.to_numpy()["w0"].dtype == np.float64


def test_to_numpy_none_keys_for_single_layer_without_bias():
    m = NumpyGRU(3, 2, bias=False)
    out = m.to_numpy()
    assert out["w"] is None and out["b0"] is None and out["b"] is None and out["proj"] is None
    assert out["w0"].shape == (1, 2, 3 * (3 + 2))


def test_to_numpy_of_bfloat16_module_says_how():
    m = NumpyGRU(3, 2).to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"numpy has no bfloat16: convert the module first, e.g. module.float\(\)"):
        m.to_numpy()


@pytest.mark.parametrize("gates,rowwise", [(None, False), ("zrn", False), (None, True), ("nrz", True)])
def test_round_trip_is_bit_exact(gates, rowwise):
    spec = CASES["GRU"][2]
    a = blocks_for("GRU", spec, dtype=np.float64)
    m = NumpyGRU.from_numpy(**a, gates=gates, rowwise=rowwise, dtype=torch.float64)
    out = m.to_numpy(gates=gates, rowwise=rowwise)
    for k, v in a.items():
        np.testing.assert_array_equal(out[k], v)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_numpy(**{k: v for k, v in out.items() if v is not None}, gates=gates, rowwise=rowwise)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("parent", [nn.GRU, nn.LSTM, nn.RNN])
def test_module_functions_on_plain_torch_modules(parent):
    plain = parent(5, 4, num_layers=2, bidirectional=True)
    blocks = numpyrnn.to_numpy(plain)
    twin = parent(5, 4, num_layers=2, bidirectional=True)
    params_before = list(twin.parameters())
    out = numpyrnn.load_numpy(twin, **{k: v for k, v in blocks.items() if v is not None})
    assert out is twin
    assert all(a is b for a, b in zip(params_before, twin.parameters()))  # same Parameter objects
    for k, v in plain.state_dict().items():
        assert torch.equal(v, twin.state_dict()[k])


def test_load_numpy_keeps_optimizer_references():
    spec = CASES["LSTM"][2]
    m = NumpyLSTM(**spec.module_kwargs())
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    m.load_numpy(**blocks_for("LSTM", spec))
    loss = run(m, X).sum()
    loss.backward()
    before = m.weight_hh_l1.detach().clone()
    opt.step()
    assert not torch.equal(before, m.weight_hh_l1)


def test_returns_the_module_for_chaining():
    spec = CASES["RNN"][2]
    m = NumpyRNN(**spec.module_kwargs())
    assert m.load_numpy(**blocks_for("RNN", spec)) is m


def test_relu_rnn_from_numpy():
    spec = RNNSpec("RNN_RELU", 5, 4)
    a = blocks_for("RNN", spec)
    m = NumpyRNN.from_numpy(**a, nonlinearity="relu")
    assert m.nonlinearity == "relu" and m.mode == "RNN_RELU"
