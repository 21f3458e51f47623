"""What one sample of the world carries: pixels, sketch, caption and the truth about each object.

The types every data source shares (the Shapes World, the task data sets, real-data folders), kept
apart from the world that generates them so that the modules which edit or read samples
(manipulation.py, datasets.py) depend on the types, not on the generator.

Axis letters: b samples, t frames, h w pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

REGIONS = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
SPLITS = ("train", "val", "test", "held_out")


@dataclass(frozen=True)
class ObjectAttributes:
    """The truth about one object: what the caption says and the probe reads back."""

    shape: str
    colour: str
    size: str
    position: str  # one of REGIONS (for video: the region at frame 0)
    x: float  # centre in pixels at frame 0
    y: float
    direction: str | None = None  # video only: the initial direction


@dataclass
class Sample:
    """One image (3, h, w) or video (t, 3, h, w) with its sketch, caption and ground truth."""

    kind: str  # "image" | "video"
    pixels: torch.Tensor
    sketch: torch.Tensor | None  # None for real data without segmentation
    caption: str
    objects: list[ObjectAttributes]
    seed: int | None = None


@dataclass
class Batch:
    """Many samples stacked: pixels (b, [t,] 3, h, w), sketch (b, [t,] h, w)."""

    kind: str
    pixels: torch.Tensor
    sketch: torch.Tensor
    captions: list[str]
    objects: list[list[ObjectAttributes]]
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.captions)

    def sample(self, i: int) -> Sample:
        return Sample(
            self.kind,
            self.pixels[i],
            self.sketch[i],
            self.captions[i],
            self.objects[i],
            self.seeds[i],
        )
