"""The eight tasks' targets over seeds: does every seed meet each target, or only a lucky one?

The sweep `experiments/task_seeds.yaml` re-runs the task notebooks (06-09, both modalities) with
`SEED` 0, 1 and 2: the seed decides the pretraining's initial weights and data order, the
fine-tuning's data order and the sampling, so each seed is a whole independent training of the
task models. Per target (`nuwa_lab.tasks.report.TARGETS`) this gives the value each seed reached,
whether each seed met the goal, and the mean with its 95% t-interval over the seeds
(`metrics.intervals.mean_interval`): a target "holds on every seed" only when each seed met it.

| thing | code |
|---|---|
| the sweep's runs, each with its metrics.json | `task_seed_runs(runs_dir, name)` |
| one row per (task, target): seeds, mean [95%], every seed met? | `targets_over_seeds(runs)` |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.collect import collect
from nuwa_lab.lab.experiment.lab_runs import task_target_rows
from nuwa_lab.metrics.intervals import mean_interval

SWEEP = "task_seeds"


def task_seed_runs(runs_dir: Path, preset: str, name: str = SWEEP) -> list[dict[str, Any]]:
    """The finished runs of the task-seeds sweep at `preset`, shaped like `read_lab_runs`' runs
    (record, metrics, params) plus their SEED."""
    runs = []
    rows = collect(name, runs_dir=runs_dir)
    for row in rows:
        if row.get("PRESET", preset) != preset:
            continue
        metrics = rows.run_metrics(row)
        params = {k: v for k, v in row.items() if k.isupper()}
        record = rows.record(row)
        machine = record.get("cpu") or record.get("platform", "?")
        host = f"{machine} ({record.get('cpu_count')} cores)"
        revision = (record.get("git_revision") or "?")[:7]
        runs.append(
            {
                "record": True,
                "metrics": metrics,
                "params": params,
                "seed": row.get("SEED"),
                "host": f"{host} at {revision}",
            }
        )
    return runs


def where_seeds_ran(runs: list[dict[str, Any]]) -> str:
    """Which seeds ran on which machine and revision: the hosts behind the table."""
    by_host: dict[str, set[Any]] = {}
    for run in runs:
        by_host.setdefault(run.get("host", "?"), set()).add(run["seed"])
    parts = [
        " and ".join(_seed_label(s) for s in sorted(seeds, key=str)) + f" on {host}"
        for host, seeds in by_host.items()
    ]
    return "; ".join(parts)


def _seed_label(seed: Any) -> str:
    return f"seed {seed}"


def targets_over_seeds(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, target) with each seed's value (✓ met, ✗ missed), the mean with its 95%
    t-interval over seeds, and whether every seed met the goal."""
    per_target: dict[tuple[str, str, str], dict[Any, dict[str, Any]]] = {}
    for run in runs:
        for row in task_target_rows([run]):
            key = (row["task"], row["target"], row["goal"])
            per_target.setdefault(key, {})[run["seed"]] = row
    seeds = sorted({run["seed"] for run in runs}, key=lambda s: (s is None, s))
    out = []
    for (task, target, goal), by_seed in per_target.items():
        values = [by_seed[s]["reached"] for s in seeds if s in by_seed]
        numbers = [float(v) for v in values if isinstance(v, (int, float))]
        row: dict[str, Any] = {"task": task, "target": target, "goal": goal}
        for seed in seeds:
            found = by_seed.get(seed)
            if found is None or not isinstance(found["reached"], (int, float)):
                row[_seed_label(seed)] = "–"
            else:
                mark = "✓" if found["met"] == "yes" else "✗"
                row[_seed_label(seed)] = f"{found['reached']:.4g} {mark}"
        if len(numbers) >= 2:
            low, high = mean_interval(numbers)
            row["mean [95% over seeds]"] = (
                f"{sum(numbers) / len(numbers):.4g} [{low:.4g}, {high:.4g}]"
            )
        else:
            row["mean [95% over seeds]"] = "–"
        met = [by_seed[s]["met"] == "yes" for s in seeds if s in by_seed]
        row["every seed meets it"] = (
            f"yes ({len(met)} seed{'s' * (len(met) != 1)})"
            if met and all(met)
            else f"**no**: {sum(met)} of {len(met)}"
        )
        out.append(row)
    return out
