"""Real handwriting in the box: scikit-learn's digits, exported as a captioned data folder.

`sklearn.datasets.load_digits()` ships 1,797 real 8×8 scans of handwritten digits (ten classes,
pixel values 0-16) inside the package: nothing is downloaded. `export_digits(folder)` writes them in
the folder format `FolderDataset` reads (`nuwa_lab.world.folders`): `captions.jsonl` with one
`{"file": ..., "caption": ...}` per line, plus the labels as extra fields (`digit`, `direction`,
`split`) that `FolderDataset` ignores and the digit probe reads.

- images: each scan, ink dark on white paper, scaled to `size` pixels, captioned from
  `IMAGE_TEMPLATES` ("a handwritten seven", "the digit seven", "an eight written by hand", ...);
- videos (GIFs): a scan at half the canvas moving `speed` pixels per frame across a `size`×`size`
  canvas, "a seven moves to the left" (`VIDEO_TEMPLATE`), one direction per video and
  `videos_per_scan` videos of every scan (up to four: each scan then moves every way);
- edit pairs (`edits.jsonl`, `nuwa_lab.world.edits`), one per test video: its first frame, then
  the digit turning to a perpendicular direction, "a seven moves up" (TV2V). There are no image
  pairs: a scan fills its picture, so an edit of the digit would leave nothing to keep (TI2I).

The split is per class and fixed: the last `test_fraction` of each digit's scans (in the data
set's order) are the test scans, so a model is measured on handwriting it never saw.

| thing | code |
|---|---|
| the scans and their labels | `load_scans()` -> (uint8 (n, 8, 8), int (n,)) |
| train / test scans | `split_indices(labels)` |
| one picture, one video | `digit_image(scan, size)`, `digit_video(scan, size, frames, direction)` |
| the folder | `export_digits(folder, split="train")` |
| a TV2V edit pair's target (a turn after the given frames) | `turned_video(scan, ...)` |
| the edit pairs of the test videos (edits.jsonl) | `write_digit_edits(folder, lines, scans, ...)` |
| the folder for a preset, unless it exists | `ensure_digits(folder, image_size=32, frames=4)` |
| does it exist (this version, these sizes)? | `digits_exported(folder, image_size=32, frames=4)` |
| "a seven", "an eight" | `with_article(word)` |
| a caption's digit and direction | `read_caption(caption)` |
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {a_digit}: the digit word with its article ("a seven", "an eight")
IMAGE_TEMPLATES = ("a handwritten {digit}", "the digit {digit}", "{a_digit} written by hand")
VIDEO_TEMPLATE = "{a_digit} moves {direction}"
DIRECTION_WORDS = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
# (dx, dy) in pixels per unit of speed: x grows to the right, y downwards
MOTION = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SCAN_MAX = 16  # the scans' ink scale: 0 (paper) .. 16 (full ink)
VIDEOS_PER_SCAN = 1  # directions take turns over the scans (balanced per digit)
EXPORT_VERSION = 2  # of the exported folder's contents; ensure_digits re-exports an older one
# beside captions.jsonl: the version and the sizes the folder was exported with
EXPORT_RECORD = "digits_export.json"


def with_article(word: str) -> str:
    """'a seven', 'an eight': the digit words that start with a vowel sound take 'an'."""
    return f"{'an' if word == 'eight' else 'a'} {word}"


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
    x0, y0 = _start(size, frames, direction, speed)
    dx, dy = MOTION[direction]
    path = [(x0 + dx * speed * t, y0 + dy * speed * t) for t in range(frames)]
    return _frames(scan, size, path)


def turned_video(
    scan: np.ndarray,
    size: int = 32,
    frames: int = 4,
    direction: str = "right",
    turn: str = "up",
    *,
    given_frames: int = 1,
    speed: int = 4,
) -> list:
    """`digit_video`'s first `given_frames` frames, then the digit moving `turn` from where it
    is, as fast as `speed` allows without leaving the canvas: the target of a TV2V edit pair."""
    if turn not in MOTION:
        raise ValueError(f"turn must be one of {', '.join(MOTION)}, got {turn!r}")
    if not 1 <= given_frames < frames:
        raise ValueError(f"given_frames={given_frames} must be in 1..{frames - 1}")
    x0, y0 = _start(size, frames, direction, speed)
    (dx, dy), (tx, ty) = MOTION[direction], MOTION[turn]
    path = [(x0 + dx * speed * t, y0 + dy * speed * t) for t in range(given_frames)]
    x, y = path[-1]
    edge = size - size // 2  # the last top-left corner that keeps the digit on the canvas
    room = {(-1, 0): x, (1, 0): edge - x, (0, -1): y, (0, 1): edge - y}[tx, ty]
    steps = frames - given_frames
    step = min(speed, room // steps)  # slower where the full speed would leave the canvas
    if step < 1:
        raise ValueError(
            f"a digit at ({x}, {y}) cannot move {turn} for {steps} frames on a {size}-pixel "
            "canvas; turn it another way"
        )
    path += [(x + tx * step * t, y + ty * step * t) for t in range(1, steps + 1)]
    return _frames(scan, size, path)


def _start(size: int, frames: int, direction: str, speed: int) -> tuple[int, int]:
    """Where `digit_video`'s digit starts: the whole motion on the canvas, centred across it."""
    if direction not in MOTION:
        raise ValueError(f"direction must be one of {', '.join(MOTION)}, got {direction!r}")
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
    return x0, y0


