"""Experiments: notebooks as reproducible runs (NÜWA's ablations, §4.3, re-run on the Shapes World).

The contract between notebooks, sweeps, tests and the report is one file per run, `metrics.json`,
written by `log_metrics(RUN_DIR, ...)` as the last step of every notebook. Around it:

| piece | code |
|---|---|
| a notebook's declared parameters | `notebook_parameters(path)` (`experiment/notebook.py`) |
| a sweep file: notebooks, base, grid | `load_sweep(path)`, `Sweep.runs()` (`experiment/sweep.py`) |
| one papermill execution into a run folder | `execute_run(...)` (`experiment/runner.py`) |
| every grid point, skipping finished runs | `run_sweep(path)`; CLI `python -m nuwa_lab sweep` |
| the results as one table | `collect(sweep)`, `to_markdown(rows)`, `aggregate(rows, by)` |

Importing this package is cheap (papermill is imported only when a run executes), so notebooks can
`from nuwa_lab.lab.experiment import log_metrics` without paying for the runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.collect import Collection, aggregate, collect, to_markdown
from nuwa_lab.lab.experiment.notebook import NotebookParameter, notebook_parameters, notebook_title
from nuwa_lab.lab.experiment.runner import execute_run, is_finished
from nuwa_lab.lab.experiment.sweep import Run, Sweep, load_sweep
from nuwa_lab.lab.experiment.sweep_run import SweepResult, run_sweep
from nuwa_lab.train.files import atomic_write_json

__all__ = [
    "Collection",
    "NotebookParameter",
    "Run",
    "Sweep",
    "SweepResult",
    "aggregate",
    "collect",
    "execute_run",
    "is_finished",
    "load_sweep",
    "log_metrics",
    "notebook_parameters",
    "notebook_title",
    "run_sweep",
    "to_markdown",
]


def log_metrics(run_dir: str | Path, **metrics: Any) -> dict[str, Any]:
    """Merge `metrics` into `run_dir/metrics.json` and return the whole dict."""
    path = Path(run_dir) / "metrics.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(metrics)
    atomic_write_json(path, current)
    return current
