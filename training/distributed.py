"""Multi-process training through PyTorch's own engine: torchrun + DistributedDataParallel.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; a plain `cxr-train` (no launcher) is one process
and never touches torch.distributed. NCCL joins GPUs, Gloo joins CPU processes.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """The launcher's view of this process (one process when no launcher set the variables)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    return DistEnv(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)


def process_device(env: DistEnv, device: torch.device) -> torch.device:
    """One GPU per process: rank-local CUDA index when several processes share a node."""
    if device.type == "cuda" and env.enabled:
        device = torch.device("cuda", env.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def init(env: DistEnv, device: torch.device) -> None:
    if env.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        # Every rank reaches this point before any tears its connections down: a gloo rank whose
        # peer had already exited could abort at exit ("terminate called without an active
        # exception"), failing an otherwise finished run.
        dist.barrier()
        dist.destroy_process_group()


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (a collective when several processes run)."""
    if not env.enabled:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_to_main(obj: Any, env: DistEnv) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (None elsewhere); a collective: all ranks must call it."""
    if not env.enabled:
        return [obj]
    out: list[Any] | None = [None] * env.world_size if env.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def no_forward_buffer_sync() -> dict[str, bool]:
    """DDP keyword that stops broadcasting buffers at every forward (renamed in newer torch)."""
    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}
