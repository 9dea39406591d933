"""Cached plans, cloned fresh modules and the single-thread small-copy path.

A repeated build or load replays a plan made once (geometry only), and a fresh
module is a clone of one built by the class's constructor: both must give
exactly what planning and constructing from scratch give, for every
configuration, gate order and stride pattern.
"""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, engine
from numpyrnn.layouts.blocks import BLOCKS
from numpyrnn.spec import RNNSpec

from .conftest import make_blocks, state
from .test_engine_fastpath import IDS, SPECS, build_from


def _fresh_plan(module, arrays, **options):
    """The module's parameters as planning from scratch (no cache) writes them."""
    spec = RNNSpec.of(module)
    opts = dict(dict(gates=None, rowwise=False, biases=True), **options)
    pieces = BLOCKS.pieces(spec, **opts)
    leaves = {k: v for k, v in arrays.items() if v is not None and (k != "proj" or spec.proj_size)}
    target = copy.deepcopy(module)
    engine.load(target, pieces, leaves)  # key=None: plans from scratch
    return state(target)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("gates,rowwise", [(None, False), ("reverse", False), (None, True)], ids=["torch", "rev", "rowwise"])
def test_cached_plan_matches_planning_from_scratch(spec, gates, rowwise):
    gates = spec.gate_letters[::-1] if gates == "reverse" else None
    arrays = make_blocks(spec, seed=5)
    first = build_from(spec, arrays, gates=gates, rowwise=rowwise)
    second = build_from(spec, arrays, gates=gates, rowwise=rowwise)  # from the cache
    want = _fresh_plan(first, arrays, gates=gates, rowwise=rowwise)
    for got in (first, second):
        assert state(got).keys() == want.keys()
        for k, v in state(got).items():
            assert torch.equal(v, want[k]), k
    # a round trip through the cached export plan is bit-exact
    out = second.to_numpy(gates=gates, rowwise=rowwise)
    for k, v in arrays.items():
        if v is not None and (k != "proj" or spec.proj_size):
            assert np.array_equal(out[k], v), k


def test_plan_cache_tells_strides_apart():
    """The same shapes with other strides (a transposed copy, a view with a step) get their own plan."""
    spec = SPECS[0]
    arrays = make_blocks(spec, seed=1)
    arrays = {k: v for k, v in arrays.items() if v is not None and k != "proj"}
    want = state(build_from(spec, arrays))
    fortran = {k: np.asfortranarray(v) for k, v in arrays.items()}
    stepped = {}
    for k, v in arrays.items():
        wide = np.zeros(v.shape[:-1] + (2 * v.shape[-1],), v.dtype)
        wide[..., ::2] = v
        stepped[k] = wide[..., ::2]
    for variant in (fortran, stepped, arrays):
        got = state(NumpyGRU.from_numpy(**variant))
        for k, v in got.items():
            assert torch.equal(v, want[k]), k
        m = NumpyGRU.from_numpy(**arrays)
        m.load_numpy(**variant)
        for k, v in state(m).items():
            assert torch.equal(v, want[k]), k


def test_plan_cache_tells_parameter_strides_apart():
    """A module whose parameter was replaced by a non-contiguous one is planned again."""
    spec = RNNSpec("GRU", 3, 4)
    arrays = {k: v for k, v in make_blocks(spec, seed=2).items() if k in ("w0", "b0")}
    ref = NumpyGRU.from_numpy(**arrays)
    m = nn.GRU(3, 4)
    m.load_state_dict(ref.state_dict())
    m.weight_ih_l0 = nn.Parameter(torch.zeros(3, 12).T)  # strides (1, 12)
    engine.load_layout(m, BLOCKS, arrays, options=dict(gates=None, rowwise=False, biases=True))
    for k, v in ref.state_dict().items():
        assert torch.equal(getattr(m, k).detach(), v), k


def test_cache_keys_keep_option_types_apart():
    """``rowwise=1`` is refused even after ``rowwise=True`` was cached (1 == True in a dict)."""
    spec = RNNSpec("GRU", 3, 4)
    arrays = {k: v for k, v in make_blocks(spec, seed=2).items() if k in ("w0", "b0")}
    NumpyGRU.from_numpy(**arrays, rowwise=True)
    with pytest.raises(TypeError, match="rowwise should be of type bool"):
        NumpyGRU.from_numpy(**arrays, rowwise=1)
    with pytest.raises(LayoutError, match="not a permutation"):
        NumpyGRU.from_numpy(**arrays, gates="rzz")


