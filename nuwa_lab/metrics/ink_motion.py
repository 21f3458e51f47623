r"""Which way does the ink move? The direction of a video's motion, read from its pixels alone.

A data folder has no world ground truth of motion, and a probe trained to read the direction would
need videos labelled with it. Motion can be measured directly instead: the centre of the "ink" (the
pixels that differ from the paper) in the first and in the last frame. A digit moving left shifts
that centre left. No training, no labels, and it is exact on a video whose answer is known
(tests/unit/test_folder_measures.py moves a blob each way).

The paper is each frame's background colour, the per-channel median of its border pixels (a
border is mostly paper when the subject sits inside the frame, as in the exported digits); a pixel
is ink when some channel differs from it by more than `INK_THRESHOLD`.

$m_{thw} = [\max_c |x_{tchw} - \mathrm{median}_{\partial}(x_{tc})| > \theta]$,
$c_t = \frac{\sum_{hw} m_{thw} (w, h)}{\sum_{hw} m_{thw}}$,
$\Delta = c_{T-1} - c_s$: "right" when $|\Delta_x| \ge |\Delta_y|$ and $\Delta_x > 0$, ... (image y
grows downwards), "still" when $\max(|\Delta_x|, |\Delta_y|) <$ `STILL_PX`, "none" without ink.

Axes: `b` videos, `t` frames, `c` channels, `h w` pixels.

| symbol | code |
|---|---|
| $m$ | `ink_mask(pixels)` (b, [t,] h, w) bool |
| $c_t$ | `ink_centroids(pixels)` (b, [t,] 2) as (x, y), NaN without ink |
| direction of $\Delta$ | `ink_directions(videos, start=s)` |
"""

from __future__ import annotations

import math

import torch

INK_THRESHOLD = 0.25  # a channel this far from the paper colour (pixels in [0, 1]) is ink
STILL_PX = 0.5  # a centre moving less than this many pixels has not moved


def paper_colour(pixels: torch.Tensor) -> torch.Tensor:
    """The per-channel median of each frame's border pixels: (..., 3, 1, 1) of (..., 3, h, w)."""
    top, bottom = pixels[..., 0, :], pixels[..., -1, :]  # (..., 3, w)
    left, right = pixels[..., 1:-1, 0], pixels[..., 1:-1, -1]  # (..., 3, h - 2)
    border = torch.cat([top, bottom, left, right], dim=-1)
    return border.median(dim=-1).values[..., None, None]


def ink_mask(pixels: torch.Tensor, *, threshold: float = INK_THRESHOLD) -> torch.Tensor:
    """The ink of images (b, 3, h, w) or videos (b, t, 3, h, w): (b, [t,] h, w) bool."""
    if pixels.dim() not in (4, 5) or pixels.shape[-3] != 3:
        raise ValueError(
            f"ink_mask reads images (b, 3, h, w) or videos (b, t, 3, h, w), got "
            f"{tuple(pixels.shape)}"
        )
    return (pixels - paper_colour(pixels)).abs().amax(dim=-3) > threshold


def ink_centroids(pixels: torch.Tensor, *, threshold: float = INK_THRESHOLD) -> torch.Tensor:
    """The centre of the ink, (b, [t,] 2) as (x, y) in pixels; NaN where a frame has none."""
    mask = ink_mask(pixels.double(), threshold=threshold).double()
    h, w = mask.shape[-2:]
    xs = torch.arange(w, dtype=torch.float64)
    ys = torch.arange(h, dtype=torch.float64)[:, None]
    mass = mask.sum(dim=(-2, -1))
    cx = (mask * xs).sum(dim=(-2, -1)) / mass
    cy = (mask * ys).sum(dim=(-2, -1)) / mass
    return torch.stack([cx, cy], dim=-1)  # 0 / 0 = NaN where there is no ink


def direction_of(dx: float, dy: float) -> str:
    """ "left", "right", "up", "down" by the larger component, "still" or "none" (NaN)."""
    if math.isnan(dx) or math.isnan(dy):
        return "none"
    if max(abs(dx), abs(dy)) < STILL_PX:
        return "still"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def ink_directions(
    videos: torch.Tensor, *, start: int = 0, threshold: float = INK_THRESHOLD
) -> list[str]:
    """The direction of each video's ink from frame `start` to its last frame, $c_{T-1} - c_s$."""
    if videos.dim() != 5:
        raise ValueError(f"ink_directions reads videos (b, t, 3, h, w), got {tuple(videos.shape)}")
    frames = videos.shape[1]
    if not 0 <= start < frames - 1:
        raise ValueError(
            f"start={start}: the motion is measured from a frame before the last ({frames} frames)"
        )
    centres = ink_centroids(videos, threshold=threshold)  # (b, t, 2)
    moves = centres[:, -1] - centres[:, start]
    return [direction_of(dx, dy) for dx, dy in moves.tolist()]
