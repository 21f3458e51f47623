"""3D block attention (NÜWA §3.2, Table 6 "block"): attention within (b^t, b^h, b^w) blocks.

$y_q = \\mathrm{softmax}(q K_{B(q)}^\\top/\\sqrt{e}) V_{B(q)}$, B(q) the block of the key grid that
holds the query's rescaled coordinate (t̂//b^t, ĥ//b^h, ŵ//b^w).

The grid is reshaped into blocks by one gather (`grouped.product_positions`); partial edge blocks
(grids not divisible by the block) are padded and the padding masked, and the causal rule is a
small per-block mask, so the cost is N · b^t·b^h·b^w. Axis letters: b batch, heads, n, m tokens, e
head width.

| symbol | code |
|---|---|
| (b^t, b^h, b^w) | `spec.block` |
| the blocks | `block_plan(...)` (a `grouped.GroupPlan`) |
"""

from __future__ import annotations

from functools import lru_cache

import torch

from nuwa_lab.attention.grouped import (
    GroupPlan,
    KeyRange,
    clipped_axes,
    grid_plan,
    grouped_attend,
    positions_plan,
)
from nuwa_lab.attention.masks import AttentionSpec


def key_ranges(spec: AttentionSpec) -> tuple[KeyRange, KeyRange, KeyRange]:
    """Per axis: the block holding rescaled coordinates rmin..rmax (one block by construction)."""
    clip = clipped_axes(spec)

    def make(axis: int) -> KeyRange:
        size, length = spec.block[axis], spec.kv_grid[axis]

        def key_range(rmin: torch.Tensor, rmax: torch.Tensor):
            lo = (rmin // size) * size
            hi = torch.clamp(lo + size, max=length) - 1
            return lo, (torch.minimum(hi, rmax) if axis in clip else hi)

        return key_range

    return make(0), make(1), make(2)


@lru_cache(maxsize=32)
def block_plan(spec: AttentionSpec, device: str) -> GroupPlan:
    """The (cached) plan: one group per block of the key grid that holds at least one query."""
    return grid_plan(spec, key_ranges(spec), spec.block, device)


# Cached per decoding step and shared by every decoder layer: see the note in grouped.py.
@lru_cache(maxsize=4096)
def step_plan(
    spec: AttentionSpec, positions: tuple[int, ...], n_keys: int, device: str
) -> GroupPlan:
    """The (cached) plan of the queries at raster `positions` over the first `n_keys` keys."""
    widths = tuple(min(b, n) for b, n in zip(spec.block, spec.kv_grid, strict=True))
    at = torch.tensor(positions, dtype=torch.long, device=device)
    return positions_plan(spec, at, n_keys, key_ranges(spec), widths)


def block_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block attention, (b, heads, n, e), equal to the dense oracle."""
    if q_positions is not None:
        plan = step_plan(spec, tuple(q_positions.tolist()), k.shape[2], str(q.device))
    else:
        plan = block_plan(spec, str(q.device))
    return grouped_attend(q, k, v, plan)
