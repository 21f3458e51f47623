"""Where the training loop's tensors go: batches onto the device, autocast, peak memory.

The decisions (which device, whether to pin host memory, which autocast precision) are the device
policy's (`nuwa_lab.device`); this module carries them out for `nuwa_lab.train.loop`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import sys
from typing import Any

import torch

from nuwa_lab.device import autocast_dtype


def peak_mem_mb(device: torch.device) -> float:
    """The peak memory so far, MB: CUDA allocations on a GPU, the process's max RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def to_device(x: Any, device: torch.device, pin: bool = False) -> Any:
    """Tensors inside dicts, lists, tuples and dataclasses moved to `device`; the rest unchanged.

    pin: host tensors are first copied to pinned memory, so the copy to the GPU is asynchronous."""
    if isinstance(x, torch.Tensor):
        if pin and x.device.type == "cpu" and not x.is_pinned():
            x = x.pin_memory()
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device, pin) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(to_device(v, device, pin) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, device, pin) for v in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):  # e.g. nuwa_lab.world's Batch
        fields = [f.name for f in dataclasses.fields(x) if f.init]
        return dataclasses.replace(x, **{k: to_device(getattr(x, k), device, pin) for k in fields})
    return x


def autocast_context(device: torch.device, enabled: bool):
    """Autocast where the device policy says so (bf16 on CUDA); the parameters stay fp32."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()  # asked on a GPU only
    dtype = autocast_dtype(device.type, amp=enabled, bf16=bf16)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
