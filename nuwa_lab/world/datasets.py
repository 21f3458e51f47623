"""Data sets: the raw inputs of NÜWA's eight tasks (§4).

`TaskDataset(task, world, split, size)` yields one dict per seed of the split with what the task
needs (tokenizing is the model's business, not the data set's). Every item also has "task", "seed"
and "objects" (the ground truth of the target, a list of ObjectAttributes); batch with `collate`.

| task | keys (besides task, seed, objects) | shapes |
|---|---|---|
| t2i | caption, pixels | (3, h, w) |
| s2i | sketch, pixels | (h, w) int64, (3, h, w) |
| i2i | pixels, visible | (3, h, w), (h, w) bool: False where hidden (a half or quadrant) |
| ti2i | pixels (source), caption (source), new_caption, target, edit_region, changed | |
| t2v | caption, pixels | (t, 3, h, w) |
| s2v | sketch, pixels | (t, h, w), (t, 3, h, w) |
| v2v | pixels, given_frames | (t, 3, h, w), int |
| tv2v | pixels (source), caption, new_caption, target, given_frames, changed | |

For i2i the hidden part always covers some object pixels, so completion has something to do, and
leaves some visible when a half or quadrant can (so the visible part constrains the completion).

Real images / videos with captions are read by `FolderDataset` (folders.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nuwa_lab.world.world import ShapesWorld

TASKS = ("t2i", "s2i", "i2i", "ti2i", "t2v", "s2v", "v2v", "tv2v")


def hidden_regions(size: int) -> list[torch.Tensor]:
    """The candidate hidden parts for completion: 4 halves and 4 quadrants, bool (h, w)."""
    half = size // 2
    masks = []
    for rows, cols in [
        (slice(None), slice(0, half)),  # left half
        (slice(None), slice(half, None)),  # right half
        (slice(0, half), slice(None)),  # top half
        (slice(half, None), slice(None)),  # bottom half
        (slice(0, half), slice(0, half)),  # quadrants
        (slice(0, half), slice(half, None)),
        (slice(half, None), slice(0, half)),
        (slice(half, None), slice(half, None)),
    ]:
        mask = torch.zeros(size, size, dtype=torch.bool)
        mask[rows, cols] = True
        masks.append(mask)
    return masks


class TaskDataset(Dataset):
    """Items of one task over `size` seeds of a split: item i is `world.seeds(split)[offset + i]`.

    Deterministic: an item depends only on (task, seed, given_frames)."""

    def __init__(
        self,
        task: str,
        world: ShapesWorld,
        split: str = "train",
        size: int | None = None,
        *,
        given_frames: int = 1,
        offset: int = 0,
    ):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
        seeds = world.seeds(split)
        size = len(seeds) - offset if size is None else size
        if offset < 0 or size < 0 or offset + size > len(seeds):
            raise ValueError(
                f"offset {offset} + size {size} exceeds the {len(seeds)} seeds of split {split!r}; "
                f"use a smaller size or a larger world.split_sizes"
            )
        if task in ("v2v", "tv2v") and not 1 <= given_frames < world.cfg.frames:
            raise ValueError(
                f"given_frames={given_frames} must be in 1..{world.cfg.frames - 1} "
                f"(world.frames={world.cfg.frames})"
            )
        self.task, self.world, self.split = task, world, split
        self.given_frames = given_frames
        self.seeds = seeds[offset : offset + size]
        self._hidden = hidden_regions(world.cfg.image_size)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        seed = self.seeds[index]
        item: dict[str, Any] = {"task": self.task, "seed": seed}
        task, world = self.task, self.world
        if task in ("ti2i", "tv2v"):
            kind = "image" if task == "ti2i" else "video"
            pair = world.manipulation(seed, kind, given_frames=self.given_frames)
            item.update(
                pixels=pair.source.pixels,
                caption=pair.source.caption,
                new_caption=pair.new_caption,
                target=pair.target.pixels,
                changed=pair.changed,
                objects=pair.target.objects,
            )
            if kind == "image":
                item["edit_region"] = pair.edit_region
            else:
                item["given_frames"] = pair.given_frames
            return item
        sample = world.video(seed) if task.endswith("v") else world.image(seed)
        item.update(pixels=sample.pixels, objects=sample.objects)
        if task in ("t2i", "t2v"):
            item["caption"] = sample.caption
        elif task in ("s2i", "s2v"):
            item["sketch"] = sample.sketch
        elif task == "i2i":
            item["visible"] = self._visible(seed, sample.sketch)
        elif task == "v2v":
            item["given_frames"] = self.given_frames
        return item

    def _visible(self, seed: int, sketch: torch.Tensor) -> torch.Tensor:
        """A random half or quadrant hidden: one that hides part of the objects (some pixels
        hidden, some visible) when there is one, else one that hides some object pixels."""
        objects = sketch > 0
        hides = [m for m in self._hidden if (m & objects).any()]
        partial = [m for m in hides if (objects & ~m).any()]
        candidates = partial or hides or self._hidden
        rng = np.random.default_rng((seed, 3))
        return ~candidates[int(rng.random() * len(candidates))]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch TaskDataset items: tensors stacked, everything else (captions, objects) in lists."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out
