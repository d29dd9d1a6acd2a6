"""Single process or DDP under ``torchrun``: which device, which rank, and the few collectives the loop needs.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK (and MASTER_ADDR / PORT); then every process joins the
process group (NCCL on CUDA, gloo on CPU), uses GPU LOCAL_RANK, and only rank 0 logs and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..infer.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_name: str) -> DistInfo:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); idempotent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, device)


def teardown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def sum_over_ranks(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum over all ranks in one collective (stop flags and loss values of a step)."""
    if not info.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_text(text: str | None, info: DistInfo) -> str:
    """Rank 0's string on every rank (e.g. an error message from a setup step only rank 0 runs)."""
    if not info.distributed:
        return text or ""
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0] or ""
