"""What a data folder's records say about each sample: its class and its direction of motion.

A folder has no world ground truth, but its `captions.jsonl` lines may carry labels beside the
caption, as `export_digits` writes them:

    {"file": "images/train_0007.png", "caption": "a handwritten seven", "digit": 7,
     "split": "train"}
    {"file": "videos/train_0007_left.gif", "caption": "a seven moves to the left", "digit": 7,
     "direction": "left", "split": "train"}

- the **class** is the first of `LABEL_FIELDS` ("label", "class", "digit") that any entry carries
  (a string or an integer); its distinct values, sorted (numbers by value), are the classes a
  probe learns (`nuwa_lab.recipes.label_probe`) and the task evaluation reads back;
- the **direction** is an entry's "direction" field, one of `DIRECTIONS`.

An entry without the field has no label (None): it is left out of what needs one. A folder whose
entries carry no class at all cannot train a label probe: `require_classes` raises naming the
fields it looked for and an example line.

| thing | code |
|---|---|
| the class field of a folder | `class_field(source)` ("digit" for the digits, None without one) |
| its classes | `class_names(source)` -> ("0", "1", ..., "9") |
| class indices of a split, -1 without one | `class_indices(source, kind, split)` (n,) int64 |
| directions of a split's videos | `directions(source, split)` -> ["left", None, ...] |
"""

from __future__ import annotations

from typing import Any

import torch

from nuwa_lab.world.folder_index import CAPTIONS
from nuwa_lab.world.source import KINDS, SPLIT_NAMES, FolderSource

LABEL_FIELDS = ("label", "class", "digit")  # the class field: the first any entry carries
DIRECTION_FIELD = "direction"
DIRECTIONS = ("left", "right", "up", "down")
LABELLED_EXAMPLE = '{"file": "cat.png", "caption": "a cat", "label": "cat"}'


def class_field(source: FolderSource) -> str | None:
    """The first of `LABEL_FIELDS` that some entry of the folder carries, else None."""
    carried = {name for rows in source.records.values() for r in rows for name in r}
    return next((name for name in LABEL_FIELDS if name in carried), None)


def label_of(record: dict[str, Any], name: str, source: FolderSource) -> str | None:
    """The class of one record as text ("7", "cat"), None when it has no `name` field."""
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(
            f"{source.root / CAPTIONS}: {record.get('file')!r} has {name} = {value!r}; a class "
            f"must be a string or an integer, like {LABELLED_EXAMPLE}"
        )
    return str(value)


def class_names(source: FolderSource) -> tuple[str, ...]:
    """The folder's distinct classes, sorted (by value when all are integers); () without any."""
    name = class_field(source)
    if name is None:
        return ()
    found = {
        label
        for rows in source.records.values()
        for record in rows
        if (label := label_of(record, name, source)) is not None
    }
    numeric = all(v.lstrip("-").isdigit() for v in found)
    return tuple(sorted(found, key=lambda v: (int(v), v) if numeric else (0, v)))


def require_classes(source: FolderSource, who: str) -> tuple[str, ...]:
    """`class_names`, or an error saying `who` needs a class per entry and how to give one."""
    classes = class_names(source)
    if len(classes) < 2:
        found = f"only the class {classes[0]!r}" if classes else "none"
        raise ValueError(
            f"{who} needs a class per entry (a {', '.join(map(repr, LABEL_FIELDS))} field) and "
            f"at least two classes: {source.root / CAPTIONS} has {found}; add the field to its "
            f"lines, e.g. {LABELLED_EXAMPLE}"
        )
    return classes


def _records(source: FolderSource, kind: str, split: str, edits: bool) -> list[dict[str, Any]]:
    if kind not in KINDS or split not in SPLIT_NAMES:
        raise ValueError(f"kind must be one of {KINDS} and split one of {SPLIT_NAMES}")
    if edits:  # the targets of edits.jsonl's pairs
        found = source.edits.get((kind, split))
        return [] if found is None else found.records
    return source.records.get((kind, split), [])


def class_indices(
    source: FolderSource, kind: str, split: str, *, edits: bool = False
) -> torch.Tensor:
    """(n,) int64: each item's index in `class_names(source)`, -1 where it has no class.
    edits: of the targets of the split's edit pairs (`nuwa_lab.world.edits`) instead."""
    name, classes = class_field(source), class_names(source)
    rows = _records(source, kind, split, edits)
    if name is None:
        return torch.full((len(rows),), -1, dtype=torch.long)
    labels = [label_of(r, name, source) for r in rows]
    unknown = sorted({v for v in labels if v is not None and v not in classes})
    if unknown:
        raise ValueError(
            f"{source.root}: edit targets of the classes {', '.join(map(repr, unknown))}, which "
            f"no entry of {CAPTIONS} has; the label probe knows {', '.join(classes)}"
        )
    return torch.tensor([-1 if v is None else classes.index(v) for v in labels], dtype=torch.long)


def directions(source: FolderSource, split: str, *, edits: bool = False) -> list[str | None]:
    """The "direction" field of each video of `split` (None where absent); others raise.
    edits: of the targets of the split's video edit pairs instead."""
    out = []
    for record in _records(source, "video", split, edits):
        value = record.get(DIRECTION_FIELD)
        if value is not None and value not in DIRECTIONS:
            where = "edits.jsonl" if edits else CAPTIONS
            shown = record.get("target") if edits else record.get("file")
            raise ValueError(
                f"{source.root / where}: {shown!r} has direction {value!r}; "
                f"a direction is one of {', '.join(DIRECTIONS)} (or leave the field out)"
            )
        out.append(value)
    return out
