"""Multi-process fine-tuning with torch.distributed (gloo on the CPU, 127.0.0.1 only).

Two processes each build the modules with ``from_numpy`` from the same arrays, wrap
them (DistributedDataParallel, or FSDP2's ``fully_shard``) and train a few steps on
their half of a batch. Afterwards every rank holds the same parameters, equal to one
process training on the whole batch (float64, mean loss: the averaged gradients are
the whole batch's).
"""

from __future__ import annotations

import gc
import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .common import CLASSES, arrays_for, class_id, cuda, free_port, loopback_env, needs_cuda, spec_for

WORLD = 2
STEPS = 3
LR = 0.5
BATCH, SEQ, HIDDEN = 4, 5, 4
CONFIG = dict(layers=2, bidirectional=True)


def _data(cls):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(BATCH, SEQ, 3, generator=g, dtype=torch.float64)
    y = torch.randn(BATCH, SEQ, 2 * HIDDEN, generator=g, dtype=torch.float64)
    arrays = arrays_for(cls, spec_for(cls, hidden=HIDDEN, **CONFIG), dtype=np.float64, seed=4)
    return arrays, x, y


def _train(module, x, y, steps=STEPS):
    opt = torch.optim.SGD(module.parameters(), lr=LR)
    for _ in range(steps):
        opt.zero_grad()
        out, _ = module(x)
        ((out - y) ** 2).mean().backward()
        opt.step()


def _full(t: torch.Tensor) -> np.ndarray:
    if hasattr(t, "full_tensor"):  # a DTensor shard under FSDP2
        t = t.full_tensor()
    return t.detach().cpu().numpy()


def _worker(rank: int, world: int, port: int, wrappers: tuple, outdir: str) -> None:
    os.environ.update(loopback_env(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        for wrapper in wrappers:
            _run(rank, world, wrapper, outdir)
        gc.collect()  # release DDP's reducer (it holds the group) before tearing the group down
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _run(rank: int, world: int, wrapper: str, outdir: str) -> None:
    results = {}
    for cls in CLASSES:
        arrays, x, y = _data(cls)
        module = cls.from_numpy(**arrays, batch_first=True, dtype=torch.float64)
        half = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        if wrapper == "ddp":
            wrapped = torch.nn.parallel.DistributedDataParallel(module)
            params = dict(wrapped.module.named_parameters())
        else:
            from torch.distributed.fsdp import fully_shard

            wrapped = fully_shard(module)
            params = dict(wrapped.named_parameters())
        _train(wrapped, x[half], y[half])
        for name, p in params.items():
            results[f"{cls.__name__}.{name}"] = _full(p)
    np.savez(Path(outdir) / f"{wrapper}-{rank}.npz", **results)


def _has_fsdp2() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def _spawn(wrappers: tuple, outdir: Path, timeout: float) -> None:
    ctx = mp.spawn(_worker, args=(WORLD, free_port(), wrappers, str(outdir)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError(f"distributed workers did not finish within {timeout:.0f} s")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Spawn the two ranks once; they train under every wrapper in turn.

    The workers only train and save (the checks are made here, afterwards), so a run
    whose rendezvous fails (say, the free port was taken meanwhile) is tried once more.
    """
    outdir = tmp_path_factory.mktemp("distributed")
    wrappers = ("ddp", "fsdp2") if _has_fsdp2() else ("ddp",)
    errors = []
    for _ in range(2):
        try:
            _spawn(wrappers, outdir, timeout=150.0)
            return outdir
        except Exception as exc:  # noqa: BLE001 - reported below if the second try fails too
            errors.append(f"{type(exc).__name__}: {exc}")
    pytest.fail("distributed workers failed twice:\n" + "\n".join(errors))


def _single_process(cls) -> dict[str, np.ndarray]:
    arrays, x, y = _data(cls)
    module = cls.from_numpy(**arrays, batch_first=True, dtype=torch.float64)
    _train(module, x, y)
    return {f"{cls.__name__}.{k}": v.detach().numpy() for k, v in module.named_parameters()}


def _check(wrapper: str, outdir: Path) -> None:
    ranks = [dict(np.load(outdir / f"{wrapper}-{r}.npz")) for r in range(WORLD)]
    for cls in CLASSES:
        expected = _single_process(cls)
        arrays, _, _ = _data(cls)
        initial = cls.from_numpy(**arrays, batch_first=True, dtype=torch.float64)
        for key, value in expected.items():
            for r in range(1, WORLD):
                np.testing.assert_array_equal(ranks[r][key], ranks[0][key], err_msg=f"rank {r} {key}")
            np.testing.assert_allclose(ranks[0][key], value, rtol=1e-6, atol=1e-6, err_msg=key)
            # the training did move the weights (so the comparison above is not trivial)
            start = getattr(initial, key.split(".", 1)[1]).detach().numpy()
            assert np.abs(value - start).max() > 1e-4, key


def test_ddp_two_processes_equal_single_process_training(trained):
    _check("ddp", trained)


@pytest.mark.skipif(not _has_fsdp2(), reason="needs FSDP2 (torch.distributed.fsdp.fully_shard)")
def test_fsdp2_two_processes_equal_single_process_training(trained):
    _check("fsdp2", trained)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_single_process_reference_is_deterministic(cls):
    """The reference the distributed runs are compared with does not depend on the run."""
    a, b = _single_process(cls), _single_process(cls)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# --------------------------------------------------------------------------------------
# FSDP2 on a GPU: cuDNN's flat buffer must not take the weights away from FSDP2
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nccl_group():
    if not dist.is_nccl_available():
        pytest.skip("needs NCCL")
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        for key, value in loopback_env(port).items():
            env.setenv(key, value)
        dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                                timeout=timedelta(seconds=60))
        yield
        dist.destroy_process_group()


@cuda
@needs_cuda
@pytest.mark.skipif(not _has_fsdp2(), reason="needs FSDP2 (torch.distributed.fsdp.fully_shard)")
@pytest.mark.filterwarnings("ignore:RNN module weights are not part of single contiguous chunk:UserWarning")
@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_fsdp2_on_a_gpu_trains_like_the_plain_module(cls, nccl_group):
    from torch.distributed.fsdp import fully_shard

    arrays, x, y = _data(cls)
    x, y = x.cuda(), y.cuda()
    plain = cls.from_numpy(**arrays, batch_first=True, dtype=torch.float64, device="cuda")
    sharded = fully_shard(cls.from_numpy(**arrays, batch_first=True, dtype=torch.float64, device="cuda"))
    steps = 4  # stale weights would show from the second step on
    _train(plain, x, y, steps)
    _train(sharded, x, y, steps)
    mine = {k: _full(v) for k, v in sharded.named_parameters()}
    for k, v in plain.named_parameters():
        np.testing.assert_allclose(mine[k], v.detach().cpu().numpy(), rtol=1e-9, atol=1e-10, err_msg=k)
