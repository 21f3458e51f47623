"""Kept results: the records of finished runs, committed, so a sweep outlives its machine.

Run folders (`experiments/runs/`) are large (executed notebooks, figures) and not committed: a fresh
machine starts without them. A sweep that takes longer than one sitting, or that is meant to hold
across machines, keeps the small records of each finished run in `experiments/results/`, beside
the runs folder, and commits them:

    experiments/results/<sweep>/sweep.json                 the grid, as the runner wrote it
    experiments/results/<sweep>/<KEY=value-...>/run.json   status, times, host, git revision
    experiments/results/<sweep>/<KEY=value-...>/metrics.json, params.json

| when | what happens |
|---|---|
| a run of a sweep finishes ok | its records are copied here (`keep_run`; not smoke runs) |
| a sweep starts on another machine | a run kept here, same parameters and notebook code: skipped |
| `collect`, report, notebook 10 | the runs folder plus the kept runs it lacks (`kept_folders`) |
| `sweep FILE --keep-results` | copies the finished runs of the runs folder, runs nothing |

Every record is verified when read (its `.sha256`) and written atomically with a new hash; a run
in the runs folder wins over its kept copy. Each kept `run.json` names the host and the git
revision it ran on, so a table mixing machines says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.runner import (
    METRICS_FILE,
    PARAMS_FILE,
    RUN_FILE,
    read_json,
    read_record,
    stale_reason,
)
from nuwa_lab.train.files import atomic_write_json, write_sha256

RESULTS_DIR_NAME = "results"
NOT_KEPT_PRESETS = ("smoke",)  # numbers that mean nothing are not worth committing


def results_dir(runs_dir: str | Path) -> Path:
    """Where the kept results of `runs_dir` live: `results/` beside it (experiments/results)."""
    return Path(runs_dir).resolve().parent / RESULTS_DIR_NAME


def keep_run(run_dir: str | Path, dest: str | Path) -> bool:
    """Copy the records of the finished run in `run_dir` to `dest`; False when not worth keeping.

    Only a run whose run.json says ok and whose preset is not smoke is kept. Each file is read
    back verified from `run_dir` and written to `dest` atomically with its hash.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    record = read_record(run_dir / RUN_FILE)
    if not record or record.get("status") != "ok":
        return False
    if (record.get("params") or {}).get("PRESET") in NOT_KEPT_PRESETS:
        return False
    metrics = read_record(run_dir / METRICS_FILE) if record.get("has_metrics") else None
    params = read_json(run_dir / PARAMS_FILE)
    if params is not None:
        atomic_write_json(dest / PARAMS_FILE, params)
    if metrics is not None:
        atomic_write_json(dest / METRICS_FILE, metrics)
        write_sha256(dest / METRICS_FILE)
    atomic_write_json(dest / RUN_FILE, record, sha256=True)  # last: the kept run is complete
    return True


def keep_sweep(name: str, runs_dir: str | Path) -> list[str]:
    """Keep every finished run of sweep `name` in `runs_dir`; returns the keys kept."""
    folder = Path(runs_dir) / name
    if not folder.is_dir():
        return []
    dest = results_dir(runs_dir) / name
    kept = []
    for run_json in sorted(folder.rglob(RUN_FILE)):
        rel = run_json.parent.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue  # a run still executing (.partial) or being replaced (.old)
        if keep_run(run_json.parent, dest / rel):
            kept.append(rel.as_posix())
    sweep_json = read_json(folder / "sweep.json")
    if kept and sweep_json is not None:
        atomic_write_json(dest / "sweep.json", sweep_json)
    return kept


def kept_record(
    runs_dir: str | Path, name: str, key: str, params: dict[str, Any], notebook: str | Path
) -> dict[str, Any] | None:
    """The kept run.json of `name/key` when it is a finished run of `notebook` with `params`."""
    kept = results_dir(runs_dir) / name / key
    if not kept.is_dir():
        return None
    damaged = stale_reason(kept)  # the records against their hashes
    if damaged is not None:
        warnings.warn(f"kept run {kept} not used, it runs again: {damaged}", stacklevel=2)
        return None
    if stale_reason(kept, params, notebook) is not None:
        return None  # other parameters or notebook code: a different run
    return read_json(kept / RUN_FILE)


def kept_folders(runs_dir: str | Path, name: str) -> dict[str, Path]:
    """{run key: folder} of the kept runs of sweep `name` (verified records only)."""
    folder = results_dir(runs_dir) / name
    if not folder.is_dir():
        return {}
    found = {}
    for run_json in sorted(folder.rglob(RUN_FILE)):
        reason = stale_reason(run_json.parent)  # checks run.json and metrics.json against hashes
        if reason is None:
            found[run_json.parent.relative_to(folder).as_posix()] = run_json.parent
        else:
            warnings.warn(f"kept run {run_json.parent} not read: {reason}", stacklevel=2)
    return found
