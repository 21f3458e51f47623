r"""How sure is a task's mean? Per-item values of its mean metrics, and their bootstrap intervals.

A rate over items (`acc_all`, `edit_success`) gets a Wilson interval from its count alone. A mean
over items (a PSNR, a pixel accuracy) does not: its spread depends on how much the items differ.
So the task's per-item values are kept and resampled (`metrics.intervals.bootstrap_interval`, 2,000
draws of n items with replacement): the 2.5th and 97.5th percentiles of the statistic over the
draws are its 95% interval, logged as `<metric>_low` / `<metric>_high` beside the metric.

| task | metric | one item's value | statistic over items |
|---|---|---|---|
| S2I / S2V | `pixel_accuracy` | (pixels right, pixels) | $\sum \text{right} / \sum \text{pixels}$ |
| S2I / S2V | `foreground_accuracy` | (shape pixels right, shape pixels) | the same ratio |
| I2I | `psnr_db` | PSNR of the image, capped | mean |
| V2V | `psnr_gain_from_frame2_db` | mean over frames 2.. of PSNR(ours) − PSNR(copy-last) | mean |
| TI2I / TV2V | `psnr_preserved_db` | PSNR of the kept part (not edited, or given) | mean |
| TI2I / TV2V | `preservation_gap_db` | PSNR kept by the tokenizer's round trip − ours | mean |
| TI2I | `given_gap_db`, `redrawn_gap_db` | that gap on the given tokens' pixels / the rest | mean |

Ratios are pooled the way the metric itself is (every pixel counts once), so the interval is the
interval of the number the table shows. PSNRs are capped at `PSNR_CAP_DB` as in the means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nuwa_lab.metrics import psnr
from nuwa_lab.metrics.intervals import bootstrap_interval
from nuwa_lab.tasks.metrics import PSNR_CAP_DB, outside_edit_parts, region_psnr


def _pooled_ratio(pairs: np.ndarray) -> float:
    return float(pairs[:, 0].sum() / pairs[:, 1].sum())


def _mean(values: np.ndarray) -> float:
    return float(values.mean())


def _capped(db: Tensor) -> np.ndarray:
    return db.double().clamp(max=PSNR_CAP_DB).numpy()


def _pixel_counts(pred: Tensor, sketch: Tensor, foreground: bool) -> np.ndarray:
    """(right, counted) pixels per item: (n, 2)."""
    pred, sketch = pred.cpu(), sketch.cpu()
    keep = sketch != 0 if foreground else torch.ones_like(sketch, dtype=torch.bool)
    right = ((pred == sketch) & keep).flatten(1).sum(1)
    return torch.stack([right, keep.flatten(1).sum(1)], dim=1).double().numpy()


def _kept_region(name: str, inputs: dict[str, Any], source: Tensor) -> Tensor:
    if name == "ti2i":
        return ~inputs["edit_region"]
    frames = torch.arange(source.shape[1])
    first = torch.as_tensor(list(inputs["given_frames"]))
    return (frames[None] < first[:, None])[:, :, None, None].expand(
        *source.shape[:2], *source.shape[-2:]
    )


def item_values(
    name: str,
    inputs: dict[str, Any],
    pixels: Tensor,
    *,
    segmentation: Tensor | None = None,
    reconstruction: Tensor | None = None,
    fixed: Tensor | None = None,
) -> dict[str, tuple[np.ndarray, Callable[[np.ndarray], float]]]:
    """Per task metric: (per-item values, the statistic that turns them into the metric)."""
    out: dict[str, tuple[np.ndarray, Callable[[np.ndarray], float]]] = {}
    if name in ("s2i", "s2v") and segmentation is not None:
        sketch = inputs["sketch"]
        out["pixel_accuracy"] = (_pixel_counts(segmentation, sketch, False), _pooled_ratio)
        fg = _pixel_counts(segmentation, sketch, True)
        if fg[:, 1].sum() > 0:
            out["foreground_accuracy"] = (fg, _pooled_ratio)
    elif name == "i2i":
        out["psnr_db"] = (_capped(psnr(pixels, inputs["pixels"])), _mean)
    elif name == "v2v":
        truth = inputs["pixels"]
        given = inputs["given_frames"]
        g = given if isinstance(given, int) else int(given[0])
        last = truth[:, g - 1]
        later = range(g + 1, truth.shape[1])  # predicted frames 2, 3, ...
        if len(later):
            gains = [
                _capped(psnr(pixels[:, t], truth[:, t])) - _capped(psnr(last, truth[:, t]))
                for t in later
            ]
            out["psnr_gain_from_frame2_db"] = (np.mean(gains, axis=0), _mean)
    elif name in ("ti2i", "tv2v"):
        source = inputs["pixels"]
        keep = _kept_region(name, inputs, source)
        ours = _capped(region_psnr(pixels, source, keep))
        out["psnr_preserved_db"] = (ours, _mean)
        if reconstruction is not None:
            kept = _capped(region_psnr(reconstruction, source, keep))
            out["preservation_gap_db"] = (kept - ours, _mean)
        if name == "ti2i" and reconstruction is not None and fixed is not None:
            for part, region in outside_edit_parts(inputs["edit_region"], fixed).items():
                ours = _capped(region_psnr(pixels, source, region))
                kept = _capped(region_psnr(reconstruction, source, region))
                out[f"{part}_gap_db"] = (kept - ours, _mean)
    return out


def item_intervals(
    values: dict[str, tuple[np.ndarray, Callable[[np.ndarray], float]]], *, seed: int = 0
) -> dict[str, float]:
    """`<metric>`, `<metric>_low` and `<metric>_high` for every metric of `item_values` with at
    least two items (NaN items, e.g. an empty region, are left out)."""
    out: dict[str, float] = {}
    for metric, (items, statistic) in values.items():
        items = np.asarray(items, dtype=np.float64)
        items = items[~np.isnan(items).reshape(len(items), -1).any(axis=1)]
        if len(items) < 2:
            continue
        low, high = bootstrap_interval(items, statistic, seed=seed)
        out[metric] = statistic(items)
        out[f"{metric}_low"], out[f"{metric}_high"] = low, high
    return out
