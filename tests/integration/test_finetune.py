"""What the fine-tuning page promises: freezing, reloading in place, memory-mapped sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .common import CLASSES, arrays_for, build, class_id, inputs, spec_for


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_training_from_read_only_memory_maps_leaves_the_files_alone(cls, tmp_path):
    """Writing through a read-only memory map crashes the process; numpyrnn copies out of it."""
    arrays = {k: v for k, v in arrays_for(cls, spec_for(cls, layers=2)).items() if v is not None}
    for k, v in arrays.items():
        np.save(tmp_path / f"{k}.npy", v)
    mapped = {k: np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in arrays}
    rnn = cls.from_numpy(**mapped, batch_first=True)
    opt = torch.optim.SGD(rnn.parameters(), lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        rnn(inputs())[0].square().mean().backward()
        opt.step()
    assert np.abs(rnn.to_numpy()["w0"] - arrays["w0"]).max() > 1e-4
    for k, v in arrays.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{k}.npy"), v)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_freeze_and_partial_freeze(cls):
    arrays = arrays_for(cls, spec_for(cls, layers=2, bidirectional=True))
    frozen = cls.from_numpy(**arrays, batch_first=True, freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())

    rnn = cls.from_numpy(**arrays, batch_first=True)
    for name, p in rnn.named_parameters():
        if name.endswith(("_l0", "_l0_reverse")):
            p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in rnn.parameters() if p.requires_grad], lr=0.5)
    before = {k: v.detach().clone() for k, v in rnn.named_parameters()}
    rnn(inputs())[0].square().mean().backward()
    opt.step()
    for name, p in rnn.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved != name.endswith(("_l0", "_l0_reverse")), name


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_optimizer_built_before_load_numpy_trains_the_loaded_weights(cls):
    rnn = build(cls)
    params = list(rnn.parameters())
    opt = torch.optim.Adam(rnn.parameters(), lr=1e-2)
    arrays = arrays_for(cls, spec_for(cls), seed=9)
    rnn.load_numpy(**arrays)
    assert all(a is b for a, b in zip(rnn.parameters(), params))
    np.testing.assert_array_equal(rnn.to_numpy()["w0"], arrays["w0"])
    rnn(inputs())[0].square().mean().backward()
    opt.step()
    assert np.abs(rnn.to_numpy()["w0"] - arrays["w0"]).max() > 1e-4


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_float64_arrays_give_default_dtype_parameters(cls):
    arrays = arrays_for(cls, spec_for(cls), dtype=np.float64)
    rnn = cls.from_numpy(**arrays)
    assert all(p.dtype == torch.get_default_dtype() for p in rnn.parameters())