def _frames(scan: np.ndarray, size: int, path: list[tuple[int, int]]) -> list:
    """RGB frames of the scan (half the canvas wide) with its top-left corner at each (x, y)."""
    from PIL import Image

    digit = _scaled(scan, size // 2)
    out = []
    for x, y in path:
        canvas = Image.new("L", (size, size), 0)
        canvas.paste(digit, (x, y))
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
    videos_per_scan: int = VIDEOS_PER_SCAN,
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
    if not 1 <= videos_per_scan <= len(MOTION):
        raise ValueError(
            f"videos_per_scan must be 1 to {len(MOTION)} (a direction each), got {videos_per_scan}"
        )
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
        template = IMAGE_TEMPLATES[n % len(IMAGE_TEMPLATES)]
        caption = template.format(digit=word, a_digit=with_article(word))
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
                        a_digit=with_article(word), direction=DIRECTION_WORDS[direction]
                    ),
                    "digit": int(labels[i]),
                    "direction": direction,
                    "split": part,
                }
            )
    write_digit_edits(folder, lines, scans, size=size, frames=frames, speed=speed)
    index = folder / "captions.jsonl"
    _write_lines(index, lines)
    return index


def _write_lines(path: Path, lines: list[dict]) -> None:
    """One JSON object a line, written whole or not at all."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    partial.replace(path)


def write_digit_edits(
    folder: Path,
    lines: list[dict],
    scans: np.ndarray,
    *,
    size: int,
    frames: int,
    speed: int = 4,
    given_frames: int = 1,
) -> int:
    """TV2V edit pairs of the test videos among `lines` (captions.jsonl's objects) into
    `folder/edits.jsonl` (`nuwa_lab.world.edits`): the video's first `given_frames` frames, then
    the digit turning to a perpendicular direction (the two taking turns), captioned
    "a seven moves up". Returns how many pairs it wrote."""
    turns = {"left": ("up", "down"), "right": ("down", "up"), "up": ("left", "right")}
    turns["down"] = ("right", "left")
    (folder / "edits").mkdir(exist_ok=True)
    pairs = []
    for line in lines:
        found = re.fullmatch(r"videos/test_(\d+)_(\w+)\.gif", line["file"])
        if not found or line.get("split") != "test":
            continue
        scan, direction = int(found[1]), found[2]
        turn = turns[direction][len(pairs) % 2]
        clip = turned_video(
            scans[scan], size, frames, direction, turn, given_frames=given_frames, speed=speed
        )
        name = f"edits/test_{scan:04d}_{direction}_{turn}.gif"
        clip[0].save(folder / name, save_all=True, append_images=clip[1:], duration=250, loop=0)
        word = DIGIT_WORDS[line["digit"]]
        caption = VIDEO_TEMPLATE.format(a_digit=with_article(word), direction=DIRECTION_WORDS[turn])
        pairs.append(
            {"source": line["file"], "target": name, "caption": caption,
             "given_frames": given_frames, "digit": line["digit"], "direction": turn}
        )  # fmt: skip
    if pairs:
        _write_lines(folder / "edits.jsonl", pairs)
    return len(pairs)


def ensure_digits(folder: str | Path, *, image_size: int, frames: int) -> bool:
    """Export all the digits to `folder`, sized for a preset (at least 32 px and 4 frames), unless
    it holds this version's export of that size already; True when it exported.

    An older export of the digits (an `EXPORT_RECORD` of another version or size, or none beside
    file names only `export_digits` writes) is replaced. A folder holding other captioned data is
    refused, never overwritten."""
    folder = Path(folder)
    if digits_exported(folder, image_size=image_size, frames=frames):
        return False
    wanted = _export_record(image_size, frames)
    index, record = folder / "captions.jsonl", folder / EXPORT_RECORD
    if index.is_file():
        if not record.is_file() and not _exported_here(index):
            raise ValueError(
                f"{folder} holds a captions.jsonl that is not an export of the digits; export "
                "them to an empty folder, or use this one as it is (DATA / --data)"
            )
        for name in (EXPORT_RECORD, "captions.jsonl", "edits.jsonl"):
            (folder / name).unlink(missing_ok=True)
        for name in ("images", "videos", "edits"):
            shutil.rmtree(folder / name, ignore_errors=True)
    export_digits(folder, split="all", size=wanted["size"], frames=wanted["frames"])
    _write_lines(record, [wanted])
    return True


def digits_exported(folder: str | Path, *, image_size: int, frames: int) -> bool:
    """True when `folder` holds this version's export of the digits, sized for a preset."""
    folder = Path(folder)
    recorded = _read_record(folder / EXPORT_RECORD)
    return (folder / "captions.jsonl").is_file() and recorded == _export_record(image_size, frames)


def _export_record(image_size: int, frames: int) -> dict:
    """What `EXPORT_RECORD` holds for a preset's sizes (at least 32 px and 4 frames)."""
    return {
        "version": EXPORT_VERSION,
        "size": max(32, image_size),
        "frames": max(4, frames),
        "videos_per_scan": VIDEOS_PER_SCAN,
    }


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _exported_here(index: Path) -> bool:
    """True when every line of `index` names a file as `export_digits` names them."""
    named = re.compile(r"(images/(train|test)_\d{4}\.png|videos/(train|test)_\d{4}_\w+\.gif)")
    try:
        lines = [json.loads(raw) for raw in index.read_text(encoding="utf-8").splitlines() if raw]
    except ValueError:
        return False
    return bool(lines) and all(
        isinstance(x, dict) and "digit" in x and named.fullmatch(str(x.get("file"))) for x in lines
    )
