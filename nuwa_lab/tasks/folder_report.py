"""Tables of a data folder's measures: each number with its 95% interval, and the digits' targets.

    rows = interval_rows(ev.metrics, ["acc_class", "label_fid"])   # for rows_table(...)
    table, reached = folder_targets_table(flat, preset="tiny", cached=["vqgan"])

Every measure on a folder carries `<key>_low` / `<key>_high` (`nuwa_lab.tasks.folder_metrics`);
these tables print them as "value [low, high]", rates as percentages.

The targets are the lab's goals on scikit-learn's digits at the tiny preset (held-out test scans):

| measure | target | key of the flat metrics |
|---|---|---|
| the tokenizer's reconstruction PSNR | >= 28 dB | `recon_psnr_db` |
| the label probe reads the reconstructions right | >= 95% | `recon_acc_class_recon` |
| T2I: the probe reads the asked digit | >= 80% | `t2i_acc_class` |
| T2V: digit and direction both right | >= 70% | `t2v_acc_all` |
| the notebook's wall time | <= 15 min | `notebook_minutes` |

A target is "met" when the measured value meets it; "met, interval clear" when the whole 95%
interval does; at another preset than tiny the table says the targets do not apply. The wall time
is judged only on a run that trained everything itself: with artifacts loaded from the cache
(`cached`) it measures the loading, and the table says so instead of a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nuwa_lab.metrics.intervals import format_interval


@dataclass(frozen=True)
class FolderTarget:
    measure: str
    key: str  # in the flat metrics: "<section>_<metric>"
    target: float
    higher_is_better: bool = True
    unit: str = ""  # "%" for a rate in [0, 1], "dB", "min"


FOLDER_TARGETS = (
    FolderTarget("tokenizer: reconstruction PSNR, test scans", "recon_psnr_db", 28.0, True, "dB"),
    FolderTarget("probe reads the reconstructions right", "recon_acc_class_recon", 0.95, True, "%"),
    FolderTarget("T2I: the probe reads the asked digit", "t2i_acc_class", 0.80, True, "%"),
    FolderTarget("T2V: digit and direction right", "t2v_acc_all", 0.70, True, "%"),
    FolderTarget("the notebook's wall time", "notebook_minutes", 15.0, False, "min"),
)  # fmt: skip
TARGET_PRESET = "tiny"


def shown(metrics: dict[str, Any], key: str, *, percent: bool | None = None) -> str:
    """`key` as text: "90.2% [86.0, 93.4]" for a rate, "31.5 [30.1, 32.8]", or the bare value."""
    value = metrics.get(key)
    if value is None or isinstance(value, str):
        return "–" if value is None else value
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    rate = key.startswith("acc") or "_acc" in key if percent is None else percent
    low, high = metrics.get(f"{key}_low"), metrics.get(f"{key}_high")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{100 * value:.1f}%" if rate else f"{value:.4g}"
    return format_interval(value, low, high, percent=rate)


def interval_rows(metrics: dict[str, Any], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per key: the measure, its value with its 95% interval, and the items scored."""
    rows = []
    for key in keys:
        n = metrics.get(f"{key}_n", metrics.get("n_items", metrics.get("n_pictures", "")))
        rows.append({"measure": key, "value [95% interval]": shown(metrics, key), "n": n})
    return rows


def flat_metrics(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{"t2i": {"acc_class": ..}, ...} -> {"t2i_acc_class": .., ...} (numbers and strings)."""
    return {f"{name}_{k}": v for name, scores in sections.items() for k, v in scores.items()}


def folder_targets_table(
    flat: dict[str, Any], *, preset: str, cached: Sequence[str] = ()
) -> tuple[str, dict[str, bool]]:
    """A markdown table of `FOLDER_TARGETS` against the measured `flat` metrics, and
    {"target_<key>": met} for each target judged. `cached`: the artifacts this run loaded instead
    of training (the wall time is then not judged)."""
    lines = ["| measure | target | measured | met |", "|---|---|---|---|"]
    met: dict[str, bool] = {}
    for t in FOLDER_TARGETS:
        sign = ">=" if t.higher_is_better else "<="
        goal = f"{sign} {100 * t.target:.0f}%" if t.unit == "%" else f"{sign} {t.target:g} {t.unit}"
        value = flat.get(t.key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            lines.append(f"| {t.measure} | {goal} | not measured | – |")
            continue
        if t.unit == "min" and cached:
            lines.append(
                f"| {t.measure} | {goal} | {shown(flat, t.key)} | not judged: "
                f"{', '.join(cached)} loaded from the cache (judged on a run that trains all) |"
            )
            continue
        ok = value >= t.target if t.higher_is_better else value <= t.target
        bound = flat.get(f"{t.key}_low" if t.higher_is_better else f"{t.key}_high")
        clear = bound is not None and (
            bound >= t.target if t.higher_is_better else bound <= t.target
        )
        verdict = ("met, interval clear" if clear else "met") if ok else "not met"
        if preset != TARGET_PRESET:
            verdict = f"({verdict}; the targets are for {TARGET_PRESET})"
        lines.append(
            f"| {t.measure} | {goal} | {shown(flat, t.key, percent=t.unit == '%')} | {verdict} |"
        )
        met[f"target_{t.key}"] = bool(ok)
    return "\n".join(lines), met
