r"""Does a sample show what was asked for? Attribute accuracy (the lab's CLIPSIM), pixel accuracy.

NÜWA scores text-to-visual results with CLIPSIM and sketch-to-visual results with "Detected PA", the
pixel accuracy of a segmenter run on the generated picture against the input sketch (§4.2). Here the
probe reads each object's attributes, and the lab's segmenter gives the class map.

`attribute_accuracy` compares the objects the probe reads with the asked-for objects as *sets*: a
sample is right on attribute a when the multiset of a-values asked for is contained in the multiset
read and the object counts agree; it is right on "all" when the asked objects can be matched one to
one with objects read that agree on every attribute asked (so binding counts: a red circle and a
blue square is not a blue circle and a red square). With one object per scene this is plain
accuracy. An asked object may name only some attributes (a parsed caption); the others are not
checked.

Axes: `b` samples, `t` frames, `h w` pixels.

| symbol | code | meaning |
|---|---|---|
| $\mathrm{acc}_a$ | `attribute_accuracy(...)[a]` | fraction of samples right on attribute a |
| $\mathrm{acc}_{all}$ | `attribute_accuracy(...)["all"]` | right on every asked attribute |
| PA | `pixel_accuracy(pred, target)` | $\frac{1}{N}\sum_i [\hat s_i = s_i]$ over all pixels |
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nuwa_lab.metrics.probe import AttributeReader, Segmenter


def _as_dict(obj: Any, attributes: Sequence[str]) -> dict[str, str]:
    """The named (not None) attributes of an ObjectAttributes or a dict (e.g. parse_caption's)."""
    get = obj.get if isinstance(obj, Mapping) else lambda a: getattr(obj, a, None)
    return {a: get(a) for a in attributes if get(a) is not None}


def _matches(asked: dict[str, str], read: dict[str, str]) -> bool:
    return all(read.get(a) == v for a, v in asked.items())


def _sample_scores(asked: list[dict], read: list[dict], attributes: Sequence[str]) -> dict:
    same_count = len(asked) == len(read)
    scores = {}
    for a in attributes:
        want = Counter(o[a] for o in asked if a in o)
        have = Counter(o.get(a) for o in read)
        scores[a] = same_count and not (want - have)
    scores["all"] = same_count and any(
        all(_matches(x, y) for x, y in zip(asked, perm, strict=True))
        for perm in itertools.permutations(read)
    )
    return scores


def attribute_accuracy(
    probe: AttributeReader, pixels: torch.Tensor, objects: Sequence[Any], *, batch_size: int = 256
) -> dict[str, float]:
    """Fraction of samples whose probe reading matches the asked-for objects, per attribute + "all".

    `objects[i]`: the objects asked for in sample i, a list of `ObjectAttributes` or attribute dicts
    (a single object may be given without the list). Keys: the probe's attributes ("shape",
    "colour", "size", "position", and "direction" for the video probe), then "all".
    """
    if len(objects) != len(pixels):
        raise ValueError(
            f"{len(pixels)} samples but {len(objects)} object lists; give one list "
            "of asked-for objects per sample"
        )
    attributes = list(probe.classes)
    read = probe.read(pixels, batch_size=batch_size)
    totals = dict.fromkeys([*attributes, "all"], 0)
    for asked, seen in zip(objects, read, strict=True):
        asked = [asked] if not isinstance(asked, (list, tuple)) else asked
        asked = [_as_dict(o, attributes) for o in asked]
        for key, ok in _sample_scores(asked, seen, attributes).items():
            totals[key] += int(ok)
    return {key: count / max(1, len(pixels)) for key, count in totals.items()}


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor, *, ignore_background=False) -> float:
    """Fraction of pixels whose class agrees; `ignore_background` counts only target != 0 pixels."""
    if pred.shape != target.shape:
        raise ValueError(
            f"class maps differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    pred, target = pred.cpu(), target.cpu()
    keep = target != 0 if ignore_background else torch.ones_like(target, dtype=torch.bool)
    if not keep.any():
        raise ValueError("no foreground pixels in the target: nothing to score")
    return float((pred[keep] == target[keep]).double().mean())


def segmentation_accuracy(
    segmenter: Segmenter, pixels: torch.Tensor, sketch: torch.Tensor, *, batch_size: int = 256
) -> dict[str, float]:
    """The lab's "Detected PA": segment `pixels` and compare with `sketch` (the asked class map).

    Returns `pixel_accuracy` (all pixels) and `foreground_accuracy` (pixels where the sketch has a
    shape, the harder part: most pixels are background).
    """
    pred = segmenter.predict(pixels, batch_size=batch_size)
    return {
        "pixel_accuracy": pixel_accuracy(pred, sketch),
        "foreground_accuracy": pixel_accuracy(pred, sketch, ignore_background=True),
    }
