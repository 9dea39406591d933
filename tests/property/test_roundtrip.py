"""Round trips over random configurations, for every registered layout, and the block
layout against the independent numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from numpyrnn import reference
from numpyrnn.spec import RNNSpec

from .cases import (
    BLOCK,
    LayoutCase,
    assert_sources_identical,
    assert_state_identical,
    case_params,
    state_bits,
)
from .profiles import budget
from .strategies import TOL, Config, block_arrays, configs, present

# No warning from numpyrnn is acceptable; torch's own note about oneDNN and projections is not ours.
pytestmark = [
    pytest.mark.filterwarnings("error"),
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning"),
]


@pytest.mark.parametrize("case", case_params())
@budget("import_then_export", 400)
@given(cfg=configs())
def test_import_then_export_is_exact(case: LayoutCase, cfg: Config):
    """A source becomes a module and comes back bit for bit (same gates, same rowwise)."""
    if not case.supports(cfg):
        return
    source = case.make_source(cfg)
    module = case.from_source(cfg, source)
    assert module.weight_ih_l0.dtype == cfg.torch_dtype
    assert_sources_identical(case.to_source(module, cfg), source)


@pytest.mark.parametrize("case", case_params())
@budget("export_then_import", 400)
@given(cfg=configs())
def test_export_then_import_is_exact(case: LayoutCase, cfg: Config):
    """Any module's weights go out and into a differently initialised module bit for bit."""
    if not case.supports(cfg):
        return
    original = cfg.torch_module(seed=cfg.seed % 1000)
    want = state_bits(original)
    target = cfg.torch_module(seed=cfg.seed % 1000 + 1)
    params = [p for p in target.parameters()]
    case.load_source(target, cfg, case.to_source(original, cfg))
    assert_state_identical(state_bits(target), want)
    assert [p for p in target.parameters()] == params, "parameters were replaced, not written in place"
    assert_state_identical(state_bits(original), want)


def _oracle(spec: RNNSpec, x, arrays, gates, batch_first):
    a = present(arrays)
    if spec.mode == "GRU":
        return reference.gru(x, **a, batch_first=batch_first, gates=gates)
    if spec.mode == "LSTM":
        y, (h, c) = reference.lstm(x, **a, batch_first=batch_first, gates=gates)
        return y, h, c
    return reference.rnn(x, **a, batch_first=batch_first, nonlinearity=spec.nonlinearity)


@budget("block_matches_reference", 250)
@given(cfg=configs(), steps=st.integers(1, 4), batch=st.integers(1, 3), batch_first=st.booleans())
@example(  # LSTM with projection, 4 layers, bidirectional, permuted gates
    cfg=Config(RNNSpec("LSTM", 2, 3, 4, True, True, 2), "gfio", False, np.dtype(np.float64), 5),
    steps=3, batch=2, batch_first=True,
)
def test_block_module_matches_reference(cfg: Config, steps: int, batch: int, batch_first: bool):
    """The module built from block arrays computes what the numpy reference computes from them."""
    if cfg.rowwise:  # the reference reads the documented formulas, not the row-loop order
        cfg = Config(cfg.spec, cfg.gates, False, cfg.dtype, cfg.seed)
    arrays = block_arrays(cfg)
    module = BLOCK.from_source(cfg, arrays)
    module.batch_first = batch_first
    rng = np.random.default_rng(cfg.seed + 7)
    shape = (batch, steps) if batch_first else (steps, batch)
    x = rng.standard_normal(shape + (cfg.spec.input_size,)).astype(cfg.dtype)
    with torch.no_grad():
        y, state = module(torch.from_numpy(x))
    want = _oracle(cfg.spec, x, arrays, None if cfg.spec.cell == "RNN" else cfg.gates, batch_first)
    tol = TOL[cfg.dtype]
    np.testing.assert_allclose(y.numpy(), want[0], **tol)
    if cfg.spec.mode == "LSTM":
        np.testing.assert_allclose(state[0].numpy(), want[1], **tol)
        np.testing.assert_allclose(state[1].numpy(), want[2], **tol)
    else:
        np.testing.assert_allclose(state.numpy(), want[1], **tol)


@budget("rowwise_is_a_plain_reshape", 150)
@given(cfg=configs())
def test_rowwise_is_the_plain_row_major_reshape(cfg: Config):
    """``rowwise=True`` with torch's gate order puts ``block.reshape(G*H, width)`` in each weight."""
    cfg = Config(cfg.spec, None, True, cfg.dtype, cfg.seed)
    arrays = block_arrays(cfg)
    module = BLOCK.from_source(cfg, arrays)
    spec = cfg.spec
    G, H, R = spec.gates, spec.hidden_size, spec.rec
    for layer, d in spec.units():
        s = spec.suffix(layer, d)
        block = arrays["w0"][d] if layer == 0 else arrays["w"][layer - 1, d]
        cut = G * spec.layer_input(layer)
        np.testing.assert_array_equal(getattr(module, "weight_ih" + s).detach().numpy(),
                                      block[:, :cut].reshape(G * H, spec.layer_input(layer)))
        np.testing.assert_array_equal(getattr(module, "weight_hh" + s).detach().numpy(),
                                      block[:, cut:].reshape(G * H, R))
        if spec.bias:
            bias = arrays["b0"][d] if layer == 0 else arrays["b"][layer - 1, d]
            np.testing.assert_array_equal(getattr(module, "bias_ih" + s).detach().numpy(), bias[:, :G].reshape(-1))
            np.testing.assert_array_equal(getattr(module, "bias_hh" + s).detach().numpy(), bias[:, G:].reshape(-1))


@budget("gate_permutation_moves_blocks", 150)
@given(cfg=configs(modes=("GRU", "LSTM")))
def test_gate_order_places_each_named_gate_block(cfg: Config):
    """With ``gates=order``, the block at position k of the arrays lands on torch gate ``order[k]``."""
    cfg = Config(cfg.spec, cfg.gates, False, cfg.dtype, cfg.seed)
    arrays = block_arrays(cfg)
    module = BLOCK.from_source(cfg, arrays)
    spec = cfg.spec
    G, H, I, R = spec.gates, spec.hidden_size, spec.input_size, spec.rec
    torch_order = {"GRU": "rzn", "LSTM": "ifgo"}[spec.mode]
    order = cfg.gates or torch_order
    w_ih, w_hh = module.weight_ih_l0.detach().numpy(), module.weight_hh_l0.detach().numpy()
    for k, letter in enumerate(order):
        rows = slice(torch_order.index(letter) * H, (torch_order.index(letter) + 1) * H)
        np.testing.assert_array_equal(w_ih[rows], arrays["w0"][0][:, k * I:(k + 1) * I])
        np.testing.assert_array_equal(w_hh[rows], arrays["w0"][0][:, G * I + k * R:G * I + (k + 1) * R])
        if spec.bias:
            np.testing.assert_array_equal(module.bias_ih_l0.detach().numpy()[rows], arrays["b0"][0][:, k])
            np.testing.assert_array_equal(module.bias_hh_l0.detach().numpy()[rows], arrays["b0"][0][:, G + k])
