"""Experiments: the metrics contract between notebooks, sweeps and tests.

`log_metrics(RUN_DIR, ...)` is the last step of every notebook: it merges the given metrics into
`RUN_DIR/metrics.json` (written atomically), which the sweep runner and the tests read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nuwa_lab.files import atomic_write_json


def log_metrics(run_dir: str | Path, **metrics: Any) -> dict[str, Any]:
    """Merge `metrics` into `run_dir/metrics.json` and return the whole dict."""
    path = Path(run_dir) / "metrics.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(metrics)
    atomic_write_json(path, current)
    return current
