"""torchrun support: join the job, know this process's rank, sum numbers over processes, compare weights.

Outside a torchrun job every function here is a no-op (or the single-process answer), so the training loop
reads the same either way.
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def process_group():
    """Join the torchrun job this process was started in (``RANK`` in the environment), if any.

    gloo for CPU tensors, nccl for CUDA tensors; the group is destroyed on exit, also on error. Outside torchrun, or inside
    an already initialized group, it does nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or "RANK" not in os.environ or dist.is_initialized():
        yield
        return
    # gloo for CPU tensors, nccl for CUDA ones: a job may train on the CPU (--device cpu) on a machine with GPUs
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_sum(values: list[float], device) -> list[float]:
    """Sum ``values`` over all processes (returned as is in a single process)."""
    if rank_and_world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def check_identical_weights(model: nn.Module) -> None:
    """Compare a fingerprint of the weights across processes; DDP must have kept them identical."""
    digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest()
    digests: list[str] = [""] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"processes ended with different weights: {digests}")
    if dist.get_rank() == 0:
        log.info("all %d processes hold identical weights (sha256 %s...)", len(digests), digest[:12])


def barrier() -> None:
    """Wait for every process of a torchrun job (nothing in a single process)."""
    if rank_and_world()[1] > 1:
        dist.barrier()
