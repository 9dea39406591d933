"""Corrupted versions of valid sources are refused by name, and a refused load changes nothing.

The generic corruptions act on any leaf of any registered layout's source; the
block-specific ones act on ``load_numpy``'s other arguments (gate order, layer
count, arrays the module has no place for).
"""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from numpyrnn import LayoutError, load_numpy
from numpyrnn.spec import RNNSpec

from .cases import (
    BLOCK,
    LayoutCase,
    assert_sources_identical,
    assert_state_identical,
    case_params,
    leaves,
    state_bits,
)
from .mutations import REFUSED, Corruption, corruptions
from .profiles import budget
from .strategies import TORCH_LETTERS, Config, block_arrays, configs


def check_refusal(case: LayoutCase, exc: BaseException, c: Corruption) -> None:
    """The refusal names the array, and for a shape error both lengths."""
    assert isinstance(exc, REFUSED), f"{type(exc).__name__} is not LayoutError/TypeError: {exc}"
    msg = str(exc)
    names = [case.leaf_name(p) for p in c.paths]
    assert any(re.search(rf"(^|\W){re.escape(n)}(\W|$)", msg) for n in names), f"{names} not named in: {msg}"
    if c.maybe_valid:  # float16 is refused only for values it cannot hold (they became Inf in the cast)
        assert isinstance(exc, LayoutError) and re.search(r"holds -?(nan|inf) at index", msg), msg
        return
    for n in c.numbers:
        assert re.search(rf"\b{n}\b", msg), f"{n} not in: {msg}"
    if case.engine_messages and c.pattern:
        assert re.search(c.pattern, msg), f"{c.pattern!r} not in: {msg}"
    if c.kind == "dtype":
        assert isinstance(exc, TypeError)


def _as_dtype(source, dtype):
    if isinstance(source, dict):
        return {k: _as_dtype(v, dtype) for k, v in source.items()}
    if isinstance(source, (list, tuple)):
        return type(source)(_as_dtype(v, dtype) for v in source)
    return None if source is None else np.asarray(source).astype(dtype)


@pytest.mark.parametrize("case", case_params())
@budget("corrupt_load", 700)
@given(cfg=configs(), data=st.data())
def test_corrupted_source_is_refused_and_changes_nothing(case: LayoutCase, cfg: Config, data):
    if not case.supports(cfg):
        return
    source = case.make_source(cfg)
    bad, c = data.draw(corruptions(source), label="corruption")
    module = cfg.torch_module()
    before = state_bits(module)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            case.load_source(module, cfg, bad)
    except Exception as exc:  # noqa: BLE001 - the type is what is checked
        check_refusal(case, exc, c)
        assert_state_identical(state_bits(module), before)
        return
    assert c.maybe_valid, f"{c.kind} of {c.paths} was accepted"
    # float16 is a floating dtype: cast like float64 is; the result is loading the float16 values
    want = case.load_source(copy.deepcopy(module), cfg, _as_dtype(bad, cfg.dtype))
    assert_state_identical(state_bits(module), state_bits(want))


@pytest.mark.parametrize("case", case_params())
@budget("corrupt_import", 350)
@given(cfg=configs(), data=st.data())
def test_corrupted_source_to_constructor_is_refused_or_consistent(case: LayoutCase, cfg: Config, data):
    """From a source alone, a changed shape may describe another valid configuration.

    Then the module must hold exactly those arrays; otherwise the refusal names an array.
    """
    if not case.supports(cfg):
        return
    source = case.make_source(cfg)
    bad, c = data.draw(corruptions(source), label="corruption")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            module = case.from_source(cfg, bad)
    except Exception as exc:  # noqa: BLE001
        assert isinstance(exc, REFUSED), f"{type(exc).__name__}: {exc}"
        msg = str(exc)
        named = {case.leaf_name(p) for p in leaves(source)} | {case.leaf_name(p) for p in c.paths}
        assert any(re.search(rf"(^|\W){re.escape(n)}(\W|$)", msg) for n in named), msg
        if c.kind in ("dtype", "not_array") and not c.maybe_valid:
            assert isinstance(exc, TypeError), msg
        return
    assert c.kind in ("axis_length", "drop_axis", "add_axis", "swap", "none") or c.maybe_valid, \
        f"{c.kind} of {c.paths} was accepted"
    for p in module.parameters():
        assert torch.isfinite(p).all()
    assert_sources_identical(case.to_source(module, cfg), _as_dtype(bad, cfg.dtype))


