"""Real handwriting in the box: scikit-learn's digits, exported as a captioned data folder.

`sklearn.datasets.load_digits()` ships 1,797 real 8×8 scans of handwritten digits (ten classes,
pixel values 0-16) inside the package: nothing is downloaded. `export_digits(folder)` writes them in
the folder format `FolderDataset` reads (`nuwa_lab.world.folders`): `captions.jsonl` with one
`{"file": ..., "caption": ...}` per line, plus the labels as extra fields (`digit`, `direction`,
`split`) that `FolderDataset` ignores and the digit probe reads.

- images: each scan, ink dark on white paper, scaled to `size` pixels, captioned from
  `IMAGE_TEMPLATES` ("a handwritten seven", "the digit seven", ...);
- videos (GIFs): a scan at half the canvas moving `speed` pixels per frame across a `size`×`size`
  canvas, "a seven moves to the left" (`VIDEO_TEMPLATE`), one direction per video.

The split is per class and fixed: the last `test_fraction` of each digit's scans (in the data
set's order) are the test scans, so a model is measured on handwriting it never saw.

| thing | code |
|---|---|
| the scans and their labels | `load_scans()` -> (uint8 (n, 8, 8), int (n,)) |
| train / test scans | `split_indices(labels)` |
| one picture, one video | `digit_image(scan, size)`, `digit_video(scan, size, frames, direction)` |
| the folder | `export_digits(folder, split="train")` |
| the folder for a preset, unless it exists | `ensure_digits(folder, image_size=32, frames=4)` |
| a caption's digit and direction | `read_caption(caption)` |
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IMAGE_TEMPLATES = ("a handwritten {digit}", "the digit {digit}", "a {digit} written by hand")
VIDEO_TEMPLATE = "a {digit} moves {direction}"
DIRECTION_WORDS = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
# (dx, dy) in pixels per unit of speed: x grows to the right, y downwards
MOTION = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SCAN_MAX = 16  # the scans' ink scale: 0 (paper) .. 16 (full ink)


def load_scans() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scans as uint8 ink (0 paper .. 255 full ink), (n, 8, 8), and their digits (n,)."""
    from sklearn.datasets import load_digits  # scikit-learn only when the digits are used

    data = load_digits()
    ink = np.round(data.images * (255 / SCAN_MAX)).clip(0, 255).astype(np.uint8)
    return ink, data.target.astype(np.int64)


