"""Where a run came from: the code's git revision, the package versions, the machine and its load.

Every run record carries these (`runner.execute_run`), and the report prints them, so a number can
be traced to the code and the machine that produced it.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from typing import Any


@functools.lru_cache(maxsize=8)
def provenance(root: str) -> dict[str, Any]:
    """Git revision (and whether the tree had local changes) and package versions."""
    from importlib.metadata import PackageNotFoundError, version

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", root, *args], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    versions = {"python": platform.python_version()}
    for package in ("nuwa_lab", "torch", "papermill", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "git_revision": revision,
        "git_dirty": None if revision is None or status is None else bool(status),
        "versions": versions,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
    }


def cpu_model() -> str:
    """The processor's name ("AMD EPYC", "Intel(R) Xeon(R) ..."): runs on other machines differ."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages at the end of a run: context for its wall time."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