# --------------------------------------------------------------------------------------
# block layout: load_numpy's other arguments
# --------------------------------------------------------------------------------------

_ALIASES = {"GRU": {"u": "z", "h": "n", "c": "n"}, "LSTM": {"c": "g", "j": "g"}, "RNN_TANH": {}, "RNN_RELU": {}}


def _is_permutation(mode: str, gates: str) -> bool:
    norm = "".join(_ALIASES[mode].get(ch, ch) for ch in gates.lower())
    return sorted(norm) == sorted(TORCH_LETTERS[mode])


def _refused(fn, module, exc_type, pattern):
    before = state_bits(module)
    with pytest.raises(exc_type, match=pattern):
        fn()
    assert_state_identical(state_bits(module), before)


@budget("bad_gate_strings", 200)
@given(cfg=configs(), gates=st.text(alphabet="rzniofgohcjuxRZN ", max_size=6))
@example(cfg=Config(RNNSpec("GRU", 1, 2), None, False, np.dtype(np.float32), 0), gates="rzz")
@example(cfg=Config(RNNSpec("LSTM", 1, 2), None, False, np.dtype(np.float32), 0), gates="")
@example(cfg=Config(RNNSpec("LSTM", 1, 2), None, False, np.dtype(np.float32), 0), gates="ifgoo")
def test_gate_string_that_is_not_a_permutation(cfg: Config, gates: str):
    arrays = block_arrays(cfg)
    module = cfg.torch_module()
    if _is_permutation(cfg.spec.mode, gates):
        load_numpy(module, **arrays, gates=gates, rowwise=cfg.rowwise)
        return
    pattern = rf"^gates={re.escape(repr(gates))} is not a permutation of the \w+ gates"
    _refused(lambda: load_numpy(module, **arrays, gates=gates), module, LayoutError, pattern)
    bad = Config(cfg.spec, gates, cfg.rowwise, cfg.dtype, cfg.seed)
    with pytest.raises(LayoutError, match=pattern):
        BLOCK.from_source(bad, arrays)


@pytest.mark.parametrize("gates", [3, ["r", "z", "n"], b"rzn"])
def test_gate_order_that_is_not_a_string(gates):
    cfg = Config(RNNSpec("GRU", 2, 3, 2), None, False, np.dtype(np.float32), 0)
    module = cfg.torch_module()
    _refused(lambda: load_numpy(module, **block_arrays(cfg), gates=gates), module, TypeError,
             r"^gates must be a string such as 'rzn'")


@pytest.mark.parametrize("rowwise", ["no", 1, None])
def test_rowwise_must_be_a_bool(rowwise):
    cfg = Config(RNNSpec("GRU", 2, 3), None, False, np.dtype(np.float32), 0)
    module = cfg.torch_module()
    _refused(lambda: load_numpy(module, **block_arrays(cfg), rowwise=rowwise), module, TypeError,
             r"^rowwise should be of type bool")


@budget("wrong_layer_count", 200)
@given(cfg=configs(), delta=st.integers(-3, 3).filter(bool))
def test_wrong_layer_count_is_refused(cfg: Config, delta: int):
    """Arrays for ``L + delta`` layers into an ``L``-layer module, and ``num_layers`` that ``w`` contradicts."""
    L = cfg.spec.num_layers
    if L + delta < 1:
        delta = -delta
    other = Config(cfg.spec.replace(num_layers=L + delta), cfg.gates, cfg.rowwise, cfg.dtype, cfg.seed)
    arrays = block_arrays(other)
    module = cfg.torch_module()
    load = lambda: load_numpy(module, **arrays, **cfg.options())  # noqa: E731
    if L == 1:  # w (and b) given to a one-layer module
        _refused(load, module, LayoutError, r"^block: unexpected array\(s\) 'w'")
    elif L + delta == 1:  # w missing for a stacked module
        _refused(load, module, TypeError, rf"^w: missing; the block layout needs an array of shape \(layers-1={L - 1},")
    else:
        _refused(load, module, LayoutError, rf"^w \(block layout\): .*axis 0 \(layers-1\) is {L + delta - 1}, expected {L - 1}")
    with pytest.raises(LayoutError, match=rf"^w: (axis 0 \(layers-1\) is {L + delta - 1}, but num_layers={L}|missing; num_layers={L})"):
        other.cls.from_numpy(**{k: v for k, v in arrays.items() if k != "proj" or cfg.spec.mode == "LSTM"},
                             num_layers=L, **other.build_kwargs())


