"""cuDNN's flat weight buffer: numpyrnn modules stay flattened where nn.GRU does not.

cuDNN runs a recurrent module fastest when all its weights are views into one buffer
(``flatten_parameters``). When they are not, torch copies them on every call and warns
"RNN module weights are not part of single contiguous chunk of memory". These tests
need a CUDA device and are skipped without one.
"""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import NumpyGRU

from .common import CLASSES, TORCH_CLASS, arrays_for, build, class_id, cuda, inputs, needs_cuda, spec_for, storages

pytestmark = [cuda, needs_cuda]

DTYPES = {"f32": torch.float32, "f64": torch.float64}
# cuDNN may use TF32 tensor cores for float32; float64 is exact to rounding
TOL = {torch.float32: dict(rtol=5e-3, atol=5e-3), torch.float64: dict(rtol=1e-9, atol=1e-10)}
CONFIG = dict(layers=2, bidirectional=True)


def _forward_without_warning(module: nn.RNNBase, x: torch.Tensor, calls: int = 3) -> torch.Tensor:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(calls):
            out = module(x)[0]
        torch.cuda.synchronize()
    texts = [str(w.message) for w in caught]
    assert not [t for t in texts if "single contiguous chunk" in t], texts
    return out


def _assert_flat(module: nn.RNNBase) -> None:
    assert all(w.is_cuda for w in module._flat_weights)
    assert len(storages(module)) == 1, f"{len(storages(module))} storages"


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_from_numpy_on_cuda_is_flat_and_matches_cpu(cls, dtype):
    rnn = build(cls, dtype=dtype, device="cuda", **CONFIG)
    cpu = build(cls, dtype=dtype, **CONFIG)
    _assert_flat(rnn)
    x = inputs(dtype=dtype)
    out = _forward_without_warning(rnn, x.cuda())
    torch.testing.assert_close(out.cpu(), cpu(x)[0], **TOL[dtype])


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_to_cuda_is_flat_and_matches_cpu(cls):
    cpu = build(cls, dtype=torch.float64, **CONFIG)
    rnn = copy.deepcopy(cpu).to("cuda")
    _assert_flat(rnn)
    x = inputs(dtype=torch.float64)
    out = _forward_without_warning(rnn, x.cuda())
    torch.testing.assert_close(out.cpu(), cpu(x)[0], **TOL[torch.float64])


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_deepcopy_of_a_cuda_module_is_flat(cls):
    rnn = build(cls, dtype=torch.float64, device="cuda", **CONFIG)
    clone = copy.deepcopy(rnn)
    _assert_flat(clone)
    assert not storages(clone) & storages(rnn)
    x = inputs(dtype=torch.float64).cuda()
    out = _forward_without_warning(clone, x)
    torch.testing.assert_close(out, rnn(x)[0], rtol=0, atol=0)
    # training the copy leaves the original alone
    before = rnn.weight_hh_l0.detach().clone()
    opt = torch.optim.SGD(clone.parameters(), lr=0.1)
    clone(x)[0].sum().backward()
    opt.step()
    _assert_flat(clone)
    assert torch.equal(rnn.weight_hh_l0, before)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_torch_load_of_a_cuda_module_is_flat(cls):
    rnn = build(cls, device="cuda", **CONFIG)
    buf = io.BytesIO()
    torch.save(rnn, buf)
    buf.seek(0)
    with torch.serialization.safe_globals(numpyrnn.safe_globals()):
        back = torch.load(buf, weights_only=True)
    _assert_flat(back)
    x = inputs().cuda()
    torch.testing.assert_close(_forward_without_warning(back, x), rnn(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_convert_and_load_numpy_on_cuda_stay_flat(cls):
    model = nn.Sequential(TORCH_CLASS[cls](3, 4, num_layers=2, bidirectional=True, batch_first=True)).cuda()
    ptrs = [p.data_ptr() for p in model.parameters()]
    numpyrnn.convert(model)
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    arrays = arrays_for(cls, spec_for(cls, **CONFIG), seed=5)
    model[0].load_numpy(**arrays)
    _assert_flat(model[0])
    x = inputs()
    cpu = cls.from_numpy(**arrays, batch_first=True)
    out = _forward_without_warning(model[0], x.cuda())
    torch.testing.assert_close(out.cpu(), cpu(x)[0], **TOL[torch.float32])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs at least two CUDA devices")
@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_data_parallel_matches_a_single_device(cls):
    rnn = build(cls, dtype=torch.float64, device="cuda", **CONFIG)
    parallel = nn.DataParallel(rnn)
    x = inputs(batch=4, dtype=torch.float64).cuda()
    out = parallel(x)[0]
    torch.testing.assert_close(out, rnn(x)[0], rtol=1e-9, atol=1e-10)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    rnn(x)[0].square().sum().backward()
    for g, p in zip(grads, rnn.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-9, atol=1e-10)


def test_numpy_arrays_reach_cuda_unchanged():
    arrays = arrays_for(NumpyGRU, spec_for(NumpyGRU, **CONFIG), dtype=np.float64, seed=2)
    rnn = NumpyGRU.from_numpy(**arrays, device="cuda", dtype=torch.float64)
    back = rnn.to_numpy()
    for k in ("w0", "w", "b0", "b"):
        np.testing.assert_array_equal(back[k], arrays[k])
