"""Every notebook runs end to end through papermill at PRESET="smoke" and writes metrics.json; the
task notebooks (those with a MODALITY parameter) once per modality, as the lab runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nuwa_lab.lab.experiment.notebook import notebook_parameters
from nuwa_lab.lab.job import MODALITIES

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CASES = [
    (nb, {"MODALITY": m} if "MODALITY" in notebook_parameters(nb) else {})
    for nb in NOTEBOOKS
    for m in (MODALITIES if "MODALITY" in notebook_parameters(nb) else (None,))
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "notebook, extra",
    CASES,
    ids=[nb.stem + "".join(f"-{v}" for v in extra.values()) for nb, extra in CASES],
)
def test_notebook_runs_at_smoke_preset(notebook: Path, extra: dict, tmp_path: Path) -> None:
    import papermill

    run_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(notebook),
        str(tmp_path / notebook.name),
        parameters={"PRESET": "smoke", "RUN_DIR": str(run_dir), "INTERACTIVE": False, **extra},
        cwd=str(ROOT / "notebooks"),
        kernel_name="python3",
        progress_bar=False,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics, f"{notebook.name} wrote an empty metrics.json"


@pytest.mark.slow
def test_config_overrides_reach_the_notebook_s_config(tmp_path: Path) -> None:
    """CONFIG is applied (the tour logs the world's sizes) and a wrong key stops the run, named."""
    import papermill

    tour = ROOT / "notebooks" / "00_tour.ipynb"

    def run(config: str, name: str) -> Path:
        run_dir = tmp_path / name
        papermill.execute_notebook(
            str(tour),
            str(tmp_path / f"{name}.ipynb"),
            parameters={"PRESET": "smoke", "RUN_DIR": str(run_dir), "CONFIG": config},
            cwd=str(ROOT / "notebooks"),
            kernel_name="python3",
            progress_bar=False,
        )
        return run_dir

    metrics = json.loads((run("world.frames=3", "ok") / "metrics.json").read_text())
    assert metrics["video_frames"] == 3  # the smoke preset has 2
    wrong_key = "unknown config key 'world.framez'"
    with pytest.raises(papermill.PapermillExecutionError, match=wrong_key):
        run("world.framez=3", "bad")
