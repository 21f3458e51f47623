"""What the recipes train on: the Shapes World, or a folder of your own captioned images and videos.

One config switch, `cfg.world.source`: "shapes" (the procedural world, `ShapesWorld`) or
"folder:PATH" (a folder in the format `FolderDataset` reads: `captions.jsonl` naming images, GIFs
and frame folders). For a folder, `world.image_size` and `world.frames` still set the pixels and
frames; the scene fields (shapes, colours, ...) are unused.

A folder is split into train / val / test once, deterministically:
- an entry's "split" field ("train", "val" or "test"), when it has one, is honoured (as
  `nuwa_lab.world.digits.export_digits` writes); an entry without one is train;
- a split that no entry of a kind (images, videos) names is carved from that kind's train
  entries: a tenth of them (at least one, leaving one), the first in the order of a hash of their
  file names, so the split does not depend on the line order and adding a file moves few others.

The captions give the text vocabulary (`text_tokenizer`): every word of the folder's captions,
sorted, after the five specials; the Shapes World's grammar does not know "handwritten".

`content_hash(path)` (`folder_index.py`) is the sha256 of captions.jsonl and of the bytes of every
file it names: the artifact cache adds it to the hash of every artifact that depends on the world
section, so a changed folder retrains, and hashes the folder by it instead of its path
(`keyed_world`), so the same bytes in another place load the same artifacts.

`world.on_error`: "raise" (a bad entry stops the load, naming its line) or "skip" (bad entries,
e.g. unreadable images, are left out with one warning that counts them; `FolderSource.skipped`).
Each entry's record (its whole JSON object: labels such as "digit" or "direction" ride along) is
kept beside its pixels, `FolderSource.records`, for what measures a folder (`labels.py`).

A task that needs what a folder lacks raises naming it (`check_task`): "S2I needs segmentation
maps: none found in PATH", "T2V needs captioned videos: PATH has 0". TI2I and TV2V read the
folder's edit pairs, `edits.jsonl` (`nuwa_lab.world.edits`), read when first asked for
(`FolderSource.edits`): a bad line stops TI2I and TV2V, not training.

| thing | code |
|---|---|
| the switch | `folder_path(world_cfg)` (None: Shapes World), `data_source(world_cfg, text_cfg)` |
| a split's images / videos | `FolderSource.batch(kind, split, rows)`: pixels in [0, 1], captions |
| a tokenizer's training batch | `FolderSource.training_pixels(generator, n_image, n_video)` |
| raw inputs of T2I, T2V, V2V, I2I, TI2I, TV2V | `FolderSource.task_items(task, split, n)` |
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nuwa_lab.config import TextConfig, WorldConfig
from nuwa_lab.world.captions import words
from nuwa_lab.world.datasets import collate, hidden_regions
from nuwa_lab.world.edits import (
    EDIT_EXAMPLE,
    EDITS,
    KIND_OF_TASK,
    EditSet,
    edit_items,
    edits_signature,
    load_edits,
)
from nuwa_lab.world.folder_index import CAPTIONS, content_hash, entries, index_of
from nuwa_lab.world.folders import FolderDataset, describe
from nuwa_lab.world.text import TextTokenizer
from nuwa_lab.world.world import ShapesWorld

SHAPES = "shapes"
FOLDER = "folder:"
KINDS = ("image", "video")
SPLIT_NAMES = ("train", "val", "test")
CARVE_FRACTION = 0.1  # of a kind's train entries given to a split no entry names
# task -> (the kind of file it reads, how a message names them)
NEEDS = {
    "t2i": ("image", "captioned images"),
    "i2i": ("image", "images"),
    "t2v": ("video", "captioned videos"),
    "v2v": ("video", "videos"),
}
SKETCH_TASKS = ("s2i", "s2v")
EDIT_TASKS = ("ti2i", "tv2v")
CACHED_FOLDERS = 2  # loaded folders kept in memory (a folder is read once per process)


def folder_path(world_cfg: WorldConfig) -> Path | None:
    """The folder of `world.source = "folder:PATH"`, or None for the Shapes World."""
    source = world_cfg.source
    if source == SHAPES:
        return None
    if not source.startswith(FOLDER) or not source[len(FOLDER) :].strip():
        raise ValueError(f'world.source = {source!r}: must be "shapes" or "folder:PATH"')
    return Path(source[len(FOLDER) :].strip()).expanduser()


def source_fingerprint(world_cfg: WorldConfig) -> dict[str, str]:
    """What the config does not show about the data, for the artifact cache: {} for the Shapes
    World (a pure function of the config), the folder's content hash for a folder."""
    root = folder_path(world_cfg)
    return {} if root is None else {"world.source content": content_hash(root)}


