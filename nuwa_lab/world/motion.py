"""How objects move in Shapes World videos: the four directions, the wall rule, bouncing.

An object moves `speed` px per frame along its direction and reflects at the walls
(`nuwa_lab.world.render.bounce`). Against a wall, "into it" and "away from it" render the same
video, so no reader could tell them apart: an object that would start within one move of the wall
it heads for turns around before frame 0 (`away_from_wall`), and its first move always shows its
direction.

Axis letters: b samples, t frames, m objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange

from nuwa_lab.world.render import bounce

DIRECTION_VECTORS = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def away_from_wall(
    direction: str,
    x: float,
    y: float,
    ext: float,
    *,
    image_size: int,
    speed: float,
    directions: Sequence[str],
) -> str:
    """`direction`, or its opposite (if allowed) when the centre is within one move of the wall
    ahead; `ext` is the object's half-extent, so the centre stays in [ext, image_size - ext]."""
    vx, vy = DIRECTION_VECTORS[direction]
    position, velocity = (x, vx) if vx else (y, vy)
    near = position > image_size - ext - speed if velocity > 0 else position < ext + speed
    opposite = OPPOSITE[direction]
    return opposite if near and opposite in directions else direction


def bounce_batch(p0, v, steps, lo, hi) -> torch.Tensor:
    """`bounce` for (b, m) starts and (1, t, 1) steps -> (b, t, m)."""
    p0, v, lo, hi = (rearrange(a, "b m -> b 1 m") for a in (p0, v, lo, hi))
    return bounce(p0, v, steps, lo, hi)


def turns_after(cx: torch.Tensor, cy: torch.Tensor, given_frames: int) -> torch.Tensor:
    r"""(b,) bool: some object of the video moves against its last given move
    $c_{g-1} - c_{g-2}$ at a later frame (it turned at a wall after the `given_frames` first
    frames). `cx`, `cy`: centres (b, t, m) from `ShapesWorld.trajectories`."""
    if given_frames < 2:
        raise ValueError(f"a given move needs two given frames, got given_frames={given_frames}")
    moves = torch.stack([cx.diff(dim=1), cy.diff(dim=1)], dim=-1)  # (b, t - 1, m, 2)
    last_given = moves[:, given_frames - 2]  # (b, m, 2); still objects have (0, 0)
    later = moves[:, given_frames - 1 :]
    return ((later * last_given[:, None]).sum(-1) < 0).flatten(1).any(1)
