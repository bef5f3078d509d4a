"""Data-parallel training of the course GPT on packed names, one process per ``torchrun`` worker.

``train_data_parallel`` runs in any process (alone, it is plain training on the global batch);
``python -m lib.ddp_train`` is the script that ``torchrun`` starts in each worker.

Run (two processes on this machine, gloo on CPU, NCCL on GPUs)::

    torchrun --nnodes 1 --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29500 \\
        -m lib.ddp_train --steps 20 --global-batch 32 --out /tmp/run

or as two "nodes" (run each line on its own machine, with the first machine's address)::

    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port 29500 -m lib.ddp_train ...
    torchrun --nnodes 2 --node-rank 1 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port 29500 -m lib.ddp_train ...

On GPUs each process takes ``cuda:LOCAL_RANK`` and NCCL when the machine has a GPU per local
process, otherwise gloo on the CPU; ``CUDA_VISIBLE_DEVICES=""`` forces the CPU (what the notebook
does, to compare with a CPU reference). Every process builds the same data and the same initial
weights (seed 0) and trains with :func:`train_data_parallel`; rank 0 writes ``<out>/<sync>.pt``: the
final weights, the seconds the training steps took (the slowest process), and the world size.
"""
from __future__ import annotations

import argparse
import os
import socket
import time
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from lib.device import model_device, seeded
from lib.lm import lm_loss
from lib.scale import packed_windows
from lib.text import CharVocab, names_split
from lib.train import History, fit
from lib.transformer import GPT, TransformerConfig
from lib.validate import require_int, require_module

SEQ_LEN = 16


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a rendezvous that never leaves the machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_reduce_hook(world: int) -> Callable:
    def hook(p: torch.Tensor) -> None:
        dist.all_reduce(p.grad)   # sum over processes ...
        p.grad /= world           # ... then the mean, as DDP does
    return hook


def train_data_parallel(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, global_batch: int,
                        lr: float = 0.5, sync: str = "ddp") -> tuple[nn.Module, History]:
    """Train ``model`` for ``steps`` steps of ``global_batch`` windows, split across the processes of
    the ``torch.distributed`` group (or alone if there is none): step ``s`` uses rows
    ``s*G .. (s+1)*G`` of ``(x, y)``, and process ``r`` of ``W`` takes its ``G / W`` share of them.

    ``sync="ddp"`` wraps the model in ``DistributedDataParallel`` (gradients averaged in buckets
    while the backward pass runs); ``"manual"`` averages each gradient with ``dist.all_reduce`` as
    soon as it is ready (a hook per parameter). Plain SGD at a constant learning rate: Adam divides by
    the gradient's running scale, so where a gradient is nearly zero it turns rounding differences
    (the order of a sum) into full-size steps, and two exact-in-arithmetic runs drift apart by ~1e-5.
    Returns the (unwrapped) model and the ``History``.
    """
    require_module("model", model)
    steps, global_batch = require_int("steps", steps, 1), require_int("global_batch", global_batch, 1)
    if sync not in ("ddp", "manual"):
        raise ValueError(f"sync must be 'ddp' or 'manual', got {sync!r}")
    parallel = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if parallel else (0, 1)
    if global_batch % world:
        raise ValueError(f"global_batch ({global_batch}) must be divisible by the number of processes ({world})")
    if steps * global_batch > len(x):
        raise ValueError(f"{steps} steps of {global_batch} need {steps * global_batch} windows, got {len(x)}")
    local = global_batch // world
    batches = [(x[s * global_batch + rank * local:s * global_batch + (rank + 1) * local],
                y[s * global_batch + rank * local:s * global_batch + (rank + 1) * local]) for s in range(steps)]
    trained, handles = model, []
    if parallel and sync == "ddp":
        trained = nn.parallel.DistributedDataParallel(model)
    elif parallel:
        for p in model.parameters():
            dist.broadcast(p.data, src=0)  # start from rank 0's weights, as DDP does
            handles.append(p.register_post_accumulate_grad_hook(_all_reduce_hook(world)))
    try:
        history = fit(trained, batches, epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr),
                      loss_fn=lm_loss, device=model_device(model), progress=False)
    finally:
        for h in handles:
            h.remove()
    return model, history


def course_model(d_model: int = 32, n_layers: int = 2) -> GPT:
    """The GPT every process starts from (seed 0)."""
    with seeded(0):
        return GPT(TransformerConfig(vocab_size=len(CharVocab()), d_model=d_model, n_heads=4, n_layers=n_layers,
                                     max_len=SEQ_LEN))


def course_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Training windows of the names, in a fixed order."""
    return packed_windows(names_split("all", "train"), CharVocab(), SEQ_LEN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--sync", nargs="+", default=["ddp"], choices=["ddp", "manual"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # NCCL needs one GPU per process on each machine; with fewer (e.g. two "nodes" on one machine with
    # one GPU, both LOCAL_RANK 0: NCCL refuses a duplicate GPU) every process runs gloo on the CPU
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= local_world else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if backend == "nccl" else torch.device("cpu")
    x, y = course_data()
    for sync in args.sync:
        model = course_model(args.d_model).to(device)
        dist.barrier()
        start = time.perf_counter()
        model, history = train_data_parallel(model, x.to(device), y.to(device), steps=args.steps,
                                             global_batch=args.global_batch, lr=args.lr, sync=sync)
        seconds = torch.tensor(time.perf_counter() - start)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        if dist.get_rank() == 0:
            torch.save({"state": {k: v.cpu() for k, v in model.state_dict().items()}, "seconds": float(seconds),
                        "world": dist.get_world_size(), "loss": history.steps["train_loss"]},
                       os.path.join(args.out, f"{sync}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