@budget("arrays_without_a_place", 150)
@given(cfg=configs())
def test_arrays_the_module_has_no_place_for(cfg: Config):
    """Biases for a bias-free module, a projection for one without, no biases for one with."""
    spec = cfg.spec
    module = cfg.torch_module()
    arrays = block_arrays(Config(spec.replace(bias=not spec.bias), cfg.gates, cfg.rowwise, cfg.dtype, cfg.seed))
    if spec.bias:
        _refused(lambda: load_numpy(module, **arrays, **cfg.options()), module, LayoutError,
                 r"^b0: missing; the module has biases \(bias=True\)")
    else:
        _refused(lambda: load_numpy(module, **arrays, **cfg.options()), module, LayoutError,
                 r"^b0: the module was built with bias=False")
    if spec.mode != "LSTM" or spec.proj_size:
        return
    arrays = block_arrays(cfg)
    arrays["proj"] = np.zeros((spec.num_layers, spec.directions, 1, spec.hidden_size), cfg.dtype)
    _refused(lambda: load_numpy(module, **arrays, **cfg.options()), module, LayoutError,
             r"^proj: the module has no projection \(proj_size=0\)")


# --------------------------------------------------------------------------------------
# found while writing this suite: each was accepted, or raised something else, before
# --------------------------------------------------------------------------------------

@budget("beyond_module_range", 150)
@given(cfg=configs(dtypes=(np.float32,)), value=st.floats(3.5e38, 1.7e308), sign=st.sampled_from([1.0, -1.0]),
       data=st.data())
@example(  # a finite float64 weight into a float32 module used to load as Inf
    cfg=Config(RNNSpec("GRU", 2, 3), None, False, np.dtype(np.float32), 0), value=1e300, sign=1.0, data=None)
def test_values_beyond_the_module_dtype_are_refused(cfg: Config, value: float, sign: float, data):
    arrays = {k: (None if v is None else v.astype(np.float64)) for k, v in block_arrays(cfg).items()}
    key = "w0" if data is None else data.draw(st.sampled_from([k for k, v in arrays.items() if v is not None]))
    a = arrays[key]
    idx = (0,) * a.ndim if data is None else np.unravel_index(data.draw(st.integers(0, a.size - 1)), a.shape)
    a[idx] = sign * value
    pattern = rf"^{key}: holds {re.escape(str(sign * value))} at index {re.escape(str([int(i) for i in idx]))}, beyond the largest float32"
    module = cfg.torch_module()
    _refused(lambda: load_numpy(module, **arrays, **cfg.options()), module, LayoutError, pattern)
    with pytest.raises(LayoutError, match=pattern):
        BLOCK.from_source(cfg, arrays)
    # the same values are fine in a float64 module
    wide = Config(cfg.spec, cfg.gates, cfg.rowwise, np.dtype(np.float64), cfg.seed)
    out = BLOCK.to_source(BLOCK.from_source(wide, arrays), wide)
    assert_sources_identical(out, arrays)


def test_float32_beyond_float16_is_refused_for_a_half_module():
    cfg = Config(RNNSpec("LSTM", 2, 3, 2, True), "gifo", False, np.dtype(np.float32), 0)
    arrays = block_arrays(cfg)
    arrays["b"][0, 1, 2, 5] = 7e4
    module = cfg.torch_module().half()
    _refused(lambda: load_numpy(module, **arrays, gates="gifo"), module, LayoutError,
             r"^b: holds 70000\.0 at index \[0, 1, 2, 5\], beyond the largest float16 \(65504\)")
    arrays["b"][0, 1, 2, 5] = 6e4  # within range: rounds like any cast
    load_numpy(module, **arrays, gates="gifo")
    assert torch.isfinite(module.bias_ih_l1_reverse).all()


