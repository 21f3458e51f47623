"""Running a whole sweep: every grid point through `execute_run`, skipping finished and kept runs.

    result = run_sweep("experiments/attention_ablation.yaml", only=["SEED=0"])
    print(result.summary())

A run is skipped when its folder holds a finished run of the same parameters and notebook code, or
when `experiments/results/` keeps one (`nuwa_lab.lab.experiment.archive`: a sweep resumed on
another machine). Every run that finishes ok is kept there as it finishes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.archive import keep_run, kept_record, results_dir
from nuwa_lab.lab.experiment.runner import default_runs_dir, describe, execute_run, stale_reason
from nuwa_lab.lab.experiment.sweep import Sweep, load_sweep, select_runs
from nuwa_lab.train.files import atomic_write_json


@dataclass
class SweepResult:
    """What `run_sweep` did: one record per run, in order."""

    name: str
    folder: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("skipped")]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        n_ok = len(self.records) - len(self.failed)
        lines = [
            f"sweep {self.name}: {n_ok}/{len(self.records)} runs ok "
            f"({len(self.skipped)} skipped as finished), {len(self.failed)} failed; "
            f"runs in {self.folder}"
        ]
        for r in self.failed:
            lines.append(f"  FAILED {r['key']}: {describe(r).split(': ', 1)[-1]}")
            lines.append(f"    see {self.folder / r['key'] / Path(r['notebook']).name}")
        return "\n".join(lines)


def run_sweep(
    sweep: str | Path | Sweep,
    *,
    preset: str | None = None,
    force: bool = False,
    only: list[str] | None = None,
    runs_dir: str | Path | None = None,
    root: str | Path | None = None,
    kernel: str = "python3",
    progress: bool = False,
    cell_timeout: float | None = None,
    echo: Callable[[str], Any] = print,
    keep: bool = True,
) -> SweepResult:
    """Run every grid point of a sweep file (validated first), skipping finished runs.

    A run kept in `experiments/results/` (beside `runs_dir`) with the same parameters and notebook
    code counts as finished; every run that finishes ok here is kept there (`keep=False`: not).
    """
    if isinstance(sweep, Sweep):
        if preset is not None:
            raise ValueError(
                "preset= applies to sweep files; set PRESET in the Sweep's base instead"
            )
    else:
        sweep = load_sweep(sweep, preset=preset, root=root)
    runs = select_runs(sweep.runs(), only)
    if not runs:
        raise ValueError(f"--only {' '.join(only or [])} matches none of the sweep's runs")
    runs_dir = Path(runs_dir or default_runs_dir(sweep.root))
    folder = runs_dir / sweep.name
    info = {
        "name": sweep.name,
        "file": str(sweep.path) if sweep.path else None,
        "notebooks": [os.path.relpath(nb, sweep.root) for nb in sweep.notebooks],
        "base": sweep.base,
        "grid": sweep.grid,
        "exclude": list(sweep.exclude),
    }
    atomic_write_json(folder / "sweep.json", info)
    result = SweepResult(name=sweep.name, folder=folder)
    for i, run in enumerate(runs, 1):
        kept = None
        if keep and not force and stale_reason(folder / run.key, run.params, run.notebook):
            kept = kept_record(runs_dir, sweep.name, run.key, run.params, run.notebook)
        if kept is not None:
            record = {**kept, "key": run.key, "skipped": True}
            echo(f"[{i}/{len(runs)}] {sweep.name}/{run.key}: kept in {results_dir(runs_dir)}")
            result.records.append(record)
            continue
        echo(f"[{i}/{len(runs)}] {sweep.name}/{run.key} ...")
        record = execute_run(
            run.notebook,
            run.params,
            folder / run.key,
            force=force,
            kernel=kernel,
            progress=progress,
            cell_timeout=cell_timeout,
            info={"sweep": sweep.name, "key": run.key},
            root=sweep.root,
        )
        record.setdefault("key", run.key)
        if keep and record["status"] == "ok" and not record.get("skipped"):
            if keep_run(folder / run.key, results_dir(runs_dir) / sweep.name / run.key):
                atomic_write_json(results_dir(runs_dir) / sweep.name / "sweep.json", info)
        echo(f"[{i}/{len(runs)}] {sweep.name}/{run.key}: {describe(record)}")
        result.records.append(record)
    return result
