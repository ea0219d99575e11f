"""Data parallelism over ``torch.distributed`` (gloo on CPU, NCCL on GPU), launched by torchrun.

Launch a training script with ``torchrun --nproc_per_node=P script.py`` (multi-node: add
``--nnodes``, ``--node_rank`` and ``--rdzv_endpoint`` as usual). The trainer then calls
:func:`init_distributed`, which joins the process group torchrun describes in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) or uses one the script
already initialised.

How a step is split (:func:`shard`): every process draws the same global batch (the same
seeded permutation) and takes a contiguous share of it (sizes differ by at most one). Each
process scales its mean loss by ``n_local / n_global`` before ``backward``, so the all-reduced
**sum** of gradients (:func:`all_reduce_gradients`) is exactly the gradient of the global
batch's mean loss, also for an uneven last batch. Metrics are summed the same way. Rank 0
alone writes checkpoints and logs; the RNG states of every rank go into the checkpoint.

Batch normalisation keeps per-process statistics (as ``DistributedDataParallel`` without
``SyncBatchNorm``); models with batch norm therefore match a single process only up to those
statistics.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group: ``rank`` of ``world`` (``local_rank`` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 (writes checkpoints and logs)."""
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistContext:
    """Join (or reuse) the process group; single-process context without one.

    ``device`` picks the backend when a group is created here: NCCL when CUDA is used
    (``"cuda"``, or ``"auto"`` with CUDA available), gloo otherwise.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(),
                           int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", "0")))


def shard(indices: Sequence[int], ctx: DistContext) -> list[int]:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    n, w = len(indices), ctx.world
    start = ctx.rank * (n // w) + min(ctx.rank, n % w)
    size = n // w + (1 if ctx.rank < n % w else 0)
    return list(indices[start:start + size])


def all_reduce_gradients(params: Iterable[Tensor], ctx: DistContext) -> None:
    """Sum every parameter's gradient over the ranks (a missing gradient counts as zero)."""
    if not ctx.active:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def all_reduce_sums(values: dict[str, float], ctx: DistContext,
                    device: torch.device | str = "cpu") -> dict[str, float]:
    """Sum a ``{name: number}`` dict over the ranks (float64; a key missing on a rank counts
    as 0 there)."""
    if not ctx.active:
        return dict(values)
    keys = sorted(set().union(*all_gather_objects(sorted(values), ctx)))
    t = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64,
                     device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist(), strict=True))


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    """Wait for every rank."""
    if ctx.active:
        dist.barrier()


__all__ = ["DistContext", "all_gather_objects", "all_reduce_gradients", "all_reduce_sums",
           "barrier", "broadcast_object", "init_distributed", "shard"]
