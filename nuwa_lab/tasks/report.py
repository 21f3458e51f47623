"""Tables of the task evaluations: metrics side by side, headline numbers, the tiny-preset targets.

`headline_metrics(test, held_out)` gives every task the same few names (`accuracy`,
`pixel_accuracy`, `psnr`, `edit_success`, each also `held_out_...`) so the tasks sweep and the
results notebook can compare the eight tasks in one table. `TARGETS` are the lab's goals at the
tiny preset; `targets_table` says which were met by a given evaluation (at smoke they mean nothing).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nuwa_lab.metrics import psnr
from nuwa_lab.metrics.intervals import rate_interval
from nuwa_lab.tasks.metrics import mean_psnr_db, region_psnr
from nuwa_lab.tasks.spec import get_task
from nuwa_lab.world.datasets import hidden_regions

# task -> [(metric, split, comparison, value, meaning)]
# the lab's addition: an output with no object at all meets the 90% pixel accuracy (background
# covers ~92% of the pixels), so the shape's own pixels are scored too
FOREGROUND_TARGET = "the shape's own pixels right (the lab's target: a blank output scores 0)"
# metrics that are a share of the evaluated items (one yes / no per item): their 95% interval is
# Wilson's over the n items (`nuwa_lab.metrics.intervals.rate_interval`)
ITEM_RATES = ("acc_all", "direction_accuracy", "edit_success")

TARGETS: dict[str, list[tuple[str, str, str, float, str]]] = {
    "t2i": [
        ("acc_all", "test", ">=", 0.90, "all attributes right, test captions"),
        ("acc_all", "held_out", ">=", 0.60, "all attributes right, held-out combinations"),
    ],
    "t2v": [("acc_all", "test", ">=", 0.80, "all attributes right (direction included)")],
    "s2i": [
        ("pixel_accuracy", "test", ">=", 0.90, "segmenter pixel accuracy vs the sketch"),
        ("foreground_accuracy", "test", ">=", 0.50, FOREGROUND_TARGET),
    ],
    "s2v": [
        ("pixel_accuracy", "test", ">=", 0.90, "segmenter pixel accuracy vs the sketch"),
        ("foreground_accuracy", "test", ">=", 0.50, FOREGROUND_TARGET),
    ],
    "i2i": [("given_tokens_kept", "test", ">=", 1.0, "every visible token comes back unchanged")],
    "v2v": [
        ("beats_copy_last_from_frame2", "test", ">=", 1.0, "PSNR above copy-last from frame 2"),
        ("direction_accuracy", "test", ">=", 0.90, "predicted frames move the object the true way"),
    ],
    "ti2i": [
        ("edit_success", "test", ">=", 0.70, "the probe reads the new attribute"),
        (
            "preservation_gap_db",
            "test",
            "<=",
            2.0,
            "PSNR outside the edit region within 2 dB of the tokenizer's round trip",
        ),
    ],  # fmt: skip
    "tv2v": [
        ("edit_success", "test", ">=", 0.70, "the probe reads the new direction"),
        ("given_tokens_kept", "test", ">=", 1.0, "the given frames' tokens come back unchanged"),
    ],
}


def _with_derived(metrics: dict[str, float]) -> dict[str, float]:
    out = dict(metrics)
    if "psnr_preserved_tokenizer_db" in out:
        out["preservation_gap_db"] = out["psnr_preserved_tokenizer_db"] - out["psnr_preserved_db"]
    for part in ("given", "redrawn"):  # TI2I: the gap's two parts (`metrics.outside_edit_parts`)
        if f"psnr_{part}_tokenizer_db" in out:
            out[f"{part}_gap_db"] = out[f"psnr_{part}_tokenizer_db"] - out[f"psnr_{part}_db"]
    return out


def headline_metrics(test: Any, held_out: Any | None = None) -> dict[str, float]:
    """The same few names for every task: accuracy, pixel_accuracy, psnr, edit_success."""
    out: dict[str, float] = {}
    for prefix, ev in (("", test), ("held_out_", held_out)):
        if ev is None:
            continue
        m = ev.metrics
        picks = {
            "accuracy": m.get("acc_all"),
            "pixel_accuracy": m.get("pixel_accuracy"),
            "edit_success": m.get("edit_success"),
            "psnr": m.get("psnr_preserved_db", m.get("psnr_db")),
        }
        frames = [v for k, v in m.items() if k.startswith("psnr_frame")]
        if frames:  # V2V: the mean PSNR of the predicted frames
            picks["psnr"] = sum(frames) / len(frames)
        out.update({prefix + k: v for k, v in picks.items() if v is not None})
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def metrics_table(*evaluations: Any) -> str:
    """A Markdown table: one row per metric, one column per evaluation (its split)."""
    names = list(dict.fromkeys(k for ev in evaluations for k in ev.metrics))
    header = "| metric | " + " | ".join(ev.split for ev in evaluations) + " |"
    lines = [header, "|---|" + "---|" * len(evaluations)]
    for name in names:
        cells = [_fmt(ev.metrics.get(name, "")) for ev in evaluations]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reranking_table(single: Any, ranked: Any) -> str:
    """A Markdown table of an edit's measures from single samples beside the re-ranked ones
    (`nuwa_lab.tasks.rerank`), each with its 95% interval: Wilson's over the items for the edit
    success, the bootstrap's over the items for a gap."""
    n = ranked.sampling.get("candidates", 1)
    lines = [f"| measure | one sample | best of {n} |", "|---|---|---|"]
    for key in ("edit_success", "preservation_gap_db", "given_gap_db", "redrawn_gap_db"):
        cells = []
        for ev in (single, ranked):
            value = ev.metrics.get(key, math.nan)
            if key == "edit_success":
                low, high = rate_interval(value, int(ev.metrics["n_items"]))
                cells.append(f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]")
            else:  # a split without the pixels of a part has no gap there: nan
                low, high = (ev.metrics.get(f"{key}_{end}", math.nan) for end in ("low", "high"))
                cells.append(f"{value:.2f} dB [{low:.2f}, {high:.2f}]")
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(task: str, *evaluations: Any) -> tuple[str, dict[str, bool]]:
    """(Markdown table of the tiny-preset targets of `task`, {"target_<metric>_<split>": met})."""
    spec = get_task(task)
    by_split = {ev.split: _with_derived(ev.metrics) for ev in evaluations}
    lines = ["| target | split | goal | reached | met |", "|---|---|---|---|---|"]
    met: dict[str, bool] = {}
    for metric, split, op, goal, meaning in TARGETS[spec.name]:
        value = by_split.get(split, {}).get(metric)
        ok = None
        if value is not None and not math.isnan(value):
            ok = value >= goal if op == ">=" else value <= goal
            met[f"target_{metric}_{split}"] = bool(ok)
        mark = {True: "yes", False: "**no**", None: "not measured"}[ok]
        lines.append(f"| {meaning} (`{metric}`) | {split} | {op} {goal} | {_fmt(value)} | {mark} |")
    return "\n".join(lines), met