def split_indices(labels: np.ndarray, test_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """{"train": indices, "test": indices}: the last `test_fraction` of each digit's scans test."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train, test = [], []
    for digit in np.unique(labels):
        mine = np.flatnonzero(labels == digit)
        cut = len(mine) - max(1, round(test_fraction * len(mine)))
        train.append(mine[:cut])
        test.append(mine[cut:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def _scaled(scan: np.ndarray, side: int):
    from PIL import Image

    return Image.fromarray(scan, mode="L").resize((side, side), Image.Resampling.BILINEAR)


def _on_paper(ink):
    """Ink (L, 0 = paper) as an RGB picture: dark ink on white paper."""
    from PIL import ImageOps

    return ImageOps.invert(ink).convert("RGB")


def digit_image(scan: np.ndarray, size: int = 32):
    """The scan as an RGB picture of `size`×`size` pixels (dark ink on white)."""
    return _on_paper(_scaled(scan, size))


def digit_video(
    scan: np.ndarray,
    size: int = 32,
    frames: int = 4,
    direction: str = "right",
    *,
    speed: int = 4,
) -> list:
    """RGB frames of the scan (half the canvas wide) moving `speed` px per frame `direction`.

    The digit starts where the whole motion stays on the canvas, centred across the motion."""
    if direction not in MOTION:
        raise ValueError(f"direction must be one of {', '.join(MOTION)}, got {direction!r}")
    from PIL import Image

    side = size // 2
    travel = speed * (frames - 1)
    if side + travel > size:
        raise ValueError(
            f"a {side}-pixel digit moving {speed} px for {frames - 1} frames leaves a {size}-pixel "
            "canvas; use fewer frames or a lower speed"
        )
    dx, dy = MOTION[direction]
    margin = (size - side - travel) // 2
    centre = (size - side) // 2
    x0 = margin + (travel if dx < 0 else 0) if dx else centre
    y0 = margin + (travel if dy < 0 else 0) if dy else centre
    digit = _scaled(scan, side)
    out = []
    for t in range(frames):
        canvas = Image.new("L", (size, size), 0)
        canvas.paste(digit, (x0 + dx * speed * t, y0 + dy * speed * t))
        out.append(_on_paper(canvas))
    return out


def read_caption(caption: str) -> tuple[int | None, str | None]:
    """(digit, direction) named by a caption of this module's templates (None when absent)."""
    words = caption.lower().replace(".", " ").split()
    digit = next((DIGIT_WORDS.index(w) for w in words if w in DIGIT_WORDS), None)
    direction = None
    for name, phrase in DIRECTION_WORDS.items():
        if f" {phrase} " in f" {' '.join(words)} " and "moves" in words:
            direction = name
    return digit, direction


def export_digits(
    folder: str | Path,
    *,
    split: str = "train",
    size: int = 32,
    frames: int = 4,
    speed: int = 4,
    videos_per_scan: int = 1,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> Path:
    """Write the `split` scans ("train", "test" or "all") of the digits to `folder`: images/,
    videos/ (GIFs) and captions.jsonl (written last, so its presence marks a finished export).
    `limit`: at most this many scans of each split, the first in the data set's order (a small
    folder for tests; None = all).

    Captions take turns through `IMAGE_TEMPLATES`; video directions through left, right, up, down.
    Returns the path of captions.jsonl."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(
            f"limit must be a positive number of scans per split (or None), got {limit}"
        )
    folder = Path(folder)
    scans, labels = load_scans()
    parts = {name: rows[:limit] for name, rows in split_indices(labels, test_fraction).items()}
    chosen = (
        [(i, s) for s in ("train", "test") for i in parts[s]]
        if split == "all"
        else [(i, split) for i in parts[split]]
    )
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "videos").mkdir(exist_ok=True)
    directions = list(MOTION)
    lines = []
    for n, (i, part) in enumerate(chosen):
        word = DIGIT_WORDS[labels[i]]
        name = f"images/{part}_{i:04d}.png"
        digit_image(scans[i], size).save(folder / name)
        caption = IMAGE_TEMPLATES[n % len(IMAGE_TEMPLATES)].format(digit=word)
        lines.append({"file": name, "caption": caption, "digit": int(labels[i]), "split": part})
        for v in range(videos_per_scan):
            direction = directions[(n + v) % len(directions)]
            clip = digit_video(scans[i], size, frames, direction, speed=speed)
            name = f"videos/{part}_{i:04d}_{direction}.gif"
            clip[0].save(folder / name, save_all=True, append_images=clip[1:], duration=250, loop=0)
            lines.append(
                {
                    "file": name,
                    "caption": VIDEO_TEMPLATE.format(
                        digit=word, direction=DIRECTION_WORDS[direction]
                    ),
                    "digit": int(labels[i]),
                    "direction": direction,
                    "split": part,
                }
            )
    index = folder / "captions.jsonl"
    partial = index.with_suffix(".jsonl.partial")
    partial.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    partial.replace(index)
    return index


def ensure_digits(folder: str | Path, *, image_size: int, frames: int) -> bool:
    """Export all the digits to `folder`, sized for a preset (at least 32 px and 4 frames), unless
    it holds a captions.jsonl already; True when it exported."""
    folder = Path(folder)
    if (folder / "captions.jsonl").is_file():
        return False
    export_digits(folder, split="all", size=max(32, image_size), frames=max(4, frames))
    return True
