"""The Shapes World: procedural scenes with ground truth, deterministic by seed.

NÜWA (arXiv 2111.12417, §4) trains on Conceptual Captions, Moments in Time, Kinetics and MSR-VTT;
this lab replaces them with a world it generates itself, where every sample carries the truth of
what it shows (shape, colour, size, position, direction), so quality can be measured exactly by a
probe.

A scene holds 1..max_objects flat-coloured shapes on a dark background. Each object has a shape, a
colour, a size (small / large), a position (one of nine regions of a 3x3 grid, its centre kept a
margin away from the region borders so the region is unambiguous) and, in videos, a direction: it
moves `speed` px per frame and bounces (reflects) at the walls; one starting within a move of the
wall ahead turns around first (motion.py). The caption names the region at frame 0 and the initial
direction. The sketch is the segmentation map: 0 = background, 1 + shape
index.

Every random choice of seed s comes from `numpy.random.default_rng(s)` read only through raw
doubles, and all geometry is on a 1/8-pixel lattice (see render.py), so the same seed gives
bit-identical tensors on any machine. `image(s)` and frame 0 of `video(s)` show the same scene.

Splits are seed ranges: train [0, n_train), val, test, then held_out (as large as test). Held-out
(shape, colour) pairs (cfg.held_out) appear only in the held_out split, where every scene has one.

Axis letters: b samples, t frames, h w pixels.

| symbol | code | meaning |
|---|---|---|
| $x_b$ (image) | `Batch.pixels` (b, 3, h, w) | float32 in [0, 1] |
| $x_b$ (video) | `Batch.pixels` (b, t, 3, h, w) | t = cfg.frames |
| sketch $s_b$ | `Batch.sketch` (b, [t,] h, w) | int64 class map, 0 = background |
| caption $c_b$ | `Batch.captions[b]` | see captions.py |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from nuwa_lab.config import WorldConfig
from nuwa_lab.world.captions import describe
from nuwa_lab.world.manipulation import manipulation_pair
from nuwa_lab.world.motion import DIRECTION_VECTORS, away_from_wall, bounce_batch
from nuwa_lab.world.render import (
    EXTENT,
    PALETTE,
    SHAPE_NAMES,
    quantise,
    rasterise,
    size_radii,
)
from nuwa_lab.world.sample import REGIONS, SPLITS, Batch, ObjectAttributes, Sample

REGION_MARGIN = 0.1  # centre kept this fraction of a region's side away from its borders


def attribute_classes(world_cfg: WorldConfig) -> dict[str, tuple[str, ...]]:
    """Class names of each attribute, in the order `attribute_index` numbers them."""
    return {
        "shape": tuple(world_cfg.shapes),
        "colour": tuple(world_cfg.colours),
        "size": tuple(world_cfg.sizes),
        "position": REGIONS,
        "direction": tuple(world_cfg.directions),
    }


def attribute_index(world_cfg: WorldConfig, obj: ObjectAttributes) -> dict[str, int]:
    """Class indices of an object's attributes (the probe's targets); direction only when set."""
    classes = attribute_classes(world_cfg)
    out = {}
    for name in ("shape", "colour", "size", "position", "direction"):
        value = getattr(obj, name)
        if value is None:
            continue
        if value not in classes[name]:
            raise ValueError(f"{name} {value!r} is not in this world's {name}s {classes[name]}")
        out[name] = classes[name].index(value)
    return out


def _pick(rng: np.random.Generator, options: Sequence) -> Any:
    return options[int(rng.random() * len(options))]


class ShapesWorld:
    r"""Scenes of flat shapes on a dark background, rendered in batches; deterministic by seed.

    $x = \mathrm{render}(\mathrm{scene}(s))$ with scene(s) drawn from `default_rng(s)`; a video
    moves each object by $v$ = cfg.speed px/frame with reflection at the walls,
    $p_t = \mathrm{reflect}(p_0 + v t)$.
    """

    def __init__(self, cfg: WorldConfig, *, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self._check_config()
        self.radii = size_radii(cfg.image_size)
        for shape in cfg.shapes:  # every object must fit every region: fail here, not mid-batch
            for size in cfg.sizes:
                for region in range(len(REGIONS)):
                    for index in divmod(region, 3):
                        self._interval(index, EXTENT[shape] * self.radii[size], region)
        self.speed = quantise(cfg.speed)
        self.held_out = tuple(tuple(p) for p in cfg.held_out)
        held = set(self.held_out)
        self.allowed_colours = {
            s: tuple(c for c in cfg.colours if (s, c) not in held) for s in cfg.shapes
        }
        n_train, n_val, n_test = cfg.split_sizes
        starts = np.cumsum([0, n_train, n_val, n_test, n_test]).tolist()
        self._ranges = {name: range(starts[i], starts[i + 1]) for i, name in enumerate(SPLITS)}

    def _check_config(self) -> None:
        cfg = self.cfg
        checks = [
            (set(cfg.shapes) <= set(SHAPE_NAMES), f"world.shapes {cfg.shapes}", SHAPE_NAMES),
            (set(cfg.colours) <= set(PALETTE), f"world.colours {cfg.colours}", tuple(PALETTE)),
            (set(cfg.sizes) <= {"small", "large"}, f"world.sizes {cfg.sizes}", ("small", "large")),
            (
                set(cfg.directions) <= set(DIRECTION_VECTORS),
                f"world.directions {cfg.directions}",
                tuple(DIRECTION_VECTORS),
            ),
        ]
        for ok, what, valid in checks:
            if not ok:
                raise ValueError(f"{what} has unknown names; choose from {', '.join(valid)}")
        for shape, colour in cfg.held_out:
            if shape not in cfg.shapes or colour not in cfg.colours:
                raise ValueError(
                    f"held-out pair ({shape!r}, {colour!r}) uses a shape or colour not in "
                    f"world.shapes / world.colours; fix world.held_out"
                )
        for shape in cfg.shapes:
            if all((shape, c) in {tuple(p) for p in cfg.held_out} for c in cfg.colours):
                raise ValueError(f"every colour of {shape!r} is held out; train could not show it")
        if not 1 <= cfg.max_objects <= len(REGIONS):
            raise ValueError(f"world.max_objects={cfg.max_objects}; use 1..{len(REGIONS)}")
        if cfg.image_size < 12 or cfg.frames < 1:
            raise ValueError(
                f"world.image_size={cfg.image_size}, frames={cfg.frames}: need >= 12 px, >= 1 frame"
            )

    # ----------------------------------------------------------------- splits
    def seeds(self, split: str) -> range:
        """The seeds of a split: train, val, test or held_out (consecutive ranges)."""
        if split not in self._ranges:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        return self._ranges[split]

    def split_of(self, seed: int) -> str:
        """The split a seed belongs to ("train" also for seeds beyond all ranges)."""
        for name, r in self._ranges.items():
            if seed in r:
                return name
        return "train"

    # ----------------------------------------------------------------- scenes
    def _interval(self, index: int, ext: float, region: int) -> tuple[int, int]:
        """Allowed centre coordinates along one axis, in eighths of a pixel: [lo8, hi8]."""
        size = self.cfg.image_size
        cell = size / 3
        lo = max(index * cell + REGION_MARGIN * cell, ext)
        hi = min((index + 1) * cell - REGION_MARGIN * cell, size - ext)
        lo8, hi8 = math.ceil(lo * 8), math.floor(hi * 8)
        if hi8 < lo8:
            raise ValueError(
                f"an object of half-extent {ext:.2f}px does not fit region "
                f"{REGIONS[region]!r} of a {size}px image; increase world.image_size"
            )
        return lo8, hi8

    def _centre(self, region: int, ext: float, rng: np.random.Generator) -> tuple[float, float]:
        row, col = divmod(region, 3)
        coords = []
        for index in (col, row):
            lo8, hi8 = self._interval(index, ext, region)
            coords.append((lo8 + int(rng.random() * (hi8 - lo8 + 1))) / 8)
        return coords[0], coords[1]

    def placement_area(self, obj: ObjectAttributes) -> torch.Tensor:
        """Bool (h, w): every pixel an object of `obj`'s shape and size may cover when the world
        places it in `obj`'s region, i.e. its allowed centres widened by its half-extent. A caption
        names the region, not the centre: this is where the caption lets the object be."""
        ext = self.extent(obj)
        region = REGIONS.index(obj.position)
        row, col = divmod(region, 3)
        (x_lo8, x_hi8), (y_lo8, y_hi8) = (self._interval(i, ext, region) for i in (col, row))
        coords = torch.arange(self.cfg.image_size, dtype=torch.float32, device=self.device) + 0.5
        in_x = (coords >= x_lo8 / 8 - ext) & (coords <= x_hi8 / 8 + ext)  # pixel centres, as render
        in_y = (coords >= y_lo8 / 8 - ext) & (coords <= y_hi8 / 8 + ext)
        return in_y[:, None] & in_x[None, :]

    def _clamp(self, value: float, region: int, ext: float, axis: int) -> float:
        """`value` (x for axis 0, y for axis 1) moved into the allowed centres of `region`."""
        index = divmod(region, 3)[1 - axis]
        lo8, hi8 = self._interval(index, ext, region)
        return min(max(value, lo8 / 8), hi8 / 8)

    def scene(self, seed: int) -> tuple[list[ObjectAttributes], np.random.Generator]:
        """Objects of seed's scene (direction always set) and the generator, ready for captions."""
        if seed < 0:
            raise ValueError(f"seed {seed} is negative; seeds are non-negative integers")
        cfg = self.cfg
        rng = np.random.default_rng(seed)
        split = self.split_of(seed)
        count = 1 + int(rng.random() * cfg.max_objects)
        forced = int(rng.random() * count) if split == "held_out" else -1
        free = list(range(len(REGIONS)))
        objects: list[ObjectAttributes] = []
        for i in range(count):
            if i == forced:
                shape, colour = _pick(rng, self.held_out)
            else:
                shape = _pick(rng, cfg.shapes)
                colours = cfg.colours if split == "held_out" else self.allowed_colours[shape]
                colour = _pick(rng, colours)
            size, direction = _pick(rng, cfg.sizes), _pick(rng, cfg.directions)
            ext = EXTENT[shape] * self.radii[size]
            for _ in range(20):  # rejection: keep objects apart at frame 0
                region = _pick(rng, free)
                x, y = self._centre(region, ext, rng)
                if not any(self._overlap(x, y, ext, o) for o in objects):
                    break
            free.remove(region)
            direction = away_from_wall(
                direction, x, y, ext,
                image_size=cfg.image_size, speed=self.speed, directions=cfg.directions,
            )  # fmt: skip
            objects.append(ObjectAttributes(shape, colour, size, REGIONS[region], x, y, direction))
        return objects, rng

    def _overlap(self, x: float, y: float, ext: float, other: ObjectAttributes) -> bool:
        gap = ext + self.extent(other) + 1.0
        return abs(x - other.x) < gap and abs(y - other.y) < gap

    def extent(self, obj: ObjectAttributes) -> float:
        """Half-extent in pixels of an object's bounding box."""
        return EXTENT[obj.shape] * self.radii[obj.size]

    # ----------------------------------------------------------------- rendering
    def trajectories(
        self, objects: list[list[ObjectAttributes]], frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres (b, t, m) of every object at every frame, bouncing at the walls."""
        m = max(len(o) for o in objects)
        table = np.zeros((len(objects), m, 5), dtype=np.float32)  # x, y, vx, vy, ext
        for b, objs in enumerate(objects):
            for j, o in enumerate(objs):
                vx, vy = DIRECTION_VECTORS[o.direction] if o.direction else (0.0, 0.0)
                table[b, j] = (o.x, o.y, vx * self.speed, vy * self.speed, self.extent(o))
        x0, y0, vx, vy, ext = torch.from_numpy(table).to(self.device).unbind(-1)  # each (b, m)
        steps = torch.arange(frames, dtype=torch.float32, device=self.device).view(1, -1, 1)
        hi = self.cfg.image_size - ext
        cx = bounce_batch(x0, vx, steps, ext, hi)
        cy = bounce_batch(y0, vy, steps, ext, hi)
        return cx, cy

    def render(
        self,
        objects: list[list[ObjectAttributes]],
        *,
        frames: int = 1,
        centres: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels (b, t, 3, h, w) and sketch (b, t, h, w) of scenes given by their objects.

        Objects with a direction move for `frames` frames; `centres` (cx, cy), each (b, t, m),
        overrides the motion (used by video manipulation)."""
        cfg = self.cfg
        b, m = len(objects), max(len(o) for o in objects)
        shape = np.zeros((b, m), dtype=np.int64)
        radius = np.zeros((b, m), dtype=np.float32)
        colour = np.zeros((b, m, 3), dtype=np.float32)
        valid = np.zeros((b, m), dtype=bool)
        for i, objs in enumerate(objects):
            for j, o in enumerate(objs):
                shape[i, j] = cfg.shapes.index(o.shape)
                radius[i, j] = self.radii[o.size]
                colour[i, j] = PALETTE[o.colour]
                valid[i, j] = True
        cx, cy = centres if centres is not None else self.trajectories(objects, frames)
        return rasterise(
            shapes=tuple(cfg.shapes),
            shape=torch.from_numpy(shape).to(self.device),
            colour_rgb=torch.from_numpy(colour).to(self.device),
            radius=torch.from_numpy(radius).to(self.device),
            cx=cx,
            cy=cy,
            valid=torch.from_numpy(valid).to(self.device),
            image_size=cfg.image_size,
        )

    def _batch(self, seeds: Sequence[int], kind: str, chunk: int = 2048) -> Batch:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("no seeds given; pass at least one seed")
        frames = self.cfg.frames if kind == "video" else 1
        objects, captions = [], []
        for s in seeds:
            objs, rng = self.scene(s)
            if kind == "image":
                objs = [replace(o, direction=None) for o in objs]
            objects.append(objs)
            captions.append(describe(objs, kind, rng))
        pixels, sketch = [], []
        for start in range(0, len(seeds), chunk):
            p, k = self.render(objects[start : start + chunk], frames=frames)
            pixels.append(p)
            sketch.append(k)
        pixels, sketch = torch.cat(pixels), torch.cat(sketch)
        if kind == "image":
            pixels, sketch = pixels[:, 0], sketch[:, 0]
        return Batch(kind, pixels, sketch, captions, objects, seeds)

    def images(self, seeds: Sequence[int]) -> Batch:
        """Images of many seeds, rendered together: pixels (b, 3, h, w), sketch (b, h, w)."""
        return self._batch(seeds, "image")

    def videos(self, seeds: Sequence[int]) -> Batch:
        """Videos of many seeds: pixels (b, t, 3, h, w), sketch (b, t, h, w)."""
        return self._batch(seeds, "video")

    def image(self, seed: int) -> Sample:
        return self.images([seed]).sample(0)

    def video(self, seed: int) -> Sample:
        return self.videos([seed]).sample(0)

    def manipulation(self, seed: int, kind: str = "image", *, given_frames: int = 1):
        """A TI2I / TV2V pair: source, changed attribute, new caption, edited target."""

        return manipulation_pair(self, seed, kind, given_frames=given_frames)