def keyed_world(world_cfg: WorldConfig) -> WorldConfig:
    """The world section as artifact keys see it: a folder named by its content hash instead of
    its path, so a copied or moved folder keeps its artifacts (the Shapes World unchanged)."""
    root = folder_path(world_cfg)
    if root is None:
        return world_cfg
    return dataclasses.replace(world_cfg, source=f"{FOLDER}sha256:{content_hash(root)}")


def caption_words(root: Path) -> list[str]:
    """Every word of the folder's captions, sorted (unreadable lines are left to FolderDataset)."""
    vocab: set[str] = set()
    for _, entry in entries(index_of(root)):
        caption = entry.get("caption") if entry else None
        if isinstance(caption, str):
            vocab.update(words(caption))
    return sorted(vocab)


def text_tokenizer(world_cfg: WorldConfig, text_cfg: TextConfig) -> TextTokenizer:
    """The caption tokenizer of the source: the world grammar's, or the folder captions' words."""
    root = folder_path(world_cfg)
    if root is None:
        return TextTokenizer.from_config(world_cfg, text_cfg)
    return TextTokenizer(words=caption_words(root), max_length=text_cfg.max_length)


@dataclass
class FolderBatch:
    """Images (b, 3, H, W) or videos (b, t, 3, H, W) of a folder, float in [0, 1], and captions."""

    kind: str
    pixels: torch.Tensor
    captions: list[str]


