"""Execute one notebook with papermill in a process of its own.

    python -m nuwa_lab.lab.experiment.worker SPEC.json

Why a process per run: the kernel is this process's only child, so once papermill has shut it down
`getrusage(RUSAGE_CHILDREN).ru_maxrss` is the kernel's peak resident memory (Linux reports KiB,
macOS bytes); an interrupted run leaves no half-finished state in the runner; one run cannot leak
into the next.

SPEC is a JSON file: notebook, output, parameters, cwd, kernel, progress, cell_timeout, result. The
worker writes `result` (JSON: status, error, wall_time_s, cpu_time_s, peak_mem_mb) and exits 0
whether the notebook failed or not; a non-zero exit means the worker itself broke.

When the environment variable `NUWA_LAB_PROGRESS` names a folder (the main job sets it while a
notebook runs), the worker reports progress there instead of drawing papermill's bar: papermill's
cell counter into `cells.json`, and, through a start-up file the kernel runs before the first
cell (`PYTHONSTARTUP`), the notebook's own tqdm bars into `kernel.json`. See
`nuwa_lab.lab.progress`, which also prints them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nuwa_lab.lab.progress import (
    CELLS_FILE,
    NOTEBOOK_ENV,
    PROGRESS_ENV,
    STARTUP_FILE,
    install,
    startup_code,
)
from nuwa_lab.train.files import atomic_write_json

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def kernel_peak_mem_mb() -> float:
    """Peak resident memory of the largest finished child process (the kernel), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def kernel_cpu_seconds() -> float:
    """CPU time (user + system) of the finished children (the kernel): unlike wall time, it does
    not grow when other processes share the cores."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def describe_error(e: BaseException) -> dict[str, Any]:
    """A JSON-friendly description of why the notebook failed."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(e, PapermillExecutionError):
        traceback = _ANSI.sub("", "\n".join(e.traceback or []))
        return {
            "ename": e.ename,
            "evalue": e.evalue,
            "cell_index": e.cell_index,
            "execution_count": e.exec_count,
            "traceback": traceback[-4000:],
        }
    return {"ename": type(e).__name__, "evalue": str(e), "cell_index": None, "traceback": ""}


@contextlib.contextmanager
def reporting_progress(spec: dict[str, Any]) -> Iterator[bool | dict[str, Any]]:
    """papermill's `progress_bar` argument for this run, with progress reports set up around it.

    Without `$NUWA_LAB_PROGRESS`: the spec's `progress` (papermill draws its bar or not). With it:
    papermill's bar (a tqdm) reports every finished cell to `cells.json` and draws into
    /dev/null; the kernel gets `PYTHONSTARTUP` = a start-up file that reports its bars to
    `kernel.json` (then runs your own `PYTHONSTARTUP` file, if you have one)."""
    folder = os.environ.get(PROGRESS_ENV)
    if not folder:
        yield bool(spec.get("progress", False))
        return
    stem = Path(spec["notebook"]).stem
    install(Path(folder) / CELLS_FILE, notebook=stem, interval=0.0)  # a few dozen cells: no limit
    code = startup_code()
    own = os.environ.get("PYTHONSTARTUP")
    if own:
        code += f"get_ipython().safe_execfile({own!r}, get_ipython().user_ns)\n"
    startup = Path(folder) / STARTUP_FILE
    startup.write_text(code, encoding="utf-8")
    env = {"PYTHONSTARTUP": str(startup), NOTEBOOK_ENV: stem}
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # the kernel papermill starts inherits this environment
    try:
        with open(os.devnull, "w") as nowhere:
            yield {"file": nowhere}
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute(spec: dict[str, Any]) -> dict[str, Any]:
    # jsonschema (under nbformat) imports rfc3987_syntax for the "iri" formats; it builds a parser
    # at import: ~2 s of CPU per run for a check notebooks never need. This process only runs
    # papermill, so the optional import is switched off here.
    sys.modules.setdefault("rfc3987_syntax", None)
    import papermill

    start = time.perf_counter()
    status, error = "ok", None
    try:
        with reporting_progress(spec) as progress_bar:
            papermill.execute_notebook(
                spec["notebook"],
                spec["output"],
                parameters=spec["parameters"],
                cwd=spec["cwd"],
                kernel_name=spec.get("kernel", "python3"),
                language="python",
                progress_bar=progress_bar,
                execution_timeout=spec.get("cell_timeout"),
            )
    except Exception as e:  # the notebook failed: record it, the sweep goes on
        status, error = "failed", describe_error(e)
    return {
        "status": status,
        "error": error,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "peak_mem_mb": round(kernel_peak_mem_mb(), 1),
        "cpu_time_s": round(kernel_cpu_seconds(), 3),
    }


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `kill` unwinds like Ctrl-C: papermill shuts the
    kernel down and the runner keeps nothing half-written."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str]) -> int:
    interrupt_on_sigterm()
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = execute(spec)
    except KeyboardInterrupt:  # the kernel has been shut down on the way out; report nothing
        return 130
    atomic_write_json(spec["result"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