def completion_by_hidden_part(ev: Any) -> list[dict[str, Any]]:
    """I2I per hidden part (left/right/top/bottom half, quadrants): count, hidden-region PSNR, and
    the share of hidden tokens that come *before* every visible token in raster order (the ones a
    raster decoder generates blind)."""

    names = ("left half", "right half", "top half", "bottom half", "top left quadrant",
             "top right quadrant", "bottom left quadrant", "bottom right quadrant")  # fmt: skip
    visible = ev.inputs["visible"]
    regions = hidden_regions(visible.shape[-1])
    truth, gen = ev.inputs["pixels"], ev.output.pixels
    psnrs = region_psnr(gen, truth, ~visible)
    rows = []
    for name, region in zip(names, regions, strict=True):
        rows_i = [i for i in range(len(visible)) if torch.equal(~visible[i], region)]
        if not rows_i:
            continue
        fixed = ev.output.fixed[rows_i[0]].flatten()
        first_visible = int(fixed.nonzero()[0]) if bool(fixed.any()) else fixed.numel()
        blind = float((~fixed[:first_visible]).sum() / max(1, int((~fixed).sum())))
        rows.append({
            "hidden": name, "samples": len(rows_i),
            "psnr_hidden_db": mean_psnr_db(psnrs[rows_i]), "generated_blind": blind,
        })  # fmt: skip
    return rows


def rows_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of a list of dicts (the keys of the first row are the columns)."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def breakdown(ev: Any) -> list[dict[str, Any]]:
    """The task's metrics split one level further (rows for a table or `breakdown_figure`):
    T2I / T2V per attribute, S2I / S2V per frame, I2I per hidden part, V2V / TV2V per frame (model
    beside copy-the-last-frame / the target), TI2I per edited attribute."""
    spec, m = get_task(ev.task), ev.metrics
    if spec.name in ("t2i", "t2v"):
        return [{"attribute": k[4:], "accuracy": v} for k, v in m.items() if k.startswith("acc_")]
    if spec.name == "i2i":
        return completion_by_hidden_part(ev)
    if spec.name == "ti2i":
        return [
            {"edited": k[len("edit_success_") :], "edit_success": v}
            for k, v in m.items()
            if k.startswith("edit_success_")
        ]
    if spec.name in ("s2i", "s2v"):
        return _per_frame_pixel_accuracy(ev)
    return _per_frame_psnr(ev)


def _per_frame_pixel_accuracy(ev: Any) -> list[dict[str, Any]]:
    if ev.segmentation is None:
        return []
    pred, sketch = ev.segmentation, ev.inputs["sketch"]
    if pred.dim() == 3:
        pred, sketch = pred[:, None], sketch[:, None]
    return [
        {"frame": t, "pixel_accuracy": float((pred[:, t] == sketch[:, t]).double().mean())}
        for t in range(pred.shape[1])
    ]


def _per_frame_psnr(ev: Any) -> list[dict[str, Any]]:

    spec = get_task(ev.task)
    truth, gen = ev.inputs[spec.target], ev.output.pixels
    given = int(ev.inputs["given_frames"][0])
    last = ev.inputs["pixels"][:, given - 1]
    rows = []
    for t in range(truth.shape[1]):
        row = {
            "frame": t,
            "given": t < given,
            "psnr_db": mean_psnr_db(psnr(gen[:, t], truth[:, t])),
        }
        row["psnr_copy_last_db"] = mean_psnr_db(psnr(last, truth[:, t])) if t >= given else math.nan
        rows.append(row)
    return rows


def logged_metrics(test: Any, held_out: Any | None = None) -> dict[str, float]:
    """What a task notebook logs: every metric as `<split>_<name>`, then the headline names."""
    out = dict(test.prefixed())
    if held_out is not None:
        out.update(held_out.prefixed())
    out.update(headline_metrics(test, held_out))
    return out
