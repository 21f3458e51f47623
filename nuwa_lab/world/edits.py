"""Edit pairs in a data folder: a source, the caption of the edit, the edited target (TI2I, TV2V).

NÜWA edits a picture or a video by a caption (§4.4): the model is given what must stay (the source
outside an edit region, or a video's first frames) and the caption of the result, and draws the
rest. A data folder gives its edit pairs in `edits.jsonl`, beside `captions.jsonl`, one object a
line:

    {"source": "photos/room.png", "target": "edits/room_red.png", "caption": "a red room",
     "region": "edits/room_red_mask.png"}
    {"source": "videos/test_0007_left.gif", "target": "edits/test_0007_left_up.gif",
     "caption": "a seven moves up", "given_frames": 2, "digit": 7, "direction": "up"}

- "source", "target": two images (a TI2I pair) or two videos (a TV2V pair), files as
  captions.jsonl names them (an image, a GIF, a folder of frames), read and resized the same way;
- "caption": the target's caption, what the model is told; its words must be words of
  captions.jsonl's captions (the model's vocabulary);
- "region" (images, optional): a mask image, white (>= 128) where the edit may change pixels,
  resized like the pictures; without one, the pixels where source and target differ by more than
  `DIFFERENCE` in some channel, dilated by one pixel (`difference_region`);
- "given_frames" (videos, optional): the frames the target shares with the source, given to the
  model (1 .. world.frames - 1; default `tasks.edit_given_frames`);
- "split" (optional): "val" or "test" (the default);
- other fields are the target's labels (a class, a "direction"), read as captions.jsonl's are.

The pairs are never trained on: TI2I and TV2V run zero-shot on the T2I / T2V models, as on the
Shapes World. So `edits.jsonl` is not part of the folder's content hash: adding pairs retrains
nothing. A bad line raises `edits.jsonl:<line>: ...`, naming what is wrong and the fix.

| thing | code |
|---|---|
| the pairs of one kind and split | `EditSet`: uint8 `source`, `target`, `captions`, `regions`... |
| a folder's pairs, read and checked | `load_edits(root, world_cfg, text_tokenizer)` |
| raw inputs of TI2I / TV2V | `edit_items(edits, task, n, offset=, given_frames=)` |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nuwa_lab.config import WorldConfig
from nuwa_lab.world.captions import words
from nuwa_lab.world.datasets import collate
from nuwa_lab.world.folders import BadEntry, describe, read_image, read_pictures, square_pixels
from nuwa_lab.world.text import TextTokenizer, shorten

EDITS = "edits.jsonl"
EDIT_SPLITS = ("val", "test")
DIFFERENCE = 8  # of 255: a channel this far apart in source and target is an edited pixel
KIND_OF_TASK = {"ti2i": "image", "tv2v": "video"}
EDIT_EXAMPLE = '{"source": "a.png", "target": "a_red.png", "caption": "a red square"}'


@dataclass
class EditSet:
    """The pairs of one kind ("image" or "video") and split: uint8 pixels (n, [t,] 3, H, W),
    regions bool (n, H, W) for images, given frames (None = the config's) for videos."""

    kind: str
    source: torch.Tensor
    target: torch.Tensor
    captions: list[str] = field(default_factory=list)
    regions: torch.Tensor | None = None
    given_frames: list[int | None] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # each line's object (labels)

    def __len__(self) -> int:
        return len(self.captions)


def difference_region(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """bool (H, W): where uint8 (3, H, W) source and target differ by more than `DIFFERENCE` in
    some channel, dilated by one pixel (a 3×3 neighbourhood)."""
    changed = (source.int() - target.int()).abs().amax(dim=0) > DIFFERENCE
    grown = F.max_pool2d(changed[None, None].float(), kernel_size=3, stride=1, padding=1)
    return grown[0, 0] > 0


def _pictures(root: Path, name: Any, what: str, world_cfg: WorldConfig) -> tuple[str, torch.Tensor]:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f'"{what}" must name a file, got {describe(name)}')
    try:
        kind, images = read_pictures(root, name, world_cfg.frames)
    except BadEntry as bad:
        raise ValueError(f'"{what}": {bad}') from bad.__cause__
    pixels = torch.stack([square_pixels(image, world_cfg.image_size) for image in images])
    return kind, pixels[0] if kind == "image" else pixels


def _region(root: Path, name: Any, size: int) -> torch.Tensor:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f'"region" must name a mask image, got {describe(name)}')
    path = root / name
    if not path.is_file():
        raise ValueError(f'"region": {shorten(name)} not found in {root}')
    try:
        mask = square_pixels(read_image(path, shorten(name)), size)  # (3, H, W), white = edit
    except BadEntry as bad:
        raise ValueError(f'"region": {bad}') from bad.__cause__
    return mask.float().mean(dim=0) >= 128


