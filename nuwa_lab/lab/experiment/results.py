"""Results across runs, for notebook 10 and the report: tables and plots of collected sweeps.

Everything here reads run folders (`collect`), keeps only the runs of one preset, and degrades to a
message, never an error, when a sweep has not been run: notebook 10 must run at the smoke preset on
a fresh checkout and say what exists.

| question | code |
|---|---|
| what has been run at this preset? | `overview(preset)` |
| a sweep as one table (settings as columns, the paper beside), then its arms' differences with
  95% intervals over seeds (`compare`) | `sweep_markdown(name, preset)` |
| the verdict on each difference, one sentence each | `sweep_verdicts(name, preset, metrics)` |
| metrics per setting, mean ± std over seeds | `plot_metrics(rows, by, metrics)` |
| quality against time and memory (attention ablation) | `plot_tradeoff(rows, by, quality, costs)` |
| the runs of one budget (equal steps / equal time) | `at_budget(rows, "steps")` |
| what each notebook of the lab logged | `lab_markdown(preset)` |
| the task targets over seeds (sweep `task_seeds`) | `task_seeds_markdown(preset)` |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.archive import results_dir
from nuwa_lab.lab.experiment.collect import (
    Collection,
    aggregate,
    collect,
    flatten,
    format_cell,
    is_seed_key,
    pivot,
    setting_label,
    to_markdown,
)
from nuwa_lab.lab.experiment.compare import COMPARISONS, comparison_markdown, verdict_lines
from nuwa_lab.lab.experiment.lab_runs import lab_folder, read_lab_runs, task_target_rows
from nuwa_lab.lab.experiment.paper import NOT_COMPARABLE, SWEEP_REFERENCES
from nuwa_lab.lab.experiment.runner import METRICS_FILE, RUN_FILE, default_runs_dir, read_json
from nuwa_lab.lab.experiment.sweep import find_root
from nuwa_lab.lab.experiment.task_seeds import (
    targets_over_seeds,
    task_seed_runs,
    where_seeds_ran,
)

SWEEPS = (
    "tokenizer_ablation",
    "attention_ablation",
    "attention_ablation_long",
    "tokenizer_compression",
    "multitask_ablation",
    "tasks",
    "task_seeds",
)


def _runs_dir(runs_dir: str | Path | None) -> Path:
    return Path(runs_dir) if runs_dir else default_runs_dir(find_root(Path.cwd()))


def sweep_rows(name: str, preset: str, *, runs_dir: str | Path | None = None) -> Collection:
    """The finished (and, in `.failed`, the failed) runs of sweep `name` at `preset`."""
    rows = collect(name, runs_dir=_runs_dir(runs_dir))
    keep = [r for r in rows if r.get("PRESET", preset) == preset]
    failed = [r for r in rows.failed if r.get("PRESET", preset) == preset]
    return Collection(
        keep,
        name=name,
        folder=rows.folder,
        failed=failed,
        pending=rows.pending,
        folders=rows.folders,
    )


def grid_keys(name: str, *, runs_dir: str | Path | None = None) -> list[str]:
    """The grid keys of a sweep (from the sweep.json the runner writes), seeds excluded."""
    runs_dir = _runs_dir(runs_dir)
    info = read_json(runs_dir / name / "sweep.json")
    info = info or read_json(results_dir(runs_dir) / name / "sweep.json") or {}
    return [k for k in info.get("grid", {}) if not is_seed_key(k)]


def sweep_tables(
    name: str, rows: list[dict[str, Any]], keys: list[str]
) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    """(notebook, rows, columns) per notebook of the sweep: settings as columns, metrics as rows,
    and a row marked **paper** wherever the paper measured the same settings."""
    tables = []
    for notebook in dict.fromkeys(r["notebook"] for r in rows):
        subset = [r for r in rows if r["notebook"] == notebook]
        table, columns = pivot(subset, keys)
        settings = aggregate(subset, by=keys, metrics=[])
        for ref in SWEEP_REFERENCES:
            if ref.sweep == name and ref.key in keys:
                row = {"": f"**paper**: {ref.measure}"}
                for setting in settings:
                    row[setting_label(setting, keys)] = ref.values.get(str(setting[ref.key]))
                table.append(row)
        tables.append((notebook, table, columns))
    return tables


def sweep_markdown(name: str, preset: str, *, runs_dir: str | Path | None = None) -> str:
    """The sweep's tables as markdown, or how to run it when it has no finished run at `preset`."""
    rows = sweep_rows(name, preset, runs_dir=runs_dir)
    if not rows:
        return (
            f"**{name}**: no finished run at preset `{preset}` yet. Run it with "
            f"`python -m nuwa_lab sweep experiments/{name}.yaml --preset {preset}`."
        )
    parts = []
    tables = sweep_tables(name, rows, grid_keys(name, runs_dir=runs_dir))
    for notebook, table, columns in tables:
        if len(tables) > 1:
            parts.append(f"`{notebook}`:")
        parts.append(to_markdown(table, columns))
    for comparison in COMPARISONS.get(name, ()):
        parts.append(comparison_markdown(rows, comparison))
    if any(ref.sweep == name for ref in SWEEP_REFERENCES):
        parts.append(f"> {NOT_COMPARABLE}: compare the ordering of the settings, not the values.")
    if rows.failed:
        parts.append(f"{len(rows.failed)} runs failed: " + ", ".join(r["run"] for r in rows.failed))
    return "\n\n".join(parts)


