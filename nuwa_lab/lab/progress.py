"""Progress of the main job: what a notebook is doing while papermill runs it.

papermill runs each notebook in a Jupyter kernel, a process of its own whose output goes into the
executed notebook, not to your terminal. So while notebook 02 trained its tokenizers for minutes,
`make lab` showed only papermill's cell counter. This module puts the notebook's progress bars on
the terminal, one line every ~12 s, without changing the library or the notebooks:

    ... 02_vqgan_tokenizer 24 s · cell 10/23 · vqgan 1/4 (25%) · 4.26 s/it · ETA 13 s
    ... 06_text_to_visual-video 25 s · cell 9/24 · video_probe 2/4 (50%) model=8.928, lr=0.002
        · 1.72 s/it · ETA 3 s

(the description of a training bar is the artifact being trained, its postfix the losses).

How, in three plain steps:

1. **Write.** The library's long loops all draw a tqdm bar, `from tqdm.auto import tqdm`: the
   training loop, the sampler, the tokenizing of data sets. `install(path)` replaces the class
   `tqdm.auto.tqdm` with `ReportingTqdm`, a subclass that draws exactly the same bar and also
   tells a `Snapshots` about every update. `Snapshots` writes what the open bars show (desc, n,
   total, elapsed, rate, postfix) to a small JSON file: at most once a second while bars move, at
   once when one closes; atomically (a temporary file renamed over the old one), so a reader
   never sees half a file.
2. **Install it in the kernel.** `Tail.running` sets the environment variable `NUWA_LAB_PROGRESS`
   to a folder. The worker (`experiment/worker.py`, one process per notebook) sees it, writes a
   start-up file that calls `install_from_environment()` and points `PYTHONSTARTUP` at it.
   IPython, and so the kernel papermill starts (it inherits the worker's environment), runs that
   file before the first cell, as `python` does for an interactive session. (`PYTHONSTARTUP`
   rather than a profile folder of our own, `IPYTHONDIR`: your IPython profile still applies.)
   The worker reports papermill's own cell counter the same way (papermill's bar is a tqdm too),
   into a second file, and draws no bar of its own.
3. **Read.** In the lab's main process, `Tail` is a thread that reads the two files every second
   and prints `format_line(...)` every ~12 s while a notebook runs.

What it does not change: what the notebook computes, prints or stores. Its bars are the same
widgets; the start-up file binds no name in the notebook's namespace; a failed write is ignored;
only the process that installed the hook writes (not a forked data-loader worker). The files live
in a temporary folder that is removed when the lab ends.

Limits: an update less than a second after the last write waits for the next update (or the
bar's close), so a loop that stops without closing its bar is shown one step behind; loops that
draw no tqdm bar show only the cell counter.

| piece | where it runs |
|---|---|
| `Snapshots`, `ReportingTqdm`, `install`, `install_from_environment` | the kernel, the worker |
| `Tail`, `format_line`, `describe_bar`, `eta_seconds` | the lab's main process |

This module uses only the standard library and tqdm, so the kernel's start-up stays light.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tqdm.auto as tqdm_auto  # first: it imports tqdm.autonotebook without its notebook warning
import tqdm.autonotebook as tqdm_autonotebook

PROGRESS_ENV = "NUWA_LAB_PROGRESS"  # the folder of the snapshot files (set while a notebook runs)
NOTEBOOK_ENV = "NUWA_LAB_PROGRESS_NOTEBOOK"  # the notebook's name, for the kernel's snapshots
KERNEL_FILE = "kernel.json"  # the notebook's own bars (written in the kernel)
CELLS_FILE = "cells.json"  # papermill's cell counter (written in the worker)
STARTUP_FILE = "kernel_startup.py"


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as JSON to a temporary file beside `path`, then rename it over `path`.

    A rename within a folder is atomic: a reader sees the old file or the new one, never half.
    (No fsync: a progress file need not survive a power cut.)"""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_snapshot(path: str | os.PathLike) -> dict[str, Any] | None:
    """The snapshot in `path`, or None when there is none (yet)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def bar_state(bar: Any) -> dict[str, Any]:
    """What a tqdm bar shows, as JSON: desc, n, total, elapsed (s), rate (per s), postfix, unit.

    tqdm's own rate is smoothed over the last updates and None before the second one; then the
    mean rate since the bar started stands in."""
    d = bar.format_dict
    n, elapsed = d["n"], d["elapsed"]
    rate = d.get("rate")
    if not rate and elapsed > 0:
        rate = (n - (d.get("initial") or 0)) / elapsed
    return {
        "desc": d.get("prefix") or "",
        "n": n,
        "total": d.get("total"),
        "elapsed": round(elapsed, 2),
        "rate": rate,
        "postfix": d.get("postfix") or "",
        "unit": d.get("unit") or "it",
    }


class Snapshots:
    """The open bars of one process, written to `path` as one JSON object:

        {"notebook": "02_vqgan_tokenizer", "time": 1733470000.0,
         "bars": [{"desc": "vqgan", "n": 1200, "total": 2000, "elapsed": 290.1, "rate": 4.1,
                   "postfix": "rec=0.0123, lr=0.0003", "unit": "it"}]}

    `update(bar)` writes when the last write is at least `interval` seconds old (a training loop
    updates its bar every step: thousands of writes would slow it down); `close(bar)` writes at
    once, so a finished bar does not linger. Bars are held weakly: one dropped without `close`
    disappears with it."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        notebook: str = "",
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path, self.notebook, self.interval, self.clock = Path(path), notebook, interval, clock
        self.bars: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self.last_write = float("-inf")
        self.writes = 0
        self.pid = os.getpid()
        self.lock = threading.Lock()

    def update(self, bar: Any) -> bool:
        """`bar` moved: write if the last write is `interval` old; True when it wrote."""
        self.bars.setdefault(id(bar), bar)
        if self.clock() - self.last_write < self.interval:
            return False
        return self.write()

    def close(self, bar: Any) -> bool:
        """`bar` closed: forget it and write (if it was ever shown)."""
        if self.bars.pop(id(bar), None) is None:
            return False
        return self.write()

    def snapshot(self) -> dict[str, Any]:
        bars = [bar_state(bar) for bar in list(self.bars.values())]
        return {"notebook": self.notebook, "time": time.time(), "bars": bars}

    def write(self) -> bool:
        if os.getpid() != self.pid:  # a forked child (a data-loader worker) does not report
            return False
        with self.lock:
            try:
                write_json_atomic(self.path, self.snapshot())
            except (OSError, TypeError, ValueError):  # progress must never break the notebook
                return False
            self.last_write = self.clock()
            self.writes += 1
        return True


