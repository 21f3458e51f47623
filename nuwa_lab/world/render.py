r"""Vectorised rasteriser of the Shapes World: flat-coloured shapes on a dark background.

Every pixel of a batch of scenes is decided by an inside test on a coordinate grid, all in one set
of tensor operations (no Python loop over pixels or samples; a loop over the few objects per scene
paints them in order, later ones on top). Objects are crisp (no antialiasing) and flat-coloured, so
the sketch (segmentation map) is exactly the set of non-background pixels.

Exact on any machine: centres, radii and speeds are multiples of 1/8 pixel and every shape factor is
a dyadic fraction, so all geometry below is exact in float32 and no CPU rounds an edge pixel
differently.

Axis letters: b scenes, t frames, m objects per scene, h w pixels.

| symbol | code | meaning |
|---|---|---|
| $(c_x, c_y)_{b,t,m}$ | `cx`, `cy` | object centre; pixel (i, j) has centre (j + .5, i + .5) |
| $r_{b,m}$ | `radius` | the size's radius; a shape's half-extent is `EXTENT[shape] * r` |
| $p_t = \mathrm{reflect}(p_0 + v t)$ | `bounce` | motion with reflection at the walls |
"""

from __future__ import annotations

import torch

# Shapes the rasteriser can draw; cfg.world.shapes picks (and orders) a subset.
SHAPE_NAMES = ("circle", "square", "triangle", "diamond", "cross", "ring")
# Half-extent of each shape in units of its radius (dyadic, so geometry stays exact).
EXTENT = {
    "circle": 1.0,
    "square": 0.875,
    "triangle": 1.125,
    "diamond": 1.25,
    "cross": 1.0,
    "ring": 1.0,
}
# RGB of every colour name the world knows; cfg.world.colours picks a subset.
PALETTE = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.20, 0.80, 0.25),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.90, 0.20),
    "magenta": (0.90, 0.20, 0.85),
    "cyan": (0.20, 0.85, 0.90),
    "orange": (1.00, 0.55, 0.10),
    "white": (0.95, 0.95, 0.95),
    "purple": (0.55, 0.25, 0.80),
    "grey": (0.55, 0.55, 0.55),
}
BACKGROUND = (0.08, 0.08, 0.10)


def quantise(x: float, step: float = 0.125) -> float:
    """`x` rounded to a multiple of `step` (1/8 px): exact in float32."""
    return round(x / step) * step


def size_radii(image_size: int) -> dict[str, float]:
    """Radius of each size in pixels: a clear gap between small and large at every image size."""
    # below r = 3 px a rasterised circle can equal a square; 16 px images (smoke) accept that
    small = quantise(max(2.5, 0.1 * image_size))
    large = quantise(max(small + 1.25, 0.17 * image_size))
    return {"small": small, "large": large}


def inside(shape: str, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Boolean inside test of `shape` at offsets (dx, dy) from its centre, radius r (broadcast)."""
    ax, ay = dx.abs(), dy.abs()
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return torch.maximum(ax, ay) <= 0.875 * r
    if shape == "diamond":
        return ax + ay <= 1.25 * r
    if shape == "triangle":  # apex up at -r, base at +0.75 r, half-width 1.09 r at the base
        return (dy >= -r) & (dy <= 0.75 * r) & (ax <= 0.625 * (dy + r))
    if shape == "cross":
        return (torch.maximum(ax, ay) <= r) & (torch.minimum(ax, ay) <= 0.375 * r)
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= 0.25 * r * r)
    raise ValueError(f"unknown shape {shape!r}; the rasteriser draws: {', '.join(SHAPE_NAMES)}")


def bounce(p0: torch.Tensor, v: torch.Tensor, steps: torch.Tensor, lo, hi) -> torch.Tensor:
    """Position after `steps` frames moving at `v` px/frame from `p0`, reflecting at lo and hi.

    Reflection unfolds into a triangle wave of period 2L (L = hi - lo): fold p0 - lo + v t into
    [0, 2L) and mirror the upper half. Broadcasts over all arguments.
    """
    length = torch.as_tensor(hi - lo, dtype=p0.dtype)
    y = p0 - lo + v * steps
    period = torch.clamp(2 * length, min=1e-6)
    folded = torch.remainder(y, period)
    folded = torch.where(folded > length, period - folded, folded)
    return torch.where(length > 0, lo + folded, p0)


def rasterise(
    *,
    shapes: tuple[str, ...],
    shape: torch.Tensor,
    colour_rgb: torch.Tensor,
    radius: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    valid: torch.Tensor,
    image_size: int,
    background: tuple[float, float, float] = BACKGROUND,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render scenes: pixels (b, t, 3, h, w) float32 in [0, 1] and sketch (b, t, h, w) int64.

    shape (b, m) indexes `shapes`; colour_rgb (b, m, 3); radius (b, m); cx, cy (b, t, m); valid
    (b, m) marks real objects (scenes with fewer objects are padded).
    Sketch class = 1 + shape index.
    """
    b, t, m = cx.shape
    device = cx.device
    size = image_size
    coords = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    bg = torch.tensor(background, device=device, dtype=torch.float32)
    pixels = bg.view(1, 1, 3, 1, 1).expand(b, t, 3, size, size).clone()
    sketch = torch.zeros(b, t, size, size, dtype=torch.int64, device=device)
    for j in range(m):
        for k, name in enumerate(shapes):
            rows = torch.nonzero(valid[:, j] & (shape[:, j] == k)).flatten()
            if rows.numel() == 0:
                continue
            dx = coords.view(1, 1, 1, size) - cx[rows, :, j].view(-1, t, 1, 1)  # (n, t, 1, w)
            dy = coords.view(1, 1, size, 1) - cy[rows, :, j].view(-1, t, 1, 1)  # (n, t, h, 1)
            mask = inside(name, dx, dy, radius[rows, j].view(-1, 1, 1, 1))  # (n, t, h, w)
            colour = colour_rgb[rows, j].view(-1, 1, 3, 1, 1)
            pixels[rows] = torch.where(mask.unsqueeze(2), colour, pixels[rows])
            sketch[rows] = torch.where(mask, torch.full_like(sketch[rows], k + 1), sketch[rows])
    return pixels, sketch
