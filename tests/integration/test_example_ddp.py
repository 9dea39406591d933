"""examples/ddp_finetune.py under torchrun: two CPU processes (gloo), 127.0.0.1 only."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import torch
from torch import nn

from numpyrnn import NumpyGRU

from .common import REPO_ROOT, free_port, loopback_env

EXAMPLE = REPO_ROOT / "examples" / "ddp_finetune.py"
ARGS = dict(steps=16, lr=1e-2, batch=8, seq=12, seed=3)


def _example():
    spec = importlib.util.spec_from_file_location("ddp_finetune", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _full_data_loss(example, arrays: dict, head: dict | None, world: int) -> float:
    rnn = NumpyGRU.from_numpy(**arrays, batch_first=True)
    torch.manual_seed(ARGS["seed"])
    model = example.Regressor(rnn)
    if head is not None:
        model.head.load_state_dict({k: torch.from_numpy(v) for k, v in head.items()})
    data = example.synthetic_data(ARGS["batch"] * world * 8, ARGS["seq"], rnn.input_size, ARGS["seed"])
    with torch.no_grad():
        return nn.functional.mse_loss(model(data.tensors[0]), data.tensors[1]).item()


def test_torchrun_two_processes_fine_tune_external_weights(tmp_path):
    example = _example()
    weights, out = tmp_path / "gru.npz", tmp_path / "tuned.npz"
    example.make_demo_weights(str(weights), input_size=4, hidden=8, layers=2, seed=1)
    port = free_port()
    env = {**os.environ, **loopback_env(port), "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(port),
        str(EXAMPLE), "--weights", str(weights), "--out", str(out), "--backend", "gloo",
        "--steps", str(ARGS["steps"]), "--lr", str(ARGS["lr"]), "--batch-size", str(ARGS["batch"]),
        "--seq-len", str(ARGS["seq"]), "--seed", str(ARGS["seed"]), "--freeze-first-layer",
    ]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ranks agree: 2 processes hold identical weights" in run.stdout
    losses = [float(line.split()[-1]) for line in run.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == ARGS["steps"] and np.isfinite(losses).all()

    before = dict(np.load(weights))
    tuned = dict(np.load(out))
    head = {k.split(".", 1)[1]: tuned.pop(k) for k in list(tuned) if k.startswith("head.")}
    assert set(tuned) == set(before) == {"w0", "b0", "w", "b"} and set(head) == {"weight", "bias"}
    # the first layer was frozen, the layer above it was trained
    np.testing.assert_array_equal(tuned["w0"], before["w0"])
    np.testing.assert_array_equal(tuned["b0"], before["b0"])
    assert np.abs(tuned["w"] - before["w"]).max() > 1e-4
    # and the fine-tuned weights fit the task better than the loaded ones with a fresh head
    tuned_loss, loaded_loss = _full_data_loss(example, tuned, head, world=2), _full_data_loss(example, before, None, world=2)
    assert tuned_loss < 0.9 * loaded_loss
