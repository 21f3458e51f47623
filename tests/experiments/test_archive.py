"""Kept results: a sweep's finished runs outlive their runs folder (a fresh machine or clone)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_runner import cli, quiet, write_notebook, write_sweep

from nuwa_lab.lab.experiment import collect, load_sweep, run_sweep
from nuwa_lab.lab.experiment.archive import kept_folders, results_dir
from nuwa_lab.lab.job import LAB_NUM_EVAL
from nuwa_lab.train.files import atomic_write_json

ROOT = Path(__file__).resolve().parents[2]

SWEEP = "notebook: notebooks/99_test.ipynb\nbase: {PRESET: tiny, SEED: 3}\ngrid: {X: [1, 2]}\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_notebook(tmp_path / "notebooks" / "99_test.ipynb")
    return tmp_path


def test_finished_runs_are_kept_and_a_fresh_machine_skips_and_reads_them(project: Path) -> None:
    path = write_sweep(project, SWEEP)
    runs, kept = project / "experiments" / "runs", project / "experiments" / "results" / "s"
    assert run_sweep(path, echo=quiet).exit_code == 0
    assert results_dir(runs) == kept.parent
    for x in (1, 2):
        folder = kept / f"PRESET=tiny-X={x}"
        names = sorted(p.name for p in folder.iterdir())
        assert names == [
            "metrics.json",
            "metrics.json.sha256",
            "params.json",
            "run.json",
            "run.json.sha256",
        ]
        assert json.loads((folder / "metrics.json").read_text())["y"] == 10 * x + 3
    assert json.loads((kept / "sweep.json").read_text())["grid"] == {"X": [1, 2]}

    shutil.rmtree(runs)  # a fresh clone: the committed results, no run folders
    again = run_sweep(path, echo=quiet)
    assert len(again.skipped) == 2 and not (runs / "s" / "PRESET=tiny-X=1").exists()
    rows = collect(path)
    assert [(r["X"], r["y"]) for r in rows] == [(1, 13), (2, 23)]
    assert rows.run_dir(rows[0]) == kept / "PRESET=tiny-X=1"

    write_sweep(project, SWEEP.replace("[1, 2]", "[1, 2, 3]"))
    grown = run_sweep(path, echo=quiet)
    assert [r["key"] for r in grown.records if not r["skipped"]] == ["PRESET=tiny-X=3"]
    assert [r["y"] for r in collect(path)] == [13, 23, 33]


def test_a_run_folder_wins_over_its_kept_copy_and_a_damaged_copy_is_not_read(
    project: Path,
) -> None:
    path = write_sweep(project, SWEEP)
    run_sweep(path, echo=quiet)
    kept = project / "experiments" / "results" / "s"
    atomic_write_json(kept / "PRESET=tiny-X=1" / "metrics.json", {"y": 999})  # hash now stale
    with pytest.warns(UserWarning, match="metrics.json"):
        assert set(kept_folders(project / "experiments" / "runs", "s")) == {"PRESET=tiny-X=2"}
    with pytest.warns(UserWarning, match="metrics.json"):  # the damaged copy, named again
        assert [r["y"] for r in collect(path)] == [13, 23]  # the run folders are read

    shutil.rmtree(project / "experiments" / "runs")
    with pytest.warns(UserWarning, match="metrics.json"):
        again = run_sweep(path, echo=quiet)  # the damaged copy runs again, the other is skipped
    assert [r["skipped"] for r in again.records] == [False, True]
    assert json.loads((kept / "PRESET=tiny-X=1" / "metrics.json").read_text())["y"] == 13


def test_smoke_runs_are_not_kept_and_no_keep_neither_keeps_nor_skips(project: Path) -> None:
    smoke = write_sweep(project, SWEEP.replace("tiny", "smoke"), name="sm")
    run_sweep(smoke, echo=quiet)
    assert not (project / "experiments" / "results" / "sm").exists()

    path = write_sweep(project, SWEEP)
    assert cli([str(path), "--no-keep", "--quiet"]) == 0
    assert not (project / "experiments" / "results" / "s").exists()


def test_keep_results_copies_finished_runs_and_dry_run_says_kept(project: Path, capsys) -> None:
    path = write_sweep(project, SWEEP)
    cli([str(path), "--no-keep", "--quiet"])
    capsys.readouterr()
    assert cli([str(path), "--keep-results"]) == 0
    assert "kept 2 finished runs of sweep s" in capsys.readouterr().out
    shutil.rmtree(project / "experiments" / "runs")
    assert cli([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("    kept  99_test.ipynb") == 2
    assert cli([str(path), "--table"]) == 0
    assert "| 23 |" in capsys.readouterr().out.replace("23.0", "23")


@pytest.mark.parametrize("sweep_file", sorted((ROOT / "experiments").glob("*.yaml")), ids=str)
def test_task_sweeps_measure_on_as_many_items_as_the_lab(sweep_file: Path) -> None:
    """A task target checked by a sweep is checked on the lab's item count, not the preset's."""
    sweep = load_sweep(sweep_file)
    for run in sweep.runs():
        preset = run.params.get("PRESET")
        if "MODALITY" in run.params and preset in LAB_NUM_EVAL:
            assert run.params.get("NUM_EVAL") == LAB_NUM_EVAL[preset], run.key
