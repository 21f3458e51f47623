"""Data-parallel helpers for the training loop: torch.distributed under `torchrun`.

Data parallelism splits every global batch of b samples into `world_size` equal shards of
b / world_size, one per process (rank). Each rank computes the gradient of its shard's mean loss;
the average of those gradients over ranks is the gradient of the global batch's mean loss, so every
rank takes the same optimizer step and the parameters stay identical, equal (to float rounding) to
one process training on the whole global batch.

| symbol | code | meaning |
|---|---|---|
| R | `world_size` | number of processes |
| r | `rank` | this process, 0..R-1; rank 0 writes checkpoints and shows progress |
| g_r | `p.grad` on rank r | gradient of rank r's shard mean loss |
| g | `average_gradients` | (1/R) sum_r g_r, the gradient of the global batch mean loss |

Launch: `torchrun --nproc_per_node 2 --standalone script.py` (or `python -m torch.distributed.run`)
sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `setup` reads them. Backend: gloo on
the CPU, NCCL on CUDA (`nuwa_lab.device.process_group_backend`). Without WORLD_SIZE > 1 everything
here is a no-op for one process.

Buffers (batch-norm statistics, EMA codebooks) are not gradients: `sync_buffers` averages the
floating-point ones after every step. For statistics that are linear in the batch (an EMA of sums
and counts) the average over equal shards is exactly the single-process update.

Everything around the loop follows one rule: rank 0 alone writes, the other ranks wait and then
read what it wrote.

| helper | what | used by |
|---|---|---|
| `one_writer` | rank 0 holds the lock; all decide alike, wait for its writes | `get_or_train` |
| `main_first` | rank 0 runs a block (writes a cache), then the others (read it) | token caches |
| `agree` | rank 0's value on every rank | budgets in seconds |
| `check_same_step` | every rank resumes from the same step | `train` |

(The files themselves are written by `nuwa_lab.train.files`, which writes nothing on a rank other
than 0.) A checkpoint does not depend on the number of processes: the global step, the
parameters, the optimizer state and the buffers are the same on every rank and equal to one
process's, and every batch is drawn from (seed, global step); so a run saved by R processes
resumes on any other number.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nuwa_lab.device import local_rank, process_group_backend


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group described by torchrun's env vars; return (info, this rank's device).

    Idempotent: an already initialised group is reused. With one process nothing is initialised.
    On CUDA each rank takes device cuda:LOCAL_RANK.
    """
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank())
    elif env_world_size() > 1:
        if not dist.is_available():
            raise RuntimeError(
                f"WORLD_SIZE={env_world_size()} but this torch build has no torch.distributed; "
                "run with one process or install a torch build with distributed support"
            )
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(
                f"WORLD_SIZE={env_world_size()} but {', '.join(missing)} not set; launch with "
                "`torchrun --nproc_per_node N script.py`, which sets them"
            )
        if device.type == "cuda":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=process_group_backend(device.type))
        atexit.register(shutdown)
        info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank())
    else:
        return DistInfo(), device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    return info, device


def shutdown() -> None:
    """Leave the process group (registered at exit by `setup` when it initialised one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_slice(n: int, rank: int, world_size: int) -> slice:
    """The contiguous shard of a global batch of `n` items that `rank` trains on.

    `global_batch[rank_slice(len(global_batch), rank, world_size)]`; n must divide evenly so that
    the average of the shard means equals the global mean.
    """
    if n % world_size:
        raise ValueError(
            f"global batch of {n} does not split into {world_size} equal shards; choose a batch "
            f"size divisible by the number of processes (e.g. {n - n % world_size or world_size})"
        )
    size = n // world_size
    return slice(rank * size, (rank + 1) * size)


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The sum of `x` over ranks (in place; `x` itself with one process)."""
    if info.enabled:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def average_gradients(params: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Replace every `p.grad` by its mean over ranks (one flat all-reduce).

    A parameter without a gradient on some ranks (an unused branch) counts as a zero gradient there;
    one that has none on any rank keeps `grad = None`, as in a single process.
    """
    if not info.enabled:
        return
    params = list(params)
    if not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(has, op=dist.ReduceOp.SUM)
    live = [p for p, h in zip(params, has.tolist(), strict=True) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not live:
        return
    flat = torch.cat([p.grad.reshape(-1).float() for p in live])  # (sum of numels,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for p in live:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def broadcast_modules(modules: Iterable[nn.Module], info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank (so all ranks start identical)."""
    if not info.enabled:
        return
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def sync_buffers(modules: Iterable[nn.Module], info: DistInfo) -> None:
    """Average floating-point buffers over ranks; copy the others (counters) from rank 0."""
    if not info.enabled:
        return
    floats, others = [], []
    for module in modules:
        for b in module.buffers():
            (floats if b.is_floating_point() else others).append(b)
    if floats:
        flat = torch.cat([b.reshape(-1).float() for b in floats])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= info.world_size
        offset = 0
        for b in floats:
            b.copy_(flat[offset : offset + b.numel()].view_as(b))
            offset += b.numel()
    for b in others:
        dist.broadcast(b, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def group(device: torch.device | str = "cpu") -> DistInfo:
    """This process's place in the run, joining torchrun's process group first if it has not yet
    (`setup`); `device` picks the backend (NCCL for CUDA, gloo for the CPU): the device the run
    trains on. One process: `DistInfo()`, nothing initialised."""
    return setup(torch.device(device))[0]


@contextlib.contextmanager
def one_writer(lock: AbstractContextManager, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block that reads files, may compute collectively and may write them: on every rank.

    One process: just `with lock:`. Under torchrun rank 0 alone takes `lock` (a file lock that
    keeps other programs out; taken by every rank it would deadlock the first collective), then
    all ranks meet, so they decide on the same files (only rank 0 can change them now); at the
    end they meet again, so rank 0's writes are finished before any rank goes on and reads them.
    So every rank must enter it (a block that rank 0 alone runs waits forever). On an error
    nobody waits: torchrun stops the other ranks when one fails.
    """
    info = group(device)
    if not info.enabled:
        with lock:
            yield
        return
    with lock if info.is_main else contextlib.nullcontext():
        dist.barrier()
        yield
        dist.barrier()


@contextlib.contextmanager
def main_first(device: torch.device | str = "cpu") -> Iterator[None]:
    """Rank 0 runs the block first; the others wait, then run it (and find what rank 0 wrote).

    For a cache that one process builds and every process reads (tokenized data). The block must
    not communicate with the other ranks (they are waiting): fetch what needs them before it.
    """
    info = group(device)
    if info.enabled and not info.is_main:
        dist.barrier()  # released when rank 0 has run the block
    yield
    if info.enabled and info.is_main:
        dist.barrier()


def agree(value: Any, device: torch.device | str = "cpu") -> Any:
    """Rank 0's `value` on every rank (itself with one process): for numbers each rank would
    measure differently (seconds per step), where ranks that disagree would train different
    numbers of steps and wait for each other forever."""
    info = group(device)
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_same_step(step: int, info: DistInfo, device: torch.device, path: Path | None) -> None:
    """Raise unless every rank resumes from `step` (they read the checkpoint each on its own)."""
    if not info.enabled:
        return
    both = torch.tensor([step, -step], dtype=torch.float64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    low, high = -int(both[1]), int(both[0])
    if low != high:
        raise RuntimeError(
            f"ranks resume from different steps ({low} to {high}; this rank {step}): they do not "
            f"all see the same checkpoint {path}. Put run folders and data/artifacts on a "
            "filesystem every node shares (or set NUWA_LAB_ARTIFACTS to one)"
        )
