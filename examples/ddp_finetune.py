"""Fine-tune external GRU weights on several processes with DistributedDataParallel.

The weights come from a ``.npz`` file in numpyrnn's block layout (the keys ``w0``,
``w``, ``b0``, ``b`` that ``NumpyGRU.to_numpy()`` writes). Only rank 0 reads it:
the other ranks build a module of the same configuration without initialising it,
and DistributedDataParallel broadcasts rank 0's parameters to them when it wraps
the model. Each rank then trains on its own shard of the data; after every step
all ranks hold the same weights. Rank 0 writes the fine-tuned weights back in the
same layout.

Run it with torchrun, one process per CPU worker or per GPU::

    # demo weights (any block-layout .npz will do)
    python examples/ddp_finetune.py --make-demo-weights gru.npz

    # CPU: two processes, gloo
    torchrun --nproc_per_node 2 examples/ddp_finetune.py --weights gru.npz --out tuned.npz

    # GPUs: one process per GPU, NCCL
    torchrun --nproc_per_node 8 examples/ddp_finetune.py --weights gru.npz --out tuned.npz --backend nccl

The backend defaults to NCCL when CUDA is available and gloo otherwise.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from numpyrnn import NumpyGRU

KEYS = ("w0", "w", "b0", "b")


class Regressor(nn.Module):
    """A GRU with external weights and a new linear head on its last output."""

    def __init__(self, rnn: NumpyGRU):
        super().__init__()
        self.rnn = rnn
        width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.head = nn.Linear(width, 1, device=next(rnn.parameters()).device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)


def make_demo_weights(path: str, *, input_size: int = 8, hidden: int = 16, layers: int = 2, seed: int = 0) -> None:
    """Write random block-layout GRU weights, standing in for weights from elsewhere."""
    rng = np.random.default_rng(seed)
    G, D = 3, 1
    scale = 1.0 / np.sqrt(hidden)
    arrays = {
        "w0": rng.uniform(-scale, scale, (D, hidden, G * (input_size + hidden))),
        "b0": rng.uniform(-scale, scale, (D, hidden, 2 * G)),
    }
    if layers > 1:
        arrays["w"] = rng.uniform(-scale, scale, (layers - 1, D, hidden, G * (D * hidden + hidden)))
        arrays["b"] = rng.uniform(-scale, scale, (layers - 1, D, hidden, 2 * G))
    np.savez(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
    print(f"wrote {path}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


def load_on_rank0(path: str, device: torch.device) -> NumpyGRU:
    """Rank 0 builds the GRU from the file; the others build an empty one of the same shape.

    The weights reach the other ranks through DistributedDataParallel's initial
    broadcast (see :func:`main`).
    """
    if dist.get_rank() == 0:
        with np.load(path) as data:
            unknown = set(data.files) - set(KEYS)
            if unknown:
                raise ValueError(f"{path}: unexpected keys {sorted(unknown)}; expected some of {KEYS}")
            arrays = {k: data[k] for k in data.files}
        rnn = NumpyGRU.from_numpy(**arrays, batch_first=True, device=device)
        config = [dict(rnn.spec.module_kwargs(), batch_first=True)]
    else:
        config = [None]
    dist.broadcast_object_list(config, src=0, device=device if device.type == "cuda" else None)
    if dist.get_rank() != 0:
        rnn = NumpyGRU(**config[0], device="meta").to_empty(device=device)
    return rnn


def synthetic_data(n: int, steps: int, input_size: int, seed: int) -> TensorDataset:
    """Sequences and a target that depends on the whole sequence (a running mean)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, input_size, generator=g)
    v = torch.randn(input_size, generator=g) / input_size**0.5
    y = torch.tanh(x.mean(dim=1) @ v)
    return TensorDataset(x, y)


def same_on_every_rank(module: nn.Module) -> bool:
    """Whether all ranks hold bit-identical parameters."""
    flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    differs = torch.tensor([float(not torch.equal(flat, reference))], device=flat.device)
    dist.all_reduce(differs)
    return differs.item() == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="block-layout .npz with w0 [, w, b0, b]")
    parser.add_argument("--out", help="where rank 0 writes the fine-tuned weights (.npz)")
    parser.add_argument("--make-demo-weights", metavar="PATH", help="write random demo weights and exit")
    parser.add_argument("--backend", choices=["gloo", "nccl"], help="default: nccl with CUDA, else gloo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seq-len", type=int, default=12)
    parser.add_argument("--freeze-first-layer", action="store_true", help="train only the layers above 0 and the head")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.make_demo_weights:
        make_demo_weights(args.make_demo_weights, seed=args.seed)
        return 0
    if not args.weights:
        parser.error("--weights is required (or --make-demo-weights PATH)")
    if "RANK" not in os.environ:
        parser.error("start it with torchrun, e.g. torchrun --nproc_per_node 2 " + " ".join(sys.argv))

    backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        rnn = load_on_rank0(args.weights, device)
        torch.manual_seed(args.seed)  # the new head starts the same everywhere (DDP would sync it anyway)
        model = Regressor(rnn)
        if args.freeze_first_layer:
            for name, p in rnn.named_parameters():
                if name.endswith(("_l0", "_l0_reverse")):
                    p.requires_grad_(False)
        # Wrapping broadcasts rank 0's parameters (the loaded weights) to every rank.
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if not same_on_every_rank(model):
            raise RuntimeError("ranks disagree after DistributedDataParallel's initial broadcast")

        data = synthetic_data(args.batch_size * world * 8, args.seq_len, rnn.input_size, args.seed)
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
        loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, drop_last=True)
        optimizer = torch.optim.AdamW([p for p in ddp.parameters() if p.requires_grad], lr=args.lr)

        step, epoch = 0, 0
        while step < args.steps:
            sampler.set_epoch(epoch)
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                loss = nn.functional.mse_loss(ddp(x), y)  # a mean: DDP averages gradients over ranks
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                mean_loss = loss.detach().clone()
                dist.all_reduce(mean_loss)
                if rank == 0:
                    print(f"step {step:4d}  loss {mean_loss.item() / world:.6f}", flush=True)
                step += 1
                if step == args.steps:
                    break
            epoch += 1

        if not same_on_every_rank(model):
            raise RuntimeError("ranks disagree after training")
        if rank == 0:
            print(f"ranks agree: {world} processes hold identical weights", flush=True)
            if args.out:
                tuned = {k: v for k, v in rnn.to_numpy().items() if v is not None and k in KEYS}
                head = {f"head.{k}": v.detach().cpu().numpy() for k, v in model.head.state_dict().items()}
                np.savez(args.out, **tuned, **head)
                print(f"wrote {args.out}", flush=True)
        # DistributedDataParallel's reducer holds the process group: release it before the
        # group is torn down (otherwise a gloo rank may abort while exiting).
        del ddp, optimizer
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
