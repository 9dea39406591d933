"""The CUDA path of the core: built on the device, flattened for cuDNN, equal to the CPU.

Skipped without CUDA; run with ``python -m pytest -m cuda`` on a GPU machine.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN
from numpyrnn.spec import RNNSpec

from .conftest import make_blocks

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

CASES = [
    (NumpyGRU, RNNSpec("GRU", 16, 32, num_layers=2, bidirectional=True, bias=True)),
    (NumpyLSTM, RNNSpec("LSTM", 16, 32, num_layers=2, bidirectional=True, bias=True)),
    (NumpyLSTM, RNNSpec("LSTM", 16, 32, num_layers=2, bidirectional=True, bias=True, proj_size=8)),
    (NumpyRNN, RNNSpec("RNN_TANH", 16, 32, num_layers=3, bidirectional=False, bias=False)),
]


def arrays_for(cls, spec, **kw):
    a = make_blocks(spec, **kw)
    if cls is not NumpyLSTM:
        a.pop("proj")
    return a


def one_storage(module) -> bool:
    ptrs = {w.untyped_storage().data_ptr() for w in module._flat_weights}
    return len(ptrs) == 1


def forward_without_warning(module, x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "RNN module weights are not part of single contiguous chunk"
        with torch.no_grad():
            return module(x)[0]


@pytest.mark.parametrize("cls,spec", CASES, ids=["gru", "lstm", "lstm-proj", "rnn"])
def test_from_numpy_on_cuda_is_flat_and_matches_cpu(cls, spec):
    a = arrays_for(cls, spec)
    cpu = cls.from_numpy(**a)
    gpu = cls.from_numpy(**a, device="cuda")
    assert all(p.is_cuda for p in gpu.parameters())
    if not spec.proj_size:  # cuDNN flattens projections too, but torch only accepts them in one buffer on recent versions
        assert one_storage(gpu)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((7, 3, 16)).astype(np.float32))
    y = forward_without_warning(gpu, x.cuda()) if not spec.proj_size else gpu(x.cuda())[0]
    with torch.no_grad():
        # cuDNN sums in another order than the CPU kernels (observed up to ~1.2e-4 on an H100 with
        # TF32 off); a misplaced block gives errors of order 1, and the weights are compared exactly below
        torch.testing.assert_close(y.cpu(), cpu(x)[0], rtol=1e-3, atol=5e-4)
    for k, v in gpu.to_numpy().items():
        if v is not None:
            np.testing.assert_array_equal(v, a[k])


@pytest.mark.parametrize("cls,spec", CASES[:2], ids=["gru", "lstm"])
def test_load_numpy_into_cuda_module_keeps_one_buffer(cls, spec):
    gpu = cls(**spec.module_kwargs()).cuda()
    assert one_storage(gpu)
    ptr = gpu._flat_weights[0].untyped_storage().data_ptr()
    a = arrays_for(cls, spec, seed=5)
    # awkward sources: Fortran order and a non-contiguous slice
    a["w0"] = np.asfortranarray(a["w0"])
    gpu.load_numpy(**a)
    assert one_storage(gpu) and gpu._flat_weights[0].untyped_storage().data_ptr() == ptr
    x = torch.randn(5, 2, 16, device="cuda")
    forward_without_warning(gpu, x)
    for k, v in gpu.to_numpy().items():
        if v is not None:
            np.testing.assert_array_equal(v, a[k])


def test_big_leaf_goes_through_pinned_chunks():
    spec = RNNSpec("GRU", 1024, 1024, num_layers=2, bidirectional=True, bias=True)  # ~100 MB of weights
    a = arrays_for(NumpyGRU, spec)
    gpu = NumpyGRU.from_numpy(**a, device="cuda")
    assert one_storage(gpu)
    for k, v in gpu.to_numpy().items():
        if v is not None:
            np.testing.assert_array_equal(v, a[k])
