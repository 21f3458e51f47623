"""Which keys a query sees in `nuwa-pytorch`'s causal `Sparse3DNA`, in the terms of our `nearby`.

Read from the peer's code and checked numerically by `bench peers`:

| layer | frames | rows | cols | also | keys (inside the grid) |
|---|---|---|---|---|---|
| ours, extent (1, 3, 3), raster | t-1..t | h-3..h+3 | w-3..w+3 | raster past only | ≤ 74 |
| Sparse3DNA, kernel (3, 7, 7) | t-2..t | h-6..h | w-6..w | a BOS key | ≤ 147 + 1 |

The peer pads the keys by kernel-1 in front on every axis and unfolds them with the kernel, so the
query sits at the last corner of its box: it looks back 2 frames, not 1, and only up and left. Its
kernel k is exactly our nearby extent k-1 under `causal_rule="quadrant"`, plus a BOS token that
every query sees (its input is BOS + the video, its first output that of BOS). So the "same box"
3×7×7 is not the same set of keys: the peer sees about twice as many.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def peer_extent(kernel: tuple[int, int, int]) -> tuple[int, int, int]:
    """Our nearby extent (under causal_rule="quadrant") that sees the keys of causal Sparse3DNA."""
    if any(k < 1 or k % 2 == 0 for k in kernel):
        raise ValueError(f"Sparse3DNA kernels are odd and positive, got {kernel}")
    return tuple(k - 1 for k in kernel)


def peer_window_mask(kernel: tuple[int, int, int], grid: tuple[int, int, int]) -> torch.Tensor:
    """(n, n) bool: the video keys each video query of Sparse3DNA(causal=True) sees (BOS aside).

    Rebuilt the peer's way: pad the grid by kernel-1 in front on every axis, slide the kernel box.
    """
    (kt, kh, kw), n = kernel, math.prod(grid)
    index = torch.arange(n).reshape(grid)  # (t, h, w) raster index of each key
    padded = F.pad(index, (kw - 1, 0, kh - 1, 0, kt - 1, 0), value=n)  # n = padding
    boxes = padded.unfold(0, kt, 1).unfold(1, kh, 1).unfold(2, kw, 1)  # (t, h, w, kt, kh, kw)
    mask = torch.zeros(n, n + 1, dtype=torch.bool)
    mask.scatter_(1, boxes.reshape(n, -1), True)
    return mask[:, :n]


def max_keys(extent: tuple[int, int, int], causal_rule: str) -> int:
    """Keys a query far from the borders sees under the causal nearby window."""
    et, eh, ew = extent
    if causal_rule == "quadrant":
        return (et + 1) * (eh + 1) * (ew + 1)
    return (et * (2 * eh + 1) + eh) * (2 * ew + 1) + ew + 1


def window_text(extent: tuple[int, int, int], causal_rule: str) -> str:
    et, eh, ew = extent
    if causal_rule == "quadrant":
        where = f"frames t-{et}..t, rows h-{eh}..h, cols w-{ew}..w"
    else:
        where = f"frames t-{et}..t, rows h-{eh}..h+{eh}, cols w-{ew}..w+{ew}, raster past"
    return f"{where} (<= {max_keys(extent, causal_rule)} keys)"