def _given(value: Any, frames: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < frames:
        raise ValueError(
            f'"given_frames" must be a whole number of frames in 1..{frames - 1} '
            f"(world.frames={frames}), got {describe(value)}"
        )
    return value


def _pair(root: Path, entry: Any, world_cfg: WorldConfig, text: TextTokenizer) -> tuple:
    """(kind, split, source, target, caption, region, given_frames, entry) of one line."""
    if not isinstance(entry, dict) or not {"source", "target", "caption"} <= set(entry):
        raise ValueError(f"each line must be an object with source, target and caption: "
                         f"{EDIT_EXAMPLE}")  # fmt: skip
    caption = entry["caption"]
    if not isinstance(caption, str) or not words(caption):
        raise ValueError(f'"caption" must be the caption of the target, got {describe(caption)}')
    unknown = sorted(set(words(caption)) - set(text.itos))
    if unknown:
        raise ValueError(
            f"the caption {shorten(caption)} has words no caption of captions.jsonl has "
            f"({', '.join(map(repr, unknown[:5]))}): the model never learned them; use the "
            "folder's words or add captions that use them"
        )
    if len(words(caption)) > text.max_length - 2:
        raise ValueError(
            f"the caption has {len(words(caption))} words but the text tokenizer holds "
            f"{text.max_length - 2} (text.max_length={text.max_length}); shorten it"
        )
    split = entry.get("split", "test")
    if split not in EDIT_SPLITS:
        raise ValueError(
            f'"split" must be "val" or "test", got {describe(split)}: edit pairs are measured, '
            "never trained on (TI2I and TV2V run zero-shot on the T2I / T2V models)"
        )
    kind, source = _pictures(root, entry["source"], "source", world_cfg)
    target_kind, target = _pictures(root, entry["target"], "target", world_cfg)
    if kind != target_kind:
        raise ValueError(f"the source is {'an' if kind == 'image' else 'a'} {kind} but the "
                         f"target {'an' if target_kind == 'image' else 'a'} {target_kind}; "
                         "a pair is two images (TI2I) or two videos (TV2V)")  # fmt: skip
    region, given = None, None
    if kind == "image":
        if entry.get("given_frames") is not None:
            raise ValueError('"given_frames" is for video pairs; an image pair has a "region"')
        if entry.get("region") is not None:
            region = _region(root, entry["region"], world_cfg.image_size)
        else:
            region = difference_region(source, target)
        if not region.any():
            raise ValueError(
                "the edit region is empty: the source and the target are the same picture"
                if entry.get("region") is None
                else '"region" has no white pixel: the edit may change nothing'
            )
    else:
        if entry.get("region") is not None:
            raise ValueError('"region" is for image pairs; a video pair has "given_frames"')
        given = _given(entry.get("given_frames"), world_cfg.frames)
    return kind, split, source, target, caption, region, given, entry


def load_edits(
    root: Path, world_cfg: WorldConfig, text: TextTokenizer
) -> dict[tuple[str, str], EditSet]:
    """{(kind, split): EditSet} of `root/edits.jsonl` ({} without the file); a bad line raises
    naming it. `text`: the folder's caption tokenizer (its words and length)."""
    index = root / EDITS
    if not index.is_file():
        return {}
    found: dict[tuple[str, str], list[tuple]] = {}
    for number, raw in enumerate(index.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            try:
                entry = json.loads(raw.decode("utf-8").removeprefix("\ufeff"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"not a JSON line ({exc}); write one {EDIT_EXAMPLE}") from exc
            pair = _pair(root, entry, world_cfg, text)
        except ValueError as exc:
            raise ValueError(f"{index}:{number}: {exc}") from exc.__cause__
        found.setdefault(pair[:2], []).append(pair)
    out = {}
    for (kind, split), pairs in found.items():
        _, _, sources, targets, captions, regions, given, records = zip(*pairs, strict=True)
        out[kind, split] = EditSet(
            kind,
            torch.stack(sources),
            torch.stack(targets),
            list(captions),
            torch.stack(regions) if kind == "image" else None,
            list(given),
            list(records),
        )
    return out


def edit_items(
    edits: EditSet, task: str, n: int, *, offset: int = 0, given_frames: int = 1
) -> dict[str, Any]:
    """`n` collated raw inputs of TI2I / TV2V from pairs offset.. of `edits`, with
    `TaskDataset`'s keys: pixels (the source), new_caption, target, and edit_region (TI2I) or
    given_frames (TV2V: the pair's own, else `given_frames`)."""
    if offset < 0 or n < 1 or offset + n > len(edits):
        raise ValueError(f"offset {offset} + {n} items exceeds the {len(edits)} {edits.kind} pairs")
    items = []
    for i in range(offset, offset + n):
        item = {
            "task": task,
            "seed": i,
            "objects": [],
            "pixels": edits.source[i].float() / 255,
            "target": edits.target[i].float() / 255,
            "new_caption": edits.captions[i],
        }
        if edits.kind == "image":
            item["edit_region"] = edits.regions[i]
        else:
            item["given_frames"] = edits.given_frames[i] or given_frames
        items.append(item)
    return collate(items)


def edits_signature(root: Path) -> tuple:
    """What changes when `root/edits.jsonl` or a file it names changes (the bytes of the index, the
    size and time of each named file): keys the in-memory copy of a loaded folder."""
    index = root / EDITS
    if not index.is_file():
        return ()
    raw = index.read_bytes()
    named: set[Path] = set()
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(entry, dict):
            for key in ("source", "target", "region"):
                if isinstance(entry.get(key), str):
                    path = root / entry[key]
                    named.update(path.iterdir() if path.is_dir() else [path])
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(named) if p.exists()]
    return (raw, tuple(stats))