def sweep_verdicts(
    name: str,
    preset: str,
    metrics: tuple[str, ...] | None = None,
    *,
    runs_dir: str | Path | None = None,
) -> str:
    """The sweep's differences against its reference arm as sentences with their 95% intervals
    and verdicts (`compare.verdict_lines`), or why there are none."""
    if name not in COMPARISONS:
        return f"**{name}**: no comparison is declared for this sweep."
    rows = sweep_rows(name, preset, runs_dir=runs_dir)
    lines = [line for c in COMPARISONS[name] for line in verdict_lines(rows, c, metrics)]
    if not lines:
        return f"**{name}**: no difference with an interval yet (at least 2 seeds per arm needed)."
    return "\n".join(f"- {line}" for line in lines)


def at_budget(rows: list[dict[str, Any]], budget: str = "steps") -> list[dict[str, Any]]:
    """The runs of an attention sweep at one BUDGET ("steps" or "time"); a run without the
    parameter trained at equal steps."""
    return [r for r in rows if r.get("BUDGET", "steps") == budget]


def overview(preset: str, *, runs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per sweep (and the lab): finished / failed runs at `preset`, and how to run it."""
    out = []
    lab = collect(f"lab-{preset}", runs_dir=_runs_dir(runs_dir))
    out.append(
        {
            "runs of": f"lab-{preset}",
            "finished": len(lab),
            "failed": len(lab.failed),
            "command": f"python -m nuwa_lab lab --preset {preset}",
        }
    )
    for name in SWEEPS:
        rows = sweep_rows(name, preset, runs_dir=runs_dir)
        out.append(
            {
                "runs of": name,
                "finished": len(rows),
                "failed": len(rows.failed),
                "command": f"python -m nuwa_lab sweep experiments/{name}.yaml --preset {preset}",
            }
        )
    return out


def lab_task_targets(preset: str, *, runs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The eight tasks of `lab-<preset>` (notebooks 06-09 per modality) against their targets."""

    runs_dir = _runs_dir(runs_dir)
    folder = lab_folder(runs_dir, preset)
    if not folder.is_dir():
        return []
    return task_target_rows(read_lab_runs(folder, runs_dir.parent.parent))


def task_seeds_markdown(preset: str, *, runs_dir: str | Path | None = None) -> str:
    """The task targets over seeds (`task_seeds.targets_over_seeds`) as markdown, or how to run
    the sweep."""
    runs = task_seed_runs(_runs_dir(runs_dir), preset)
    rows = targets_over_seeds(runs)
    if not rows:
        return (
            f"**task_seeds**: no finished run at preset `{preset}` yet. Run it with "
            f"`python -m nuwa_lab sweep experiments/task_seeds.yaml --preset {preset}`."
        )
    return f"{to_markdown(rows)}\n\nRan on: {where_seeds_ran(runs)}."


def lab_markdown(preset: str, *, runs_dir: str | Path | None = None, max_metrics: int = 12) -> str:
    """What each notebook of `lab-<preset>` logged (its first `max_metrics` scalar metrics)."""
    folder = _runs_dir(runs_dir) / f"lab-{preset}"
    parts = []
    for run_dir in sorted(p for p in folder.glob("[0-9][0-9]_*") if p.is_dir()):
        record = read_json(run_dir / RUN_FILE) or {}
        status = record.get("status", "unfinished")
        metrics = flatten(read_json(run_dir / METRICS_FILE) or {}) if status == "ok" else {}
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
        shown = list(scalars.items())[:max_metrics]
        line = f"**{run_dir.name}** ({status}"
        line += f", {record['wall_time_s']:.0f} s)" if record.get("wall_time_s") else ")"
        if shown:
            line += ": " + "; ".join(f"`{k}` = {format_cell(v)}" for k, v in shown)
            if len(scalars) > len(shown):
                line += f"; … {len(scalars) - len(shown)} more"
        parts.append("- " + line)
    if not parts:
        return (
            f"No notebook of the lab has run at preset `{preset}` yet (`make lab PRESET={preset}`)."
        )
    return "\n".join(parts)


def _empty_figure(message: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.0, 0.5, message, va="center", ha="left", fontsize=9, wrap=True)
    return fig


def _numeric(rows: list[dict[str, Any]], metric: str) -> bool:
    return any(
        isinstance(r.get(metric), (int, float)) and not isinstance(r.get(metric), bool)
        for r in rows
    )


def plot_metrics(rows: list[dict[str, Any]], by: list[str], metrics: list[str], *, title: str = ""):
    """One bar chart per metric: the mean per setting of `by`, error bars = std over seeds."""
    import matplotlib.pyplot as plt

    present = [m for m in metrics if _numeric(rows, m)]
    if not present:
        available = sorted({k for r in rows for k in r if _numeric(rows, k)} - set(by))
        return _empty_figure(
            f"{title or 'sweep'}: none of {metrics} was logged"
            + (f"; numeric columns: {', '.join(available[:12])}" if available else " (no runs)")
        )
    table = aggregate(rows, by=by, metrics=present)
    labels = [setting_label(t, by) for t in table]
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 3), squeeze=False)
    for ax, metric in zip(axes[0], present, strict=True):
        means = [t[metric] if t[metric] is not None else float("nan") for t in table]
        stds = [t[f"{metric}_std"] or 0.0 for t in table]
        ax.bar(range(len(table)), means, yerr=stds, capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(table)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_tradeoff(
    rows: list[dict[str, Any]],
    by: str,
    quality: str,
    costs: tuple[str, ...] = ("run_time_s", "run_peak_mem_mb"),
    *,
    title: str = "",
):
    """Quality against each cost (time, memory): one point per setting, mean ± std over seeds."""
    import matplotlib.pyplot as plt

    present = [c for c in costs if _numeric(rows, c)]
    if not _numeric(rows, quality) or not present:
        return _empty_figure(
            f"{title or 'sweep'}: needs `{quality}` and one of {list(costs)} in the finished runs"
            + ("" if rows else " (no runs yet)")
        )
    table = aggregate(rows, by=[by], metrics=[quality, *present])
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.2), squeeze=False)
    for ax, cost in zip(axes[0], present, strict=True):
        for t in table:
            ax.errorbar(
                t[cost], t[quality], xerr=t[f"{cost}_std"], yerr=t[f"{quality}_std"], fmt="o"
            )
            ax.annotate(
                str(t[by]),
                (t[cost], t[quality]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        ax.set_xlabel(cost)
        ax.set_ylabel(quality)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
