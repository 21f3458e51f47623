"""A data folder's index, `captions.jsonl`: its entries, the files it names, its content hash.

`FolderDataset` (`folders.py`) turns the entries into pictures; `source.py` splits them and keys the
artifacts trained on them by `content_hash`. This module only reads bytes: no pixels, no splits.

`content_hash(path)` is the sha256 of captions.jsonl and of the bytes of every file it names (each
image of a named frame folder), in name order. It is kept in memory per (path, size and mtime of
every file), so asking again is one `stat` per file; the stored hash is always of bytes.

| thing | code |
|---|---|
| the index of a folder, or an error saying how to make it | `index_of(root)` |
| (line, parsed entry) of each non-blank line | `entries(index)` |
| the files the index names | `named_files(root, index)` |
| the folder's content hash | `content_hash(root)` |
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nuwa_lab.world.folders import EXAMPLE, IMAGE_SUFFIXES

CAPTIONS = "captions.jsonl"


def index_of(root: Path) -> Path:
    """`root/captions.jsonl`, or an error saying what is missing and how to make it."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"world.source names the folder {root}, which does not exist; create it with a "
            f"{CAPTIONS} (one {EXAMPLE} per line), or export the digits there "
            f"(python -m nuwa_lab train --data {root} --export-digits)"
        )
    index = root / CAPTIONS
    if not index.is_file():
        raise FileNotFoundError(
            f"{index} not found; a data folder needs a {CAPTIONS} with one {EXAMPLE} per line"
        )
    return index


def entries(index: Path) -> list[tuple[int, dict[str, Any] | None]]:
    """(line number, the parsed object or None when unreadable) of every non-blank line, read as
    `FolderDataset` reads them (so entry k is its sample k when nothing is skipped)."""
    out = []
    for number, raw in enumerate(index.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw.decode("utf-8").removeprefix("\ufeff"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            entry = None
        out.append((number, entry if isinstance(entry, dict) else None))
    return out


def named_files(root: Path, index: Path) -> list[Path]:
    """The files `index` names that exist: each file, and each image of a named frame folder."""
    found: set[Path] = set()
    for _, entry in entries(index):
        name = entry.get("file") if entry else None
        if not isinstance(name, str) or not name.strip():
            continue
        path = root / name
        if path.is_dir():
            found.update(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.add(path)
    return sorted(found)


_HASHES: dict[tuple, str] = {}


def content_hash(root: str | Path) -> str:
    """sha256 (16 hex digits) of captions.jsonl and the bytes of every file it names, in name order.

    Cached per (folder, size and mtime of each file): a file rewritten changes its mtime, so it is
    read and hashed again; the stored hash is always of bytes, never of sizes and times."""
    root = Path(root)
    index = index_of(root)
    files = [index, *named_files(root, index)]
    stats = [p.stat() for p in files]
    key = (
        str(root.resolve()),
        tuple((str(p), s.st_size, s.st_mtime_ns) for p, s in zip(files, stats, strict=True)),
    )
    if key not in _HASHES:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        _HASHES[key] = digest.hexdigest()[:16]
    return _HASHES[key]