@dataclass
class FolderSource:
    """A folder's samples per (kind, split): uint8 pixels, captions, file names and records."""

    root: Path
    digest: str
    pixels: dict[tuple[str, str], torch.Tensor]  # (kind, split) -> uint8 (n, [t,] 3, H, W)
    captions: dict[tuple[str, str], list[str]]
    files: dict[tuple[str, str], list[str]]
    world_cfg: WorldConfig  # what the edit pairs are read with, on first use
    tokenizer: TextTokenizer
    records: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    skipped: int = 0  # entries left out under world.on_error = "skip"

    @functools.cached_property
    def edits(self) -> dict[tuple[str, str], EditSet]:
        """edits.jsonl's pairs {(kind, split): EditSet}, read the first time something asks: a
        folder trains without them, and a bad line stops only TI2I / TV2V, naming the line."""
        return load_edits(self.root, self.world_cfg, self.tokenizer)

    def count(self, kind: str, split: str | None = None) -> int:
        """How many images / videos the folder has (in `split`, or in all)."""
        splits = SPLIT_NAMES if split is None else (split,)
        return sum(len(self.captions[kind, s]) for s in splits)

    def count_edits(self, kind: str, split: str | None = None) -> int:
        """How many edit pairs of images / videos `edits.jsonl` has (in `split`, or in all)."""
        return sum(len(e) for (k, s), e in self.edits.items() if k == kind and split in (None, s))

    def summary(self) -> str:
        """'1,437 / 144 / 360 images, ... videos (train / val / test)'."""
        parts = [
            " / ".join(f"{self.count(kind, s):,}" for s in SPLIT_NAMES) + f" {kind}s"
            for kind in KINDS
        ]
        skipped = f"; {self.skipped:,} bad entries skipped" if self.skipped else ""
        return f"{self.root}: {', '.join(parts)} (train / val / test){skipped}"

    def trainable_mix(self, task_mix: tuple[tuple[str, float], ...]) -> tuple:
        """The rows of a pretraining task mix whose data the folder has (T2I needs train images,
        T2V and V2V train videos); an error when none is left."""
        mix = tuple((t, r) for t, r in task_mix if self.count(NEEDS[t][0], "train"))
        if not mix:
            raise ValueError(
                f"no train images or videos for any task of the mix "
                f"({', '.join(t for t, _ in task_mix)}): {self.summary()}"
            )
        return mix

    def batch(self, kind: str, split: str, rows: list[int] | torch.Tensor) -> FolderBatch:
        """Items `rows` of (kind, split) as floats in [0, 1] with their captions."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        captions = self.captions[kind, split]
        pixels = self.pixels[kind, split][rows].float() / 255
        return FolderBatch(kind, pixels, [captions[int(i)] for i in rows])

    def training_pixels(
        self, generator: torch.Generator, n_image: int, n_video: int
    ) -> torch.Tensor:
        """(n_image + n_video, 3, H, W) train pixels: images, then one random frame of each video
        (all images when the folder has no videos, all frames when it has no images)."""
        have_image, have_video = self.count("image", "train"), self.count("video", "train")
        if not have_image and not have_video:
            raise ValueError(f"a tokenizer needs train images or videos: {self.summary()}")
        if not have_video:
            n_image, n_video = n_image + n_video, 0
        elif not have_image:
            n_image, n_video = 0, n_image + n_video
        parts = []
        if n_image:
            rows = torch.randint(0, have_image, (n_image,), generator=generator)
            parts.append(self.pixels["image", "train"][rows])
        if n_video:
            rows = torch.randint(0, have_video, (n_video,), generator=generator)
            frame = torch.randint(
                0, self.pixels["video", "train"].shape[1], (n_video,), generator=generator
            )
            parts.append(self.pixels["video", "train"][rows, frame])
        return torch.cat(parts).float() / 255

    def check(self, task: str) -> None:
        """Raise naming what the folder lacks when `task` cannot train or run on it."""
        name = task.upper()
        lacking = lacks(task, self.root)
        if lacking:
            raise ValueError(lacking)
        if task in EDIT_TASKS:
            kind, other = KIND_OF_TASK[task], "video" if task == "ti2i" else "image"
            if not self.count_edits(kind):
                raise ValueError(
                    f"{name} needs {kind} edit pairs: {self.root / EDITS} has 0 (and "
                    f"{self.count_edits(other):,} {other} pairs)"
                )
            return
        if task not in NEEDS:
            valid = ", ".join((*NEEDS, *SKETCH_TASKS, *EDIT_TASKS))
            raise ValueError(f"unknown task {task!r}; valid: {valid}")
        kind, what = NEEDS[task]
        total, train = self.count(kind), self.count(kind, "train")
        if not total:
            raise ValueError(f"{name} needs {what}: {self.root} has 0")
        if not train:
            raise ValueError(
                f"{name} needs {what} in the train split: {self.root} has {total:,}, none of "
                f'them train; mark some "split": "train" in its {CAPTIONS}'
            )

    def task_items(
        self, task: str, split: str, n: int, *, offset: int = 0, given_frames: int = 1
    ) -> dict[str, Any]:
        """`n` collated raw inputs of T2I, T2V, V2V or I2I from items offset.. of `split`, with
        `TaskDataset`'s keys (I2I hides a half or quadrant picked by the item's index)."""
        self.check(task)
        if task in EDIT_TASKS:
            edits = self.edits.get((KIND_OF_TASK[task], split))
            if edits is None or offset + n > len(edits):  # load_edits keeps val and test only
                raise ValueError(
                    f"{task.upper()}: offset {offset} + {n} items exceeds the "
                    f"{0 if edits is None else len(edits)} {KIND_OF_TASK[task]} edit pairs of the "
                    f"{split} split of {self.root / EDITS} (edit pairs are val or test only)"
                )
            return edit_items(edits, task, n, offset=offset, given_frames=given_frames)
        kind = NEEDS[task][0]
        available = self.count(kind, split)
        if offset < 0 or n < 0 or offset + n > available:
            raise ValueError(
                f"offset {offset} + {n} items exceeds the {available} {kind}s of the {split} "
                f"split of {self.root}"
            )
        data = self.batch(kind, split, list(range(offset, offset + n)))
        hidden = hidden_regions(data.pixels.shape[-1])
        items = []
        for i in range(n):
            item = {"task": task, "seed": offset + i, "objects": [], "pixels": data.pixels[i]}
            if task in ("t2i", "t2v"):
                item["caption"] = data.captions[i]
            elif task == "v2v":
                item["given_frames"] = given_frames
            else:  # i2i
                rng = np.random.default_rng((offset + i, 3))
                item["visible"] = ~hidden[int(rng.random() * len(hidden))]
            items.append(item)
        return collate(items)


_FOLDERS: dict[tuple, FolderSource] = {}


def load_folder(world_cfg: WorldConfig, text_cfg: TextConfig) -> FolderSource:
    """The folder of `world_cfg.source` read and split (see the module docstring); kept in memory
    while its content hash and the sizes are unchanged. A bad entry raises naming its line, or
    under `world.on_error = "skip"` is left out with a warning."""
    root = folder_path(world_cfg)
    if root is None:
        raise ValueError('world.source = "shapes": the Shapes World is not a folder')
    digest = content_hash(root)
    key = (str(root.resolve()), digest, world_cfg.image_size, world_cfg.frames, world_cfg.on_error)
    key += (text_cfg.max_length, edits_signature(root))
    if key in _FOLDERS:
        return _FOLDERS[key]
    tok = text_tokenizer(world_cfg, text_cfg)
    data = FolderDataset(root, world_cfg, text_tokenizer=tok, on_error=world_cfg.on_error)
    fields: dict[str, list[str | None]] = {k: [] for k in KINDS}  # each entry's "split"
    names: dict[str, list[str]] = {k: [] for k in KINDS}
    samples: dict[str, list] = {k: [] for k in KINDS}
    records: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    left_out = {e.line for e in data.errors}  # on_error="skip": the entries FolderDataset skipped
    kept = [(n, e) for n, e in entries(data.index) if n not in left_out]
    for (number, entry), sample in zip(kept, data.samples, strict=True):
        split = entry.get("split")  # FolderDataset raised on any entry that is not an object
        if split is not None and split not in SPLIT_NAMES:
            raise ValueError(
                f"{data.index}:{number}: 'split' must be one of {', '.join(SPLIT_NAMES)}, got "
                f"{describe(split)}; fix it or leave the field out (the entry is then train)"
            )
        fields[sample.kind].append(split)
        names[sample.kind].append(entry["file"])
        samples[sample.kind].append(sample)
        records[sample.kind].append(entry)
    source = FolderSource(root, digest, {}, {}, {}, world_cfg, tok, skipped=data.skipped)
    for kind in KINDS:
        rows = split_rows(names[kind], fields[kind])
        for split, chosen in rows.items():
            shape = (0, *((world_cfg.frames,) if kind == "video" else ()), 3)
            shape += (world_cfg.image_size,) * 2
            pixels = [samples[kind][i].pixels for i in chosen]
            source.pixels[kind, split] = (
                torch.stack(pixels) if pixels else torch.zeros(shape, dtype=torch.uint8)
            )
            source.captions[kind, split] = [samples[kind][i].caption for i in chosen]
            source.files[kind, split] = [names[kind][i] for i in chosen]
            source.records[kind, split] = [records[kind][i] for i in chosen]
    while len(_FOLDERS) >= CACHED_FOLDERS:
        _FOLDERS.pop(next(iter(_FOLDERS)))
    _FOLDERS[key] = source
    return source


def split_rows(files: list[str], fields: list[str | None]) -> dict[str, list[int]]:
    """Row indices per split of one kind's entries: the "split" fields (absent = train), then a
    split no entry names carved from train by file-name hash (see the module docstring)."""
    out: dict[str, list[int]] = {s: [] for s in SPLIT_NAMES}
    for i, split in enumerate(fields):
        out[split or "train"].append(i)
    for split in ("test", "val"):
        if not out[split] and len(out["train"]) >= 2:
            order = sorted(out["train"], key=lambda i: hashlib.sha256(files[i].encode()).digest())
            n = min(len(order) - 1, max(1, round(CARVE_FRACTION * len(order))))
            out[split] = sorted(order[:n])
            out["train"] = sorted(order[n:])
    return out


def data_source(world_cfg: WorldConfig, text_cfg: TextConfig) -> ShapesWorld | FolderSource:
    """What the recipes draw from: the Shapes World, or the folder of `world.source`."""
    if folder_path(world_cfg) is None:
        return ShapesWorld(world_cfg)
    return load_folder(world_cfg, text_cfg)


def check_task(world_cfg: WorldConfig, text_cfg: TextConfig, task: str) -> None:
    """Nothing for the Shapes World (it has every task's data); for a folder, raise naming what
    it lacks when `task` needs it (`FolderSource.check`)."""
    if folder_path(world_cfg) is None:
        return
    lacking = lacks(task, folder_path(world_cfg))
    if lacking:  # no need to read the folder to know
        raise ValueError(lacking)
    load_folder(world_cfg, text_cfg).check(task)


def lacks(task: str, root: Path) -> str | None:
    """The error of a task no folder has the data for (sketches, edit pairs), else None."""
    if task in SKETCH_TASKS:
        return no_segmentation(task.upper(), root)
    if task in EDIT_TASKS and not (root / EDITS).is_file():
        return (
            f"{task.upper()} needs edit pairs (a source, the caption of the edit and the edited "
            f"target): none found in {root}; write them to {root / EDITS}, one {EDIT_EXAMPLE} "
            "per line (the format: nuwa_lab/world/edits.py)"
        )
    return None


def no_segmentation(who: str, root: Path) -> str:
    """The error of `who` (a task, VQ-GAN-Seg) needing the segmentation maps no folder has."""
    return f"{who} needs segmentation maps: none found in {root}"
