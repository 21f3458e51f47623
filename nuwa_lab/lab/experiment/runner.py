"""The sweep runner: each run executes one notebook with papermill into a run folder of its own.

A run folder (`experiments/runs/<sweep>/<KEY=value-...>/`) holds

| file | written by | what |
|---|---|---|
| `<notebook>.ipynb` | papermill | the executed notebook (with the error cell when it failed) |
| `metrics.json` | the notebook, `log_metrics(RUN_DIR, ...)` | the numbers sweeps and reports read |
| `*.png`, `figures/` | the notebook / the runner | figures the notebook saved / its inline images |
| `params.json` | the runner | the parameters passed to the notebook (RUN_DIR excluded) |
| `run.json` | the runner, last | status, error, wall time, peak memory, git revision, versions |
| `*.json.sha256` | the runner | the content hashes of `metrics.json` and `run.json` |

Nothing half-written is ever read as a result: a run executes in a hidden sibling folder
`.<name>.partial/` and is renamed into place only when `run.json` is in it. A run counts as finished
when its `run.json` says `"status": "ok"`, its parameters are the ones asked for and the notebook's
code (its code cells, hashed) has not changed since; finished runs are skipped unless `force=True`,
failed, stale or missing ones run again, so re-running an interrupted sweep resumes it. (A change in
the library does not make runs stale: use `--force`.) Peak memory is the kernel's `ru_maxrss`
(see `nuwa_lab.lab.experiment.worker`).

The run records, `run.json` and `metrics.json`, are read back only once they match their hashes
(`read_json` checks any file named like them; `nuwa_lab.train.files`): the runner hashes
`metrics.json` when the notebook has finished and writes `run.json` with its hash. A record that
fails the check (damaged, truncated, or without a hash, as older nuwa_lab wrote) is reported with
its path, and its run counts as unfinished: the next `run_sweep` runs it again.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.notebook import cell_source, read_notebook
from nuwa_lab.lab.experiment.provenance import load_average, provenance
from nuwa_lab.train.files import (
    IntegrityError,
    atomic_write_json,
    atomic_write_text,
    read_json_verified,
    write_sha256,
)

RUN_FILE, PARAMS_FILE, METRICS_FILE, FIGURES_DIR = (
    "run.json",
    "params.json",
    "metrics.json",
    "figures",
)
RECORD_FILES = (RUN_FILE, METRICS_FILE)  # read back only once they match their .sha256
RERUN_HINT = (
    "its run counts as unfinished: running the sweep (or make lab) again re-runs it; or delete "
    "the run folder"
)
PEAK_MEM_METHOD = "ru_maxrss of the kernel process (getrusage RUSAGE_CHILDREN in a worker process)"


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing or unreadable.

    A run record (`RECORD_FILES`) must match its hash: one that does not is None too, with a
    warning naming it (its run counts as unfinished and runs again)."""
    try:
        return read_record(path)
    except IntegrityError as e:
        warnings.warn(f"{e}; {RERUN_HINT}", stacklevel=2)
        return None


def read_record(path: str | Path) -> dict[str, Any] | None:
    """`read_json` without the warning: a run record that fails its hash check raises
    IntegrityError (a missing or unparsable file is None, as in `read_json`)."""
    path = Path(path)
    try:
        if path.name in RECORD_FILES:
            value = read_json_verified(path) if path.is_file() else None
        else:
            value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _plain(value: Any) -> Any:
    """Parameters as they compare after a JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def notebook_fingerprint(path: str | Path) -> str:
    """sha256 of the notebook's code: its code cells' sources (not outputs, metadata or prose)."""

    cells = read_notebook(path).get("cells", [])
    code = "\n\x00".join(cell_source(c) for c in cells if c.get("cell_type") == "code")
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def stale_reason(
    run_dir: str | Path, params: dict[str, Any] | None = None, notebook: str | Path | None = None
) -> str | None:
    """Why `run_dir` does not hold a finished run of `notebook` with `params`; None if it does."""
    metrics = Path(run_dir) / METRICS_FILE
    try:
        record = read_record(Path(run_dir) / RUN_FILE)
        if record and record.get("has_metrics"):
            read_record(metrics)
    except IntegrityError as e:
        return str(e)  # names the record and why it fails: the run runs again
    if record and record.get("has_metrics") and not metrics.is_file():
        return f"{metrics} is missing (run.json says the notebook wrote it)"
    if not record:
        return "not run yet" if not Path(run_dir).exists() else "never finished"
    if record.get("status") != "ok":
        return "the previous attempt failed"
    if params is not None and _plain(record.get("params")) != _plain(params):
        return "parameters changed"
    fingerprint = record.get("notebook_sha256")
    if notebook is not None and fingerprint and fingerprint != notebook_fingerprint(notebook):
        return "the notebook's code changed"
    return None


def is_finished(
    run_dir: str | Path, params: dict[str, Any] | None = None, notebook: str | Path | None = None
) -> bool:
    """True when `run_dir` holds a successful run (with exactly `params` and the current code of
    `notebook`, when given)."""
    return stale_reason(run_dir, params, notebook) is None


def _extract_figures(nb: dict[str, Any], folder: Path) -> list[str]:
    """Write the notebook's inline PNG outputs to `folder` as cellNN_k.png; return their names."""
    names = []
    for index, cell in enumerate(nb.get("cells", [])):
        k = 0
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if not png:
                continue
            name = f"cell{index:02d}_{k}.png"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(base64.b64decode("".join(png)))
            names.append(name)
            k += 1
    return names


