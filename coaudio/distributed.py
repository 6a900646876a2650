"""Running as one of several processes started by torchrun: join, who am I, wait, leave.

Outside torchrun (``WORLD_SIZE`` unset or 1) every call is a no-op and the process is rank 0
of 1, so callers write one code path. Training (DDP) and ``classify`` (sharded files) use it.
"""

from __future__ import annotations

import os


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join() -> int:
    """Join the process group when launched by torchrun (nccl with a GPU, else gloo); returns
    this process's rank (0 outside torchrun)."""
    if not launched():
        return 0
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the joined group; (0, 1) outside torchrun."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier(skip: bool = False) -> None:
    """Wait for every rank here (a no-op outside torchrun). ``skip`` lets one side pass, so
    rank 0 can run ahead of the others at a matching pair of calls."""
    import torch.distributed as dist

    if not skip and dist.is_available() and dist.is_initialized():
        dist.barrier()


def leave() -> None:
    """Leave the group together: a rank that exits while gloo's threads still run aborts
    ("terminate called without an active exception", SIGABRT), failing the launch. Not on an
    error path: a failed rank must not wait at a barrier for the others."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
