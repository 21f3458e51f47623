"""Real data from a folder: your own captioned images and videos, as `Sample`s.

NÜWA learns from captioned images and videos (§4); `FolderDataset(path, cfg.world)` reads a folder
of them into the Shapes World's `Sample` type (no sketch, no objects), resized to world.image_size.

Layout: `path/captions.jsonl` (UTF-8), one `{"file": "cat.png", "caption": "a cat"}` per line,
blank lines ignored. A file is an image (png, jpg, jpeg, bmp, webp), a GIF (a video when it has
several frames) or a folder of frame images (a video, frames sorted by name). An image is turned
upright by its EXIF orientation, brought to 8 bits per channel (16-bit images scaled, not clipped),
centre-cropped to a square and resized; a video keeps its first world.frames frames.

Every entry is checked. A bad one raises an error that starts `<folder>/captions.jsonl:<line>:`,
says what is wrong and how to fix it; with `on_error="skip"` it is left out, kept in `.errors`, and
one warning counts what was skipped and why ("skipped 3 of 120 entries: 2 unreadable images, 1
non-string caption"). Captions and file names are quoted cut to 80 characters, never in full.

| reason (when skipped) | what is wrong |
|---|---|
| non-UTF-8 line | the line's bytes are not UTF-8 |
| malformed line | not JSON, not an object, or no "file" / "caption" |
| bad file name | "file" is null, not a string, or empty |
| non-string caption | "caption" is null, a list, a number... |
| empty caption | "caption" has no words |
| over-long caption | more words than `text_tokenizer` holds (only checked when one is given) |
| missing file | no such file in the folder (raised as FileNotFoundError) |
| unsupported file | another suffix, or a 32-bit float image (no known scale) |
| unreadable image / unreadable file | not an image, truncated, or the system cannot read it |
| short video / empty frame folder | fewer frames than world.frames / no images in the folder |

Caption words outside the vocabulary (the text tokenizer's, else the world grammar's) become `<unk>`
when encoded: they are counted in `.unknown_words` and the most frequent named in one warning.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from nuwa_lab.config import WorldConfig
from nuwa_lab.world.captions import vocabulary, words
from nuwa_lab.world.sample import Sample
from nuwa_lab.world.text import TextTokenizer, shorten

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
EXAMPLE = '{"file": "cat.png", "caption": "a cat"}'
TOP_UNKNOWN = 10  # unknown words the warning names
WORD_LIMIT = 30  # characters of one unknown word the warning shows


class SkippedEntry(NamedTuple):
    """An entry left out under on_error="skip": its line, its file (None if unread), why."""

    line: int
    file: str | None
    reason: str  # one of the module docstring's reasons, e.g. "unreadable image"
    message: str  # the error it would have raised


class BadEntry(Exception):
    """One entry's problem; `reason` is its kind (counted when skipped)."""

    def __init__(
        self, reason: str, message: str, *, file: str | None = None, missing: bool = False
    ):
        super().__init__(message)
        self.reason, self.file, self.missing = reason, file, missing


def describe(value: Any) -> str:
    """A JSON value named for a message: `null`, `a list (["a", "b"])`, `an empty string`..."""
    if value is None:
        return "null"
    if value == "":
        return "an empty string"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    kind = kinds.get(type(value), "a list" if isinstance(value, list) else "an object")
    return f"{kind} ({shorten(json.dumps(value), quote=False)})"


