"""torch.func.functional_call and CPU autocast: the same results as the torch parent."""

from __future__ import annotations

import pytest
import torch

from .common import CLASSES, build, class_id, inputs, torch_twin


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_functional_call_uses_the_swapped_parameters(cls):
    rnn = build(cls, layers=2, bidirectional=True)
    parent = torch_twin(rnn)
    before = {k: v.detach().clone() for k, v in rnn.named_parameters()}
    g = torch.Generator().manual_seed(7)
    swapped = {k: (0.3 * torch.randn(v.shape, generator=g)).requires_grad_() for k, v in rnn.named_parameters()}
    x = inputs()

    out, _ = torch.func.functional_call(rnn, swapped, (x,))
    ref, _ = torch.func.functional_call(parent, swapped, (x,))
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # the swap took effect (the module's own weights give something else) ...
    assert (out - rnn(x)[0]).abs().max() > 1e-3
    # ... and was undone afterwards
    for k, v in rnn.named_parameters():
        assert torch.equal(v, before[k]), k
    torch.testing.assert_close(rnn(x)[0], parent(x)[0], rtol=0, atol=0)
    # gradients reach the swapped tensors, not the module's parameters
    grads = torch.autograd.grad(out.sum(), list(swapped.values()))
    ref_grads = torch.autograd.grad(ref.sum(), list(swapped.values()))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(p.grad is None for p in rnn.parameters())


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_cpu_autocast_bf16_matches_torch(cls):
    rnn = build(cls, layers=2)
    parent = torch_twin(rnn)
    x = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            ref, h_ref = parent(x)
        except RuntimeError as exc:  # torch's own module: oneDNN has no bf16 kernel for it on this CPU
            pytest.skip(f"torch's {type(parent).__name__} cannot run in bfloat16 on this CPU: {str(exc)[:80]}")
        out, h = rnn(x)
        loss = out.float().square().mean()
    # same dtype policy as torch (the GRU op is not on CPU autocast's list; LSTM and RNN are)
    assert out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=0)
    # and close to float32, as bf16 allows
    torch.testing.assert_close(out.float(), rnn(x)[0], rtol=0.05, atol=0.03)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in rnn.parameters())