def _finish_notebook(path: Path, tmp: Path, final: Path) -> list[str]:
    """Point the injected RUN_DIR at the final folder and extract the inline figures."""
    if not path.exists():
        return []
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell.get("source", ""))
            cell["source"] = source.replace(str(tmp), str(final))
    atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return _extract_figures(nb, tmp / FIGURES_DIR)


def _worker(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    spec_path, result_path = tmp / ".worker-spec.json", tmp / ".worker-result.json"
    atomic_write_json(spec_path, {**spec, "result": str(result_path)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "nuwa_lab.lab.experiment.worker", str(spec_path)]
    )
    try:
        code = proc.wait()
    except BaseException:  # interrupted: stop the worker (its kernel goes with it), keep nothing
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    result = read_json(result_path)
    spec_path.unlink(missing_ok=True)
    result_path.unlink(missing_ok=True)
    if result is None:
        message = f"the papermill worker exited with code {code} before reporting a result"
        result = {"status": "failed", "error": {"ename": "WorkerError", "evalue": message}}
    return result


def execute_run(
    notebook: str | Path,
    params: dict[str, Any],
    run_dir: str | Path,
    *,
    force: bool = False,
    kernel: str = "python3",
    progress: bool = False,
    cell_timeout: float | None = None,
    info: dict[str, Any] | None = None,
    root: str | Path | None = None,
) -> dict[str, Any]:
    """Execute `notebook` with `params` into `run_dir` unless it finished already.

    Returns the run record (the content of run.json) plus `"skipped": True|False`; `info` (sweep
    name, run key) is merged into the record. The notebook runs with cwd = its own folder and
    RUN_DIR = the run folder; a failing notebook is recorded (status "failed", the error, the
    partially executed notebook) rather than raised.
    """
    notebook, final = Path(notebook).resolve(), Path(run_dir).resolve()
    reason = stale_reason(final, params, notebook)
    if reason is None and not force:
        return {**read_json(final / RUN_FILE), "skipped": True}
    reason = reason or "forced"

    tmp = final.parent / f".{final.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)  # left over by an interrupted earlier attempt
    tmp.mkdir(parents=True)
    atomic_write_json(tmp / PARAMS_FILE, params)
    output = tmp / notebook.name
    started = dt.datetime.now(dt.UTC)
    spec = {
        "notebook": str(notebook),
        "output": str(output),
        "parameters": {**params, "RUN_DIR": str(tmp)},
        "cwd": str(notebook.parent),
        "kernel": kernel,
        "progress": progress,
        "cell_timeout": cell_timeout,
    }
    result = _worker(spec, tmp)
    figures = _finish_notebook(output, tmp, final)
    root = Path(root).resolve() if root else notebook.parent.parent
    record = {
        **(info or {}),
        "status": result["status"],
        "error": result.get("error"),
        "notebook": os.path.relpath(notebook, root),
        "notebook_sha256": notebook_fingerprint(notebook),
        "params": params,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_time_s": result.get("wall_time_s"),
        "cpu_time_s": result.get("cpu_time_s"),
        "load_avg": load_average(),
        "peak_mem_mb": result.get("peak_mem_mb"),
        "peak_mem_method": PEAK_MEM_METHOD,
        "has_metrics": (tmp / METRICS_FILE).exists(),
        "figures": figures,
        "rerun_reason": reason,
        **provenance(str(root)),
    }
    if record["has_metrics"]:
        write_sha256(tmp / METRICS_FILE)  # as the notebook left it
    atomic_write_json(tmp / RUN_FILE, record, sha256=True)  # the done marker: last file written

    old = final.parent / f".{final.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return {**record, "skipped": False}


def describe(record: dict[str, Any]) -> str:
    """One line: status, time, memory (or the error)."""
    if record.get("skipped"):
        return "skipped (finished earlier; --force re-runs it)"
    again = record.get("rerun_reason")
    again = f"  (ran again: {again})" if again and again != "not run yet" else ""
    if record["status"] == "ok":
        return f"ok  {record['wall_time_s']:.1f} s  {record['peak_mem_mb']:.0f} MB peak{again}"
    error = record.get("error") or {}
    cell = error.get("cell_index")
    where = f" (cell {cell})" if cell is not None else ""
    message = str(error.get("evalue")).strip().splitlines()[0] if error.get("evalue") else ""
    message = message if len(message) <= 300 else message[:300] + " …"
    return f"FAILED{where}: {error.get('ename')}: {message}"


def default_runs_dir(root: str | Path) -> Path:
    return Path(root) / "experiments" / "runs"