@pytest.mark.parametrize("make,pattern", [
    (lambda a: torch.from_numpy(a).to_sparse(), r"^w0: a torch.sparse_coo tensor; .*\.to_dense\(\)"),
    (lambda a: torch.empty(a.shape, device="meta"), r"^w0: a tensor on the meta device holds no values"),
    (lambda a: torch.from_numpy(a).to(torch.complex64), r"^w0: dtype torch.complex64 cannot hold weights"),
    (lambda a: torch.from_numpy(a).to(torch.int64), r"^w0: dtype torch.int64 cannot hold weights"),
], ids=["sparse", "meta", "complex", "int"])
def test_tensors_without_dense_float_values_are_type_errors(make, pattern):
    """Sparse and meta tensors raised NotImplementedError from inside torch."""
    cfg = Config(RNNSpec("GRU", 2, 3), None, False, np.dtype(np.float32), 0)
    arrays = block_arrays(cfg)
    module = cfg.torch_module()
    bad = dict(arrays, w0=make(arrays["w0"]))
    _refused(lambda: load_numpy(module, **bad), module, TypeError, pattern)
    with pytest.raises(TypeError, match=pattern):
        BLOCK.from_source(cfg, bad)


def test_masked_entries_are_refused_and_unmasked_arrays_load():
    """A masked array used to load the hidden values behind its mask."""
    cfg = Config(RNNSpec("RNN_TANH", 2, 3, 2), None, False, np.dtype(np.float64), 0)
    arrays = block_arrays(cfg)
    module = cfg.torch_module()
    mask = np.zeros(arrays["w"].shape, bool)
    mask[0, 0, 2, 1] = True
    bad = dict(arrays, w=np.ma.masked_array(arrays["w"], mask=mask))
    _refused(lambda: load_numpy(module, **bad), module, LayoutError,
             r"^w: masked array with a masked entry at index \[0, 0, 2, 1\]; .*w\.filled\(0\.0\)")
    load_numpy(module, **dict(arrays, w=np.ma.masked_array(arrays["w"], mask=np.zeros_like(mask))))
    np.testing.assert_array_equal(to_numpy_w(module), arrays["w"])


def to_numpy_w(module):
    return BLOCK.to_source(module, Config(RNNSpec.of(module), None, False, np.dtype(np.float64), 0))["w"]


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_narrow_w0_hint_names_no_negative_input_size(width):
    """The hint used to say "that is input_size=-1" for a w0 narrower than the recurrent part."""
    cfg = Config(RNNSpec("GRU", 2, 3), None, False, np.dtype(np.float32), 0)
    module = cfg.torch_module()
    w0 = np.zeros((1, 3, 3 * width), np.float32)
    before = state_bits(module)
    with pytest.raises(LayoutError, match=rf"^w0 \(block layout\): .*axis 2 \(3\*\(input\+hidden\)\) is {3 * width}, expected 15") as info:
        load_numpy(module, w0, b0=np.zeros((1, 3, 6), np.float32))
    assert "input_size=-" not in str(info.value) and "input_size=0" not in str(info.value)
    assert_state_identical(state_bits(module), before)


@pytest.mark.parametrize("w0,pattern", [
    (np.zeros((2, 3), np.int64), r"^w0: dtype int64 \(integer\) cannot hold weights"),
    (np.array(object()), r"^w0: dtype object \(object\) cannot hold weights"),
    (np.zeros((1, 3, 15), bool), r"^w0: dtype bool \(bool\) cannot hold weights"),
], ids=["int-2d", "object-0d", "bool"])
def test_constructor_names_a_wrong_dtype_before_any_shape(w0, pattern):
    """``from_numpy(object())`` used to say "expected 3 axes, got 0 axes" instead of naming the dtype,
    unlike ``load_numpy``, which checks dtypes first."""
    with pytest.raises(TypeError, match=pattern):
        Config(RNNSpec("GRU", 2, 3), None, False, np.dtype(np.float32), 0).cls.from_numpy(w0)
