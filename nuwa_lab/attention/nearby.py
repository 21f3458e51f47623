"""3D nearby attention (3DNA, NÜWA §3.2 Eq. 8-9), efficient: query tiles attend to their halo.

$y_q = \\mathrm{softmax}(q K_{N(q)}^\\top/\\sqrt{e}) V_{N(q)}$,
$N(q) = \\{k : |t_k - \\hat t_q| \\le e^t, |h_k - \\hat h_q| \\le e^h,
|w_k - \\hat w_q| \\le e^w\\}$
(or the shifted window under border="shift"; (t̂, ĥ, ŵ) the query rescaled onto the key grid).

The query grid is cut into tiles (default `DEFAULT_TILE`, measured in key-grid coordinates; tiles
need not divide the grid). A tile gathers the keys of its halo, the union of its queries' windows
(cut at the grid edge, and at the tile's last frame when causal), and a small (tile × halo) mask
from `masks.may_attend` keeps each query to its own window. Work and memory grow as N · |halo|,
linearly in the number of tokens; nothing of size N × N is built.

Axis letters: b batch, heads, n queries, m keys, e head width; t h w grid axes.

| symbol | code |
|---|---|
| (e^t, e^h, e^w) | `spec.extent` |
| tile of queries / its halo | `tile_plan(...).q_slot` / `.k_index` |
| N(q) within the halo | `tile_plan(...).mask` |
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
from nuwa_lab.attention.masks import AttentionSpec, window_bounds

DEFAULT_TILE = (1, 4, 8)  # (t, h, w) queries per tile; see `python -m nuwa_lab bench attention`


def key_ranges(spec: AttentionSpec) -> tuple[KeyRange, KeyRange, KeyRange]:
    """Per axis: the key range covering the windows of rescaled query coordinates rmin..rmax."""
    clip = clipped_axes(spec)

    def make(axis: int) -> KeyRange:
        radius, length = spec.extent[axis], spec.kv_grid[axis]

        def key_range(rmin: torch.Tensor, rmax: torch.Tensor):
            lo, _ = window_bounds(rmin, radius, length, spec.border)
            _, hi = window_bounds(rmax, radius, length, spec.border)
            return lo, (torch.minimum(hi, rmax) if axis in clip else hi)

        return key_range

    return make(0), make(1), make(2)


@lru_cache(maxsize=32)
def tile_plan(spec: AttentionSpec, tile: tuple[int, int, int], device: str) -> GroupPlan:
    """The (cached) plan of tiles and halos for the whole query grid of `spec`."""
    return grid_plan(spec, key_ranges(spec), tuple(max(1, s) for s in tile), device)


# Cached per decoding step and shared by every decoder layer: see the note in grouped.py.
@lru_cache(maxsize=4096)
def step_plan(
    spec: AttentionSpec, positions: tuple[int, ...], n_keys: int, device: str
) -> GroupPlan:
    """The (cached) plan of the queries at raster `positions` over the first `n_keys` keys."""
    widths = tuple(min(2 * e + 1, n) for e, n in zip(spec.extent, spec.kv_grid, strict=True))
    at = torch.tensor(positions, dtype=torch.long, device=device)
    return positions_plan(spec, at, n_keys, key_ranges(spec), widths)


def nearby_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
    tile: tuple[int, int, int] = DEFAULT_TILE,
) -> torch.Tensor:
    """Nearby attention, (b, heads, n, e), equal to the dense oracle."""
    if q_positions is not None:
        plan = step_plan(spec, tuple(q_positions.tolist()), k.shape[2], str(q.device))
    else:
        plan = tile_plan(spec, tuple(tile), str(q.device))
    return grouped_attend(q, k, v, plan)
