"""Small modules and inputs shared by the integration tests."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN
from numpyrnn.modules import TWINS
from numpyrnn.spec import RNNSpec

from ..conftest import make_blocks

CLASSES = [NumpyGRU, NumpyLSTM, NumpyRNN]
MODE = {NumpyGRU: "GRU", NumpyLSTM: "LSTM", NumpyRNN: "RNN_TANH"}
TORCH_CLASS = {twin: torch_cls for torch_cls, twin in TWINS.items()}

#: The checkout's root: subprocesses get it on PYTHONPATH so they import this numpyrnn.
REPO_ROOT = Path(__file__).resolve().parents[2]

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def class_id(cls: type) -> str:
    return cls.__name__


def spec_for(cls: type, *, input_size: int = 3, hidden: int = 4, layers: int = 1, bidirectional: bool = False,
             bias: bool = True) -> RNNSpec:
    return RNNSpec(MODE[cls], input_size, hidden, num_layers=layers, bidirectional=bidirectional, bias=bias)


def arrays_for(cls: type, spec: RNNSpec, *, dtype=np.float32, seed: int = 0) -> dict:
    """Block-layout arrays that ``cls.from_numpy`` takes (no ``proj`` key for GRU/RNN)."""
    arrays = make_blocks(spec, dtype=dtype, seed=seed)
    if cls is not NumpyLSTM:
        arrays.pop("proj")
    return arrays


def build(cls: type, *, dtype=torch.float32, seed: int = 0, batch_first: bool = True, device=None,
          **spec_kw) -> nn.RNNBase:
    """A small numpyrnn module with random (seeded) weights, built with ``from_numpy``."""
    spec = spec_for(cls, **spec_kw)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    return cls.from_numpy(**arrays_for(cls, spec, dtype=np_dtype, seed=seed), batch_first=batch_first,
                          dtype=dtype, device=device)


def torch_twin(module: nn.RNNBase) -> nn.RNNBase:
    """The plain torch module (``nn.GRU`` for a ``NumpyGRU``) with the same configuration and weights."""
    cls = TORCH_CLASS[type(module)]
    spec = RNNSpec.of(module)
    param = next(module.parameters())
    twin = cls(**spec.module_kwargs(), batch_first=module.batch_first, dtype=param.dtype, device=param.device)
    twin.load_state_dict(module.state_dict())
    return twin


def inputs(batch: int = 2, steps: int = 5, size: int = 3, *, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, size, generator=g, dtype=dtype)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env(port: int) -> dict[str, str]:
    """Environment that keeps torch.distributed on 127.0.0.1 (rendezvous and gloo's sockets)."""
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "GLOO_SOCKET_IFNAME": "lo0" if sys.platform == "darwin" else "lo",
    }


def storages(module: nn.RNNBase) -> set[int]:
    """The distinct storages behind the weights cuDNN uses (``_flat_weights``)."""
    return {w.untyped_storage().data_ptr() for w in module._flat_weights}