@pytest.mark.parametrize("cls,kw", [
    (nn.GRU, dict(input_size=5, hidden_size=4, num_layers=2, bidirectional=True)),
    (nn.LSTM, dict(input_size=5, hidden_size=6, num_layers=2, proj_size=3)),
    (nn.RNN, dict(input_size=5, hidden_size=4, nonlinearity="relu", bias=False)),
])
def test_cloned_module_is_what_the_constructor_builds(cls, kw):
    twin = {nn.GRU: NumpyGRU, nn.LSTM: NumpyLSTM}.get(cls) or __import__("numpyrnn").NumpyRNN
    mode = {nn.GRU: "GRU", nn.LSTM: "LSTM"}.get(cls, "RNN_RELU")
    spec = RNNSpec(mode, kw["input_size"], kw["hidden_size"], num_layers=kw.get("num_layers", 1),
                   bidirectional=kw.get("bidirectional", False), bias=kw.get("bias", True),
                   proj_size=kw.get("proj_size", 0))
    a = engine.build(twin, spec, batch_first=True, dropout=0.0, device="cpu", dtype=torch.float64)
    b = engine.build(twin, spec, batch_first=True, dropout=0.0, device="cpu", dtype=torch.float64)
    ref = twin(**kw, batch_first=True, dtype=torch.float64)
    assert a.__dict__.keys() == ref.__dict__.keys()
    for k, v in ref.__dict__.items():
        assert type(a.__dict__[k]) is type(v), k
        if k not in ("_parameters", "_flat_weights", "_flat_weight_refs"):
            assert a.__dict__[k] == v, k
            if isinstance(v, (dict, list, set)):
                assert a.__dict__[k] is not b.__dict__[k], k  # no container shared between clones
    assert repr(a) == repr(ref)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert p.shape == q.shape and p.dtype == torch.float64 and p.requires_grad, n
        assert p.data_ptr() != q.data_ptr(), n
    assert all(w is p for w, p in zip(a._flat_weights, a.parameters()))
    assert all(r() is p for r, p in zip(a._flat_weight_refs, a.parameters()))
    # behaves as the constructor's module: load, forward, replace a weight, copy, pickle
    a.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, kw["input_size"], dtype=torch.float64)
    torch.testing.assert_close(a(x)[0], ref(x)[0], rtol=0, atol=0)
    a.weight_ih_l0 = nn.Parameter(torch.zeros_like(a.weight_ih_l0))
    assert a._flat_weights[0] is a.weight_ih_l0 and b._flat_weights[0] is not a.weight_ih_l0
    for other in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        torch.testing.assert_close(other(x)[0], a(x)[0], rtol=0, atol=0)


def test_build_never_draws_random_numbers_and_hooks_stay_apart():
    spec = RNNSpec("GRU", 3, 4, num_layers=2)
    before = torch.random.get_rng_state()
    a = engine.build(NumpyGRU, spec, batch_first=False, dropout=0.5, device=None, dtype=None)
    b = engine.build(NumpyGRU, spec, batch_first=False, dropout=0.5, device=None, dtype=None)
    assert torch.equal(torch.random.get_rng_state(), before)
    a.register_forward_hook(lambda *args: None)
    assert len(a._forward_hooks) == 1 and not b._forward_hooks
    assert a.dropout == b.dropout == 0.5


def test_build_with_one_layer_and_dropout_still_warns():
    spec = RNNSpec("GRU", 3, 4)
    for _ in range(2):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            engine.build(NumpyGRU, spec, batch_first=False, dropout=0.3, device=None, dtype=None)
        assert any("dropout" in str(w.message) for w in seen)


def test_subclass_with_its_own_constructor_is_not_cloned():
    class Tagged(NumpyGRU):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.head = nn.Linear(4, 2)

    spec = RNNSpec("GRU", 3, 4)
    arrays = {k: v for k, v in make_blocks(spec, seed=2).items() if k in ("w0", "b0")}
    a, b = Tagged.from_numpy(**arrays), Tagged.from_numpy(**arrays)
    assert a.head is not b.head and a.head.weight.data_ptr() != b.head.weight.data_ptr()


@pytest.mark.parametrize("src", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("dst", [torch.float16, torch.float32, torch.float64])
def test_small_copy_path_casts_like_the_block_path(src, dst):
    spec = RNNSpec("LSTM", 7, 9, num_layers=2, bidirectional=True)
    arrays = {k: v.astype(src) for k, v in make_blocks(spec, seed=4).items() if v is not None and k != "proj"}
    small = NumpyLSTM.from_numpy(**arrays, dtype=dst)
    saved = engine._SMALL_COPY, engine._SINGLE_THREAD_BYTES
    try:
        engine._SMALL_COPY = -1  # every copy through numpy on this thread
        mid = NumpyLSTM.from_numpy(**arrays, dtype=dst)
        out_mid = mid.to_numpy()
        engine._SINGLE_THREAD_BYTES = -1  # every copy through the block path
        blocked = NumpyLSTM.from_numpy(**arrays, dtype=dst)
        out_blocked = blocked.to_numpy()
    finally:
        engine._SMALL_COPY, engine._SINGLE_THREAD_BYTES = saved
    out_small = small.to_numpy()
    for k, v in state(small).items():
        assert torch.equal(v, state(blocked)[k]) and torch.equal(v, state(mid)[k]), k
    for k, v in out_small.items():
        if v is not None:
            assert np.array_equal(v, out_blocked[k]) and np.array_equal(v, out_mid[k]), k
    # the numpy view leaves the parameters' storage as torch made it
    assert all(p.untyped_storage().resizable() for p in mid.parameters())


def test_small_leaves_still_name_the_first_bad_value():
    spec = RNNSpec("GRU", 3, 4, num_layers=2)
    arrays = {k: v for k, v in make_blocks(spec, seed=2).items() if v is not None and k != "proj"}
    NumpyGRU.from_numpy(**arrays)
    bad = dict(arrays, w=arrays["w"].copy())
    bad["w"][0, 0, 2, 5] = np.inf
    with pytest.raises(LayoutError, match=r"^w: holds inf at index \[0, 0, 2, 5\]"):
        NumpyGRU.from_numpy(**bad)
    m = NumpyGRU.from_numpy(**arrays)
    before = state(m)
    with pytest.raises(LayoutError, match=r"^w: holds inf at index \[0, 0, 2, 5\]"):
        m.load_numpy(**bad)
    for k, v in state(m).items():
        assert torch.equal(v, before[k]), k