class ReportingTqdm(tqdm_auto.tqdm):
    """`tqdm.auto.tqdm` that also reports to `ReportingTqdm.snapshots` (set by `install`).

    It draws the same bar (in a kernel: the same widget); only `update` and `close` are extended,
    and a disabled bar (`disable=True`) reports nothing."""

    snapshots: Snapshots | None = None

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        if self.snapshots is not None and not self.disable:
            self.snapshots.update(self)
        return shown

    def close(self) -> None:
        report = self.snapshots is not None and not self.disable  # close() sets disable
        super().close()
        if report:
            self.snapshots.close(self)


def install(path: str | os.PathLike, *, notebook: str = "", interval: float = 1.0) -> Snapshots:
    """From now on, `from tqdm.auto import tqdm` gives `ReportingTqdm`, which reports to `path`.

    Only code that imports tqdm after this call is affected: in the kernel that is every notebook
    cell, since the hook runs before the first one."""
    snapshots = Snapshots(path, notebook=notebook, interval=interval)
    ReportingTqdm.snapshots = snapshots
    tqdm_auto.tqdm = ReportingTqdm
    tqdm_autonotebook.tqdm = ReportingTqdm
    return snapshots


def install_from_environment() -> Snapshots | None:
    """`install` into `$NUWA_LAB_PROGRESS/kernel.json` when the variable is set (the kernel's
    start-up file calls this); silent, and a no-op without the variable."""
    folder = os.environ.get(PROGRESS_ENV)
    if not folder:
        return None
    try:
        return install(Path(folder) / KERNEL_FILE, notebook=os.environ.get(NOTEBOOK_ENV, ""))
    except Exception:  # never break the kernel's start: the notebook runs without reports
        return None


def startup_code() -> str:
    """The kernel's start-up file (`PYTHONSTARTUP`): one call, no name bound in the notebook."""
    return (
        "# Written by nuwa_lab.lab.experiment.worker; IPython runs it before the first cell. It\n"
        "# reports the kernel's tqdm bars to the lab (nuwa_lab/lab/progress.py), binding no name.\n"
        "try:\n"
        '    __import__("nuwa_lab.lab.progress", fromlist=["*"]).install_from_environment()\n'
        "except Exception:  # e.g. a kernel without nuwa_lab: the notebook runs, unreported\n"
        "    pass\n"
    )


