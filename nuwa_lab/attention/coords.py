"""Raster coordinates of 3D token grids, and the rescaling used by cross-attention (NÜWA §3.2).

A grid is a tuple (T, H, W) of frames, height and width in tokens. Its tokens are numbered in
raster order, n = t·H·W + h·W + w. Cross-attention between grids of different sizes first maps a
query coordinate onto the key grid, t' = floor(t·T'/T) (and likewise for h and w), then applies the
pattern there; for self-attention the map is the identity.

| symbol | code |
|---|---|
| (T, H, W) | `grid` (the query grid `q_grid`, the key grid `kv_grid`) |
| n = t·H·W + h·W + w | `raster_index(t, h, w, grid)`; inverse `raster_coords(n, grid)` |
| t' = floor(t·T'/T) | `rescale(c, length_q, length_k)`, per axis |

Everything here works on integer tensors of any shape (broadcasting), so the same functions drive
the dense mask, the index tables of the efficient paths and FlexAttention's `mask_mod`.
"""

from __future__ import annotations

import math
import operator

import torch

Grid = tuple[int, int, int]


def as_int(value: object) -> int:
    """`value` as an int when it is one (numpy and 0-d integer tensors too), else a TypeError.

    Unlike `int(value)` it never truncates (2.5, "3" and True are refused): a size or an index
    that is not a whole number is a caller's mistake, not something to round.
    """
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is a bool, not an int")
    return operator.index(value)  # type: ignore[arg-type]


def check_grid(grid: object, name: str = "grid") -> Grid:
    """`grid` as a (T, H, W) tuple of positive ints, or a ValueError naming the problem."""
    try:
        values = tuple(as_int(g) for g in grid)  # type: ignore[union-attr]
    except TypeError:
        raise ValueError(
            f"{name} must be a (T, H, W) tuple of positive ints, got {grid!r}; "
            "sizes are whole numbers of tokens"
        ) from None
    if len(values) != 3 or any(v < 1 for v in values):
        raise ValueError(
            f"{name} must be a (T, H, W) tuple of three positive ints, got {grid!r}; "
            "an image is (1, H, W) and a text of L tokens is (1, 1, L)"
        )
    return values  # type: ignore[return-value]


def grid_size(grid: Grid) -> int:
    """N = T·H·W, the number of tokens of the grid."""
    return math.prod(grid)


def raster_coords(n: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, h, w) of raster indices `n` (any integer tensor) on `grid`."""
    _, height, width = grid
    return n // (height * width), (n // width) % height, n % width


def raster_index(t: torch.Tensor, h: torch.Tensor, w: torch.Tensor, grid: Grid) -> torch.Tensor:
    """n = t·H·W + h·W + w."""
    _, height, width = grid
    return (t * height + h) * width + w


def rescale(c: torch.Tensor | int, length_q: int, length_k: int) -> torch.Tensor | int:
    """floor(c·L_k / L_q): a query coordinate on an axis of length L_q mapped onto L_k."""
    if length_q == length_k:
        return c
    return (c * length_k) // length_q


def rescale_coords(
    t: torch.Tensor, h: torch.Tensor, w: torch.Tensor, q_grid: Grid, kv_grid: Grid
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query coordinates (t, h, w) on `q_grid` mapped onto `kv_grid` (identity when equal)."""
    return (
        rescale(t, q_grid[0], kv_grid[0]),
        rescale(h, q_grid[1], kv_grid[1]),
        rescale(w, q_grid[2], kv_grid[2]),
    )
