"""Hypothesis strategies shared by the property suite and ``fuzz/fuzz_numpyrnn.py``.

A :class:`Config` is one torch recurrent configuration plus the block-layout
options (gate order, ``rowwise``) and a numpy dtype. Sizes stay tiny so that
thousands of cases run in seconds; the properties do not depend on size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN
from numpyrnn.spec import RNNSpec

MODES = ("GRU", "LSTM", "RNN_TANH", "RNN_RELU")
TORCH_LETTERS = {"GRU": "rzn", "LSTM": "ifgo", "RNN_TANH": "h", "RNN_RELU": "h"}
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
#: Tolerances against ``numpyrnn.reference``.
TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-5), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-10)}


@dataclass(frozen=True)
class Config:
    """A module configuration and the block-layout options its arrays use."""

    spec: RNNSpec
    gates: str | None
    rowwise: bool
    dtype: np.dtype
    seed: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPE[self.dtype]

    @property
    def cls(self) -> type:
        return {"GRU": NumpyGRU, "LSTM": NumpyLSTM}.get(self.spec.mode, NumpyRNN)

    def build_kwargs(self) -> dict:
        """Keyword arguments of ``from_numpy`` besides the arrays."""
        kw: dict = dict(gates=self.gates, rowwise=self.rowwise, dtype=self.torch_dtype)
        if self.spec.cell == "RNN":
            kw["nonlinearity"] = self.spec.nonlinearity
        return kw

    def options(self) -> dict:
        """Keyword arguments of ``load_numpy``/``to_numpy`` besides the arrays."""
        return dict(gates=self.gates, rowwise=self.rowwise)

    def torch_module(self, seed: int | None = None) -> torch.nn.RNNBase:
        """A plain randomly initialised module of this configuration (a load target)."""
        torch.manual_seed(self.seed + 1 if seed is None else seed)
        return self.cls(**self.spec.module_kwargs(), dtype=self.torch_dtype)


def _permutations(letters: str) -> list[str]:
    return ["".join(p) for p in itertools.permutations(letters)]


@st.composite
def configs(draw, *, modes=MODES, max_layers: int = 4, dtypes=(np.float32, np.float64)) -> Config:
    """Random configurations: cell, layers 1-4, directions, bias, projection, gate order, rowwise, dtype."""
    mode = draw(st.sampled_from(modes))
    hidden = draw(st.integers(1, 4))
    proj = 0
    if mode == "LSTM" and hidden > 1:
        proj = draw(st.integers(0, hidden - 1))
    spec = RNNSpec(
        mode=mode,
        input_size=draw(st.integers(1, 3)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, max_layers)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        proj_size=proj,
    )
    gates = draw(st.none() | st.sampled_from(_permutations(TORCH_LETTERS[mode])))
    return Config(spec=spec, gates=gates, rowwise=draw(st.booleans()), dtype=np.dtype(draw(st.sampled_from(dtypes))),
                  seed=draw(st.integers(0, 2**32 - 1)))


def block_shapes(spec: RNNSpec) -> dict[str, tuple[int, ...] | None]:
    """The block layout's shapes, written out from the documented formulas."""
    G, D, H, L, P = spec.gates, spec.directions, spec.hidden_size, spec.num_layers, spec.proj_size
    R = P or H
    return dict(
        w0=(D, H, G * spec.input_size + G * R),
        w=(L - 1, D, H, G * D * R + G * R) if L > 1 else None,
        b0=(D, H, 2 * G) if spec.bias else None,
        b=(L - 1, D, H, 2 * G) if spec.bias and L > 1 else None,
        proj=(L, D, P, H) if P else None,
    )


def special_values(dtype: np.dtype) -> np.ndarray:
    """Finite values a bit-exact round trip must keep: signed zeros, subnormals, extremes."""
    fi = np.finfo(dtype)
    return np.array([0.0, -0.0, fi.tiny, -fi.tiny, fi.smallest_subnormal, -fi.smallest_subnormal,
                     fi.max, -fi.max, fi.eps, 1.0, -1.0], dtype=dtype)


def block_arrays(cfg: Config, *, special: bool = False, scale: float = 0.4) -> dict[str, np.ndarray | None]:
    """Valid random block-layout arrays for ``cfg``; with ``special``, some entries are extreme finite values."""
    rng = np.random.default_rng(cfg.seed)
    out: dict[str, np.ndarray | None] = {}
    for key, shape in block_shapes(cfg.spec).items():
        if shape is None:
            out[key] = None
            continue
        a = (scale * rng.standard_normal(shape)).astype(cfg.dtype)
        if special and a.size:
            values = special_values(cfg.dtype)
            where = rng.random(shape) < 0.3
            a[where] = rng.choice(values, size=int(where.sum()))
        out[key] = a
    return out


def present(arrays: dict) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if v is not None}