# --- the reading side: the lab's main process ---------------------------------------------------


def duration(seconds: float) -> str:
    """`42 s`, `3.2 min`, `1.5 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def eta_seconds(bar: dict[str, Any]) -> float | None:
    """Seconds left at the bar's rate: (total - n) / rate; None without a total or a rate."""
    total, rate = bar.get("total"), bar.get("rate")
    if not total or not rate or rate <= 0:
        return None
    return max(0.0, (total - bar["n"]) / rate)


def describe_bar(bar: dict[str, Any]) -> str:
    """`vqgan 1200/2000 (60%) rec=0.0123 · 4.1 it/s · ETA 3.2 min` (what is known of it)."""
    n, total = bar["n"], bar.get("total")
    count = f"{n:g}/{total:g} ({100 * n / total:.0f}%)" if total else f"{n:g}"
    text = " ".join(part for part in (bar.get("desc"), count, bar.get("postfix")) if part)
    rate, unit = bar.get("rate"), bar.get("unit") or "it"
    if rate:
        text += f" · {rate:.3g} {unit}/s" if rate >= 1 else f" · {1 / rate:.3g} s/{unit}"
    eta = eta_seconds(bar)
    if eta is not None:
        text += f" · ETA {duration(eta)}"
    return text


def format_line(
    label: str, seconds: float, cells: dict[str, Any] | None, kernel: dict[str, Any] | None
) -> str:
    """One progress line: the run, its time so far, the cell papermill is at, the open bars.

    papermill counts finished cells (markdown ones too), so the cell running is one more; its bar
    closes when the last cell has run (the runner then saves the run folder)."""
    parts = [f"... {label} {duration(seconds)}"]
    counter = (cells or {}).get("bars")
    if counter and counter[0].get("total"):
        done, total = counter[0]["n"], counter[0]["total"]
        parts.append(f"cell {min(done + 1, total):g}/{total:g}")
    elif cells is not None and not counter:
        parts.append("all cells run")
    parts += [describe_bar(bar) for bar in (kernel or {}).get("bars", [])]
    return " · ".join(parts)


class Tail:
    """Read the snapshot files of the running notebook and print a line every `every` seconds.

        with Tail(echo=print) as tail:
            with tail.running("02_vqgan_tokenizer"):
                execute_run(...)   # the worker and its kernel write the snapshots

    A thread wakes every `poll` seconds; the first line comes `every` seconds after the notebook
    started (a notebook done sooner prints none). `line()` is what it prints."""

    def __init__(
        self,
        folder: str | os.PathLike | None = None,
        *,
        echo: Callable[[str], Any] = print,
        every: float = 12.0,
        poll: float = 1.0,
    ):
        self.own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="nuwa-lab-progress-"))
        self.echo, self.every, self.poll = echo, every, poll
        self.label: str | None = None
        self.started = self.next_line = 0.0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Tail:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.thread = threading.Thread(target=self.loop, name="nuwa-lab-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    @contextlib.contextmanager
    def running(self, label: str) -> Iterator[None]:
        """While the body runs, a worker started in it reports to this tail (`NUWA_LAB_PROGRESS`
        is set in this process's environment, which the worker inherits)."""
        for name in (KERNEL_FILE, CELLS_FILE):  # an earlier notebook's last snapshot
            (self.folder / name).unlink(missing_ok=True)
        before = os.environ.get(PROGRESS_ENV)
        os.environ[PROGRESS_ENV] = str(self.folder)
        with self.lock:
            self.label, self.started = label, time.monotonic()
            self.next_line = self.started + self.every
        try:
            yield
        finally:
            with self.lock:  # after this, no line about this notebook is printed
                self.label = None
            if before is None:
                os.environ.pop(PROGRESS_ENV, None)
            else:
                os.environ[PROGRESS_ENV] = before

    def line(self) -> str | None:
        """The line for the running notebook now; None when none runs or nothing is known yet."""
        if self.label is None:
            return None
        cells = read_snapshot(self.folder / CELLS_FILE)
        kernel = read_snapshot(self.folder / KERNEL_FILE)
        if cells is None and kernel is None:
            return None
        return format_line(self.label, time.monotonic() - self.started, cells, kernel)

    def loop(self) -> None:
        while not self.stopped.wait(self.poll):
            with self.lock:
                now = time.monotonic()
                if self.label is None or now < self.next_line:
                    continue
                self.next_line = now + self.every
                text = self.line()
                if text:
                    self.echo(text)
