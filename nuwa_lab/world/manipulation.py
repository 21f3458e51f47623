"""Manipulation pairs for text-guided image and video manipulation (TI2I, TV2V; NÜWA §4.4).

A pair is a source scene, one changed attribute of one object, the caption of the edited scene and
the edited target; everything else in the scene stays the same.

- image (TI2I): the colour, the shape or the position (region) of one object changes. The edit
  region holds every pixel the object covers in the source or the target, dilated by one pixel, and
  for a shape or position edit also every pixel the edited object may cover in the region the new
  caption names (`_edit_region`): outside it the source and the target are identical, so a model
  only has to regenerate inside it, and it may place the object wherever the caption allows.
- video (TV2V): the direction of one object changes. The target shares the first `given_frames`
  frames with the source; from there the object moves in the new direction (still bouncing at the
  walls). The target's `direction` attribute and caption name the new direction.

Edits respect the splits: in train / val / test the edited (shape, colour) pair is never a held-out
pair; in the held_out split an edit to a held-out pair is preferred when one exists.

| symbol | code | meaning |
|---|---|---|
| $x^{src}, x^{tgt}$ | `source.pixels`, `target.pixels` | (3, h, w) or (t, 3, h, w) |
| $c^{tgt}$ | `new_caption` | caption of the target |
| $R$ | `edit_region` | bool (h, w), images only |
| $g$ | `given_frames` | frames shared by source and target, videos only |
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nuwa_lab.world.captions import describe
from nuwa_lab.world.motion import DIRECTION_VECTORS
from nuwa_lab.world.render import bounce
from nuwa_lab.world.sample import REGIONS, ObjectAttributes, Sample

IMAGE_EDITS = ("colour", "shape", "position")


@dataclass
class ManipulationPair:
    """Source, target and what changed between them."""

    source: Sample
    target: Sample
    changed: str  # "colour" | "shape" | "position" | "direction"
    new_caption: str
    object_index: int  # which object of the scene was edited
    edit_region: torch.Tensor | None = None  # bool (h, w) for images
    given_frames: int = 0  # for videos: leading frames shared by source and target


def _pick(rng: np.random.Generator, options) -> Any:
    return options[int(rng.random() * len(options))]


def _pairs_ok(world, shape: str, colour: str, split: str) -> bool:
    return split == "held_out" or (shape, colour) not in world.held_out


def _prefer_held_out(world, candidates: list[tuple[str, str, Any]], split: str) -> list:
    if split != "held_out":
        return candidates
    preferred = [c for c in candidates if (c[0], c[1]) in world.held_out]
    return preferred or candidates


def _edit_image_object(world, objects, j, attribute, rng, split) -> ObjectAttributes | None:
    """The edited j-th object, or None when this attribute has no valid new value."""
    cfg, obj = world.cfg, objects[j]
    others = [o for i, o in enumerate(objects) if i != j]
    if attribute == "colour":
        options = [(obj.shape, c, c) for c in cfg.colours if c != obj.colour]
    elif attribute == "shape":
        options = [(s, obj.colour, s) for s in cfg.shapes if s != obj.shape]
    else:
        used = {o.position for o in others}
        regions = [r for r in REGIONS if r != obj.position and r not in used]
        for _ in range(20):
            region = REGIONS.index(_pick(rng, regions))
            x, y = world._centre(region, world.extent(obj), rng)
            if not any(world._overlap(x, y, world.extent(obj), o) for o in others):
                return replace(obj, position=REGIONS[region], x=x, y=y)
        return None
    options = [o for o in options if _pairs_ok(world, o[0], o[1], split)]
    options = _prefer_held_out(world, options, split)
    if not options:
        return None
    value = _pick(rng, options)[2]
    edited = replace(obj, **{attribute: value})
    if (
        attribute == "shape"
    ):  # a wider shape must still fit the image, its region and its neighbours
        ext = world.extent(edited)
        x, y = (
            world._clamp(v, REGIONS.index(obj.position), ext, axis)
            for axis, v in enumerate((obj.x, obj.y))
        )
        edited = replace(edited, x=x, y=y)
        if any(world._overlap(x, y, ext, o) for o in others):
            return None
    return edited


def manipulation_pair(world, seed: int, kind: str = "image", *, given_frames: int = 1):
    """The manipulation pair of `seed` (see the module docstring)."""
    if kind not in ("image", "video"):
        raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
    objects, scene_rng = world.scene(seed)
    if kind == "image":
        objects = [replace(o, direction=None) for o in objects]
    caption = describe(objects, kind, scene_rng)  # the source caption, as world.image / video
    split = world.split_of(seed)
    rng = np.random.default_rng((seed, 1))  # edit choices: a stream of their own
    caption_rng = np.random.default_rng((seed, 2))
    j = int(rng.random() * len(objects))
    if kind == "video":
        return _video_pair(world, seed, objects, caption, j, rng, caption_rng, given_frames)
    first = int(rng.random() * len(IMAGE_EDITS))
    for k in range(len(IMAGE_EDITS)):  # the drawn attribute, else the next one that can change
        attribute = IMAGE_EDITS[(first + k) % len(IMAGE_EDITS)]
        edited = _edit_image_object(world, objects, j, attribute, rng, split)
        if edited is not None:
            break
    else:
        raise ValueError(f"seed {seed}: no attribute of object {j} can be edited in this world")
    target_objects = list(objects)
    target_objects[j] = edited
    # one render: source, target, the edited object alone before and after
    pixels, sketch = world.render([objects, target_objects, [objects[j]], [edited]])
    pixels, sketch = pixels[:, 0], sketch[:, 0]
    new_caption = describe(target_objects, "image", caption_rng)
    source = Sample("image", pixels[0], sketch[0], caption, objects, seed)
    target = Sample("image", pixels[1], sketch[1], new_caption, target_objects, seed)
    region = _edit_region(world, attribute, edited, sketch)
    return ManipulationPair(source, target, attribute, new_caption, j, edit_region=region)


def _edit_region(world, attribute: str, edited: ObjectAttributes, sketch: torch.Tensor):
    """The edit region $E$ (bool (h, w)) from the sketches of (source, target, the object before,
    the object after).

    A colour edit keeps the object's pixels: $E$ is the object, dilated by one pixel. A shape or
    position edit changes which pixels it covers, and the new caption names its region, not its
    centre: $E$ also holds the edited object's whole placement area
    (`ShapesWorld.placement_area`), so a model may draw it anywhere the caption allows, not only at
    the one centre the target happens to use. That area stops a pixel short of the other
    objects, which stay outside $E$ and are kept.

    Measured at tiny (64 test pairs, zero-shot on the T2I model): edit success 53% with $E$ the
    object's pixels before and after (shape edits 50%, position 17%), 81% with the placement area
    (shape 90%, position 58%)."""
    before, after = sketch[2] > 0, sketch[3] > 0
    covered = before | after
    if attribute in ("shape", "position"):
        others = (sketch[0] > 0) & ~before
        covered = covered | (world.placement_area(edited) & ~_dilate(others))
    return _dilate(covered)


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """`mask` grown by one pixel (8-neighbourhood)."""
    return F.max_pool2d(mask.float()[None, None], kernel_size=3, stride=1, padding=1)[0, 0] > 0


def _video_pair(world, seed, objects, caption, j, rng, caption_rng, given_frames: int):
    cfg = world.cfg
    frames = cfg.frames
    if not 1 <= given_frames < frames:
        raise ValueError(
            f"given_frames={given_frames} must be in 1..{frames - 1} (world.frames={frames})"
        )
    obj = objects[j]
    options = [d for d in cfg.directions if d != obj.direction]
    if not options:
        raise ValueError("world.directions has one direction; a direction edit needs two")
    new_direction = _pick(rng, options)
    target_objects = list(objects)
    target_objects[j] = replace(obj, direction=new_direction)
    cx, cy = world.trajectories([objects, objects], frames)  # (2, t, m): source, target
    vx, vy = (world.speed * v for v in DIRECTION_VECTORS[new_direction])
    ext = world.extent(obj)
    hi = cfg.image_size - ext
    steps = torch.arange(1, frames - given_frames + 1, dtype=torch.float32, device=cx.device)
    start = given_frames - 1  # the target continues from the last given frame
    cx[1, given_frames:, j] = bounce(cx[1, start, j], vx, steps, ext, hi)
    cy[1, given_frames:, j] = bounce(cy[1, start, j], vy, steps, ext, hi)
    pixels, sketch = world.render([objects, target_objects], frames=frames, centres=(cx, cy))
    new_caption = describe(target_objects, "video", caption_rng)
    source = Sample("video", pixels[0], sketch[0], caption, objects, seed)
    target = Sample("video", pixels[1], sketch[1], new_caption, target_objects, seed)
    return ManipulationPair(source, target, "direction", new_caption, j, given_frames=given_frames)
