"""Every notebook runs end to end through papermill at PRESET="smoke" and writes metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_at_smoke_preset(notebook: Path, tmp_path: Path) -> None:
    import papermill

    run_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(notebook),
        str(tmp_path / notebook.name),
        parameters={"PRESET": "smoke", "RUN_DIR": str(run_dir), "INTERACTIVE": False},
        cwd=str(ROOT / "notebooks"),
        kernel_name="python3",
        progress_bar=False,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics, f"{notebook.name} wrote an empty metrics.json"