def parse_entry(raw: bytes, *, name: str = "captions.jsonl") -> tuple[str, str]:
    """(file, caption) of one line of a captions file; raises naming what is wrong."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # the byte-order mark some editors write
    except UnicodeDecodeError as exc:
        raise BadEntry(
            "non-UTF-8 line",
            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}); save {name} "
            f"as UTF-8",
        ) from exc
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadEntry(
            "malformed line",
            f"not valid JSON ({exc.msg} at column {exc.colno}): {shorten(text)}; write one "
            f"object per line, like {EXAMPLE}",
        ) from exc
    if not isinstance(entry, dict):
        raise BadEntry(
            "malformed line", f"expected a JSON object like {EXAMPLE}, got {describe(entry)}"
        )
    absent = [key for key in ("file", "caption") if key not in entry]
    if absent:
        raise BadEntry(
            "malformed line",
            f"no {' or '.join(map(repr, absent))} in {shorten(text)}; each line needs both, "
            f"like {EXAMPLE}",
        )
    file, caption = entry["file"], entry["caption"]
    if not isinstance(file, str) or not file.strip():
        raise BadEntry(
            "bad file name",
            f"'file' must name an image, a GIF or a folder of frames, got {describe(file)}",
        )
    if not isinstance(caption, str):
        raise BadEntry(
            "non-string caption",
            f"{shorten(file)}: 'caption' must be a string, got {describe(caption)}; write the "
            f"caption as one string",
            file=file,
        )
    if not words(caption):
        raise BadEntry(
            "empty caption",
            f"{shorten(file)}: the caption is empty; write what the file shows",
            file=file,
        )
    return file, caption


def read_image(path: Path, shown: str):
    """An image file as an upright 8-bit RGB PIL image; `shown` names it in errors."""
    from PIL import Image, ImageOps  # PIL only when a folder is read

    try:
        with Image.open(path) as image:
            return rgb8(ImageOps.exif_transpose(image), shown)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise BadEntry(
            "unreadable image", f"{shown}: unreadable image ({unreadable(exc)})"
        ) from exc


def read_gif(path: Path, shown: str) -> list:
    """Every frame of a GIF as an 8-bit RGB PIL image."""
    from PIL import Image, ImageSequence  # PIL only when a folder is read

    try:
        with Image.open(path) as image:
            return [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise BadEntry("unreadable image", f"{shown}: unreadable GIF ({unreadable(exc)})") from exc


def unreadable(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {shorten(str(exc), quote=False)}"


def rgb8(image, shown: str):
    """8-bit RGB. 16-bit images (PIL modes I;16*) and 32-bit integer ones (mode I, read as 16-bit,
    as PNG and TIFF readers give them) are scaled by 255/65535, where PIL's convert would clip them
    at 255 (a 16-bit image of mean 0.5 would load almost white); palette, greyscale, RGBA and the
    other 8-bit modes convert as PIL converts them."""
    from PIL import Image  # PIL only when a folder is read

    if image.mode == "I" or image.mode.startswith("I;16"):
        levels = np.asarray(image).astype(np.float64)  # (h, w), 0..65535
        eight = np.round(np.clip(levels, 0, 65535) * (255 / 65535)).astype(np.uint8)
        return Image.fromarray(eight).convert("RGB")
    if image.mode == "F":
        raise BadEntry(
            "unsupported file",
            f"{shown}: a 32-bit float image (mode 'F') has no known scale; save it with 8 or 16 "
            f"bits per channel",
        )
    return image.convert("RGB")


def square_pixels(image, size: int) -> torch.Tensor:
    """Centre-crop to a square, resize to `size`: uint8 (3, size, size)."""
    from PIL import Image  # PIL only when a folder is read

    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.uint8).copy()  # (h, w, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_pictures(root: Path, file: str, frames: int) -> tuple[str, list]:
    """("image", [one PIL image]) or ("video", its first `frames` frames) of `file` in `root`: an
    image, a GIF (a video when it has several frames) or a folder of frame images. A problem
    raises `BadEntry` naming the file (its reason one of the module docstring's)."""
    path = root / file
    try:
        if not path.exists():
            raise BadEntry(
                "missing file",
                f"{shorten(file)} not found in {root}; fix the name or remove the line",
                missing=True,
            )
        if path.is_dir():
            names = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not names:
                raise BadEntry(
                    "empty frame folder",
                    f"{shorten(file)}: the frame folder holds no images "
                    f"({', '.join(IMAGE_SUFFIXES)})",
                )
            check_frames(file, len(names), frames)
            return "video", [read_image(p, shorten(f"{file}/{p.name}")) for p in names[:frames]]
        suffix = path.suffix.lower()
        if suffix == ".gif":
            images = read_gif(path, shorten(file))
            if len(images) == 1:
                return "image", images
            check_frames(file, len(images), frames)
            return "video", images[:frames]
        if suffix not in IMAGE_SUFFIXES:
            raise BadEntry(
                "unsupported file",
                f"{shorten(file)}: unsupported file type {suffix or 'without a suffix'!r}; "
                f"use png/jpg/jpeg/bmp/webp, a GIF, or a folder of frames",
            )
        return "image", [read_image(path, shorten(file))]
    except OSError as exc:  # the system cannot read it: no permission, a name too long...
        raise BadEntry(
            "unreadable file", f"{shorten(file)}: cannot read it ({exc.strerror or exc})"
        ) from exc


def check_frames(file: str, available: int, frames: int) -> None:
    if available < frames:
        raise BadEntry(
            "short video",
            f"{shorten(file)}: the video has {available} frames but world.frames="
            f"{frames}; give it more frames or lower world.frames",
        )


class FolderDataset(Dataset):
    """Captioned images / videos from a folder, as `Sample`s resized to world.image_size.

    `on_error`: "raise" (the first bad entry raises, naming file and line) or "skip" (bad entries
    are left out: `.errors` lists them, `.skipped` counts them, one warning summarises them).
    `text_tokenizer`: the tokenizer the captions will go through, if known; its vocabulary decides
    which words are unknown and its max_length which captions are too long (without it the world
    grammar's vocabulary is used and the length is checked when encoding).
    Everything is loaded at construction; a folder left with no entries raises.
    """

    def __init__(
        self,
        path: str | Path,
        world_cfg: WorldConfig,
        *,
        on_error: str = "raise",
        captions_file: str = "captions.jsonl",
        text_tokenizer: TextTokenizer | None = None,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = Path(path)
        self.cfg, self.on_error, self.text_tokenizer = world_cfg, on_error, text_tokenizer
        self.index = self.root / captions_file
        self.samples: list[Sample] = []
        self.errors: list[SkippedEntry] = []
        self.unknown_words: Counter[str] = Counter()  # word -> uses, over the loaded captions
        if not self.index.is_file():
            raise FileNotFoundError(
                f"{self.index} not found; a data folder needs a {captions_file} with one "
                f"{EXAMPLE} per line"
            )
        lines = [
            (number, raw)
            for number, raw in enumerate(self.index.read_bytes().splitlines(), start=1)
            if raw.strip()
        ]
        self.entries = len(lines)  # non-blank lines read
        for number, raw in lines:
            file = None
            try:
                file, caption = parse_entry(raw, name=self.index.name)
                self._check_length(file, caption)
                self.samples.append(self._load(file, caption))
            except BadEntry as bad:
                self._reject(number, file, bad)
        self._report_skipped()
        self._report_unknown_words()

    @property
    def skipped(self) -> int:
        return len(self.errors)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        s = self.samples[index]
        return Sample(s.kind, s.pixels.float() / 255, None, s.caption, [], None)

    def _reject(self, line: int, file: str | None, bad: BadEntry) -> None:
        message = f"{self.index}:{line}: {bad}"
        if self.on_error == "raise":
            error = FileNotFoundError if bad.missing else ValueError
            raise error(f"{message}; or pass on_error='skip' to leave such entries out") from (
                bad.__cause__
            )
        self.errors.append(SkippedEntry(line, file or bad.file, bad.reason, message))

    def _check_length(self, file: str, caption: str) -> None:
        if self.text_tokenizer is None:
            return
        length = self.text_tokenizer.max_length
        count = len(words(caption))
        if count > length - 2:
            raise BadEntry(
                "over-long caption",
                f"{shorten(file)}: the caption has {count:,} words ({len(caption):,} characters) "
                f"but the text tokenizer holds {length - 2} (text.max_length={length}, less "
                f"<bos> and <eos>): {shorten(caption)}; shorten it or raise text.max_length",
            )

    def _load(self, file: str, caption: str) -> Sample:
        kind, images = read_pictures(self.root, file, self.cfg.frames)
        return self._sample(kind, images, caption)

    def _sample(self, kind: str, images: list, caption: str) -> Sample:
        size = self.cfg.image_size
        pixels = torch.stack([square_pixels(image, size) for image in images])  # (t, 3, h, w)
        return Sample(kind, pixels[0] if kind == "image" else pixels, None, caption, [], None)

    def _report_skipped(self) -> None:
        if self.errors:
            reasons = Counter(e.reason for e in self.errors).most_common()
            kinds = ", ".join(f"{n} {reason}{'s' if n > 1 else ''}" for reason, n in reasons)
            summary = (
                f"{self.index}: skipped {self.skipped} of {self.entries} entries: {kinds} "
                f"(each in .errors)"
            )
            if not self.samples:
                raise ValueError(f"{summary}; no entries are left: {self.errors[0].message}")
            warnings.warn(summary, stacklevel=3)
        elif not self.samples:
            raise ValueError(f"{self.index} holds no entries; write one {EXAMPLE} per line")

    def _report_unknown_words(self) -> None:
        tok = self.text_tokenizer
        known = set(tok.stoi) if tok is not None else set(vocabulary(self.cfg))
        for sample in self.samples:
            self.unknown_words.update(w for w in words(sample.caption) if w not in known)
        if not self.unknown_words:
            return
        frequent = self.unknown_words.most_common(TOP_UNKNOWN)
        top = ", ".join(f"{shorten(w, WORD_LIMIT)} ({n})" for w, n in frequent)
        whose = "the text tokenizer's" if tok is not None else "the Shapes World's"
        warnings.warn(
            f"{self.index}: {self.unknown_words.total():,} caption words "
            f"({len(self.unknown_words):,} distinct) are not in {whose} vocabulary and will be "
            f"encoded as <unk>; most frequent: {top}. To give them tokens, build the tokenizer "
            f"with TextTokenizer.from_config(cfg.world, cfg.text, "
            f"extra_words=list(data.unknown_words))",
            stacklevel=3,
        )
