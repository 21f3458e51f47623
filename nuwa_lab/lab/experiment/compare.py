"""Is one arm of an ablation better than another, or is the difference noise? Over seeds.

Each arm of an ablation (an attention pattern, a task mixture, ...) runs with several seeds. For a
metric, the arms' per-seed values give each arm's mean ± sd, and the difference of two arms' means
its 95% Welch interval (`nuwa_lab.metrics.intervals.difference_interval`):

$$ \\bar a - \\bar b \\;\\pm\\; t_{0.975,\\,\\nu}\\sqrt{s_a^2/n_a + s_b^2/n_b} $$

A difference "holds here" only when its interval excludes zero; otherwise it is "not resolved at
this budget" — more seeds or a longer budget might resolve it, one more lucky run would not.

| thing | code |
|---|---|
| what a sweep compares, against which arm | `COMPARISONS[sweep]`, `Comparison`s |
| every arm against the reference, per metric | `compare_arms(rows, comparison)` |
| the same per group (caption, rows), and as markdown | `comparison_tables`, `comparison_markdown` |
| one sentence per difference | `verdict_lines(rows, comparison, metrics)` |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nuwa_lab.lab.experiment.collect import format_cell, to_markdown
from nuwa_lab.metrics.intervals import HOLDS, difference_interval, seed_summary, verdict


@dataclass(frozen=True)
class Comparison:
    """What a sweep compares: the values of grid key `arm` against `reference`, per metric.

    `metrics`: (metric, lower_is_better) pairs. `within`: grid keys compared separately (each value
    of, e.g., BUDGET gets its own comparisons). `stand_in`: (arm value, key, missing, present):
    the runs of that arm at key=missing are its runs at key=present (the sweep file excludes the
    duplicate: full attention's equal-time run is its equal-steps run). `arm` may name a grid
    key or a logged metric (notebook 05 logs `arm`, e.g. "t2v @ time:t2v+t2i")."""

    arm: str
    reference: str
    metrics: tuple[tuple[str, bool], ...]
    within: tuple[str, ...] = ()
    stand_in: tuple[tuple[str, str, str, str], ...] = ()
    arms: tuple[str, ...] = ()  # the arms compared with the reference (empty: every other arm)


ATTENTION = Comparison(
    arm="ATTENTION",
    reference="nearby",
    metrics=(
        ("val_loss", True),
        ("test_pixel_accuracy", False),
        ("test_foreground_accuracy", False),
        ("test_acc_direction", False),
        ("test_lab_fvd", True),
    ),
    within=("BUDGET",),
    stand_in=(("full", "BUDGET", "time", "steps"),),
)
T2V_METRICS = (
    ("t2v_acc_all", False),
    ("t2v_acc_colour", False),
    ("t2v_acc_direction", False),
    ("val_nll_t2v", True),
    ("t2v_lab_fvd", True),
)


def _mixture(reference: str) -> Comparison:
    """T2V alone (at equal steps, equal T2V examples, equal time) against the mixture."""
    return Comparison(
        arm="arm",
        reference=reference,
        metrics=T2V_METRICS,
        arms=("t2v", f"t2v @ t2v_examples:{reference}", f"t2v @ time:{reference}"),
    )


# VQ-GAN (random-backbone LPIPS, or the probe's features as the perceptual term) against VQ-VAE;
# VQ-VAE has no perceptual term, so its runs stand in for it under both PERCEPTUAL values
TOKENIZER = Comparison(
    arm="TOKENIZER",
    reference="vqvae",
    metrics=(("lab_fid", True), ("psnr_db", False), ("ssim", False), ("probe_agreement", False)),
    within=("PERCEPTUAL",),
    stand_in=(("vqvae", "PERCEPTUAL", "probe", "lpips"),),
)

# per sweep, what its runs answer: every comparison is one table
COMPARISONS: dict[str, tuple[Comparison, ...]] = {
    "attention_ablation": (ATTENTION,),
    "attention_ablation_long": (ATTENTION,),
    "multitask_ablation": (_mixture("t2v+t2i"), _mixture("t2v+t2i+v2v")),
    "tokenizer_ablation": (TOKENIZER,),
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _values(rows: list[dict[str, Any]], key: str, arm: Any, metric: str) -> list[float]:
    """The per-seed values of `metric` of the rows whose `key` is `arm`."""
    return [float(r[metric]) for r in rows if r.get(key) == arm and _number(r.get(metric))]


def _with_stand_ins(rows: list[dict[str, Any]], comparison: Comparison) -> list[dict[str, Any]]:
    rows = list(rows)
    for arm, key, missing, present in comparison.stand_in:
        mine = [r for r in rows if r.get(comparison.arm) == arm]
        if not any(r.get(key) == missing for r in mine):
            rows += [{**r, key: missing} for r in mine if r.get(key) == present]
    return rows


def compare_arms(rows: list[dict[str, Any]], comparison: Comparison) -> list[dict[str, Any]]:
    """One row per (group of `within`, arm other than the reference, metric) with both arms'
    per-seed summaries, the difference arm - reference, its 95% interval and the verdict.

    Arms or metrics with fewer than 2 seeds on either side are left out (no interval exists)."""
    rows = _with_stand_ins(rows, comparison)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in comparison.within), []).append(row)
    out = []
    for group, members in groups.items():
        arms = list(dict.fromkeys(r.get(comparison.arm) for r in members))
        if comparison.reference not in arms:
            continue
        for metric, lower_is_better in comparison.metrics:
            ref = _values(members, comparison.arm, comparison.reference, metric)
            for arm in arms:
                mine = _values(members, comparison.arm, arm, metric)
                if arm == comparison.reference or len(mine) < 2 or len(ref) < 2:
                    continue
                if comparison.arms and arm not in comparison.arms:
                    continue
                diff = difference_interval(mine, ref)
                said = verdict(diff["low"], diff["high"])
                if said == HOLDS:
                    arm_better = (diff["difference"] < 0) == lower_is_better
                    said += f": {arm if arm_better else comparison.reference} better"
                out.append(
                    {
                        **dict(zip(comparison.within, group, strict=True)),
                        "metric": metric,
                        "arm": arm,
                        "arm mean ± sd": _summary(mine),
                        "reference": comparison.reference,
                        "reference mean ± sd": _summary(ref),
                        "difference [95%]": _interval(diff),
                        "seeds": f"{len(mine)} / {len(ref)}",
                        "verdict": said,
                        "difference": diff["difference"],
                        "low": diff["low"],
                        "high": diff["high"],
                    }
                )
    return out


def _interval(diff: dict[str, float]) -> str:
    low, high = format_cell(diff["low"], ".3g"), format_cell(diff["high"], ".3g")
    return f"{format_cell(diff['difference'], '+.3g')} [{low}, {high}]"


def _summary(values: list[float]) -> str:
    s = seed_summary(values)
    return f"{format_cell(s['mean'])} ± {format_cell(s['sd'], '.2g')}"


SHOWN = (
    "metric",
    "arm",
    "arm mean ± sd",
    "reference mean ± sd",
    "difference [95%]",
    "seeds",
    "verdict",
)


EXPLANATION = (
    "Difference = arm − reference, with its 95% Welch interval over seeds; "
    '"holds here" when the interval excludes zero, "not resolved at this budget" when it does not.'
)
NO_INTERVAL = "No difference can be given an interval yet: it needs at least 2 seeds of each arm."


def comparison_tables(
    rows: list[dict[str, Any]], comparison: Comparison
) -> list[tuple[str, list[dict[str, Any]]]]:
    """(caption, rows of `compare_arms`) per group of `within`; empty when no interval exists."""
    found = compare_arms(rows, comparison)
    tables = []
    for group in dict.fromkeys(tuple(r[k] for k in comparison.within) for r in found):
        subset = [r for r in found if tuple(r[k] for k in comparison.within) == group]
        label = ", ".join(f"{k}={v}" for k, v in zip(comparison.within, group, strict=True))
        caption = f"Against `{comparison.arm}={comparison.reference}`" + (
            f", {label}:" if label else ":"
        )
        tables.append((caption, subset))
    return tables


def comparison_markdown(rows: list[dict[str, Any]], comparison: Comparison) -> str:
    """`comparison_tables` as markdown, or why there is none."""
    tables = comparison_tables(rows, comparison)
    if not tables:
        return NO_INTERVAL
    parts = []
    for caption, subset in tables:
        parts += [caption, to_markdown(subset, list(SHOWN))]
    return "\n\n".join([*parts, EXPLANATION])


def verdict_lines(
    rows: list[dict[str, Any]], comparison: Comparison, metrics: tuple[str, ...] | None = None
) -> list[str]:
    """One sentence per difference: "val_loss, BUDGET=steps: full − nearby = +0.14 [0.08, 0.2]
    over 3 / 3 seeds: holds here: nearby better" (only `metrics`, when given)."""
    lines = []
    for row in compare_arms(rows, comparison):
        if metrics is not None and row["metric"] not in metrics:
            continue
        where = "".join(f", {k}={row[k]}" for k in comparison.within)
        lines.append(
            f"{row['metric']}{where}: {row['arm']} − {row['reference']} = "
            f"{row['difference [95%]']} over {row['seeds']} seeds: {row['verdict']}"
        )
    return lines
