"""The sweep runner on tiny throwaway notebooks: validation, folders, skipping, failures, resume."""

from __future__ import annotations

import argparse
import base64
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from nuwa_lab.__main__ import COMMANDS
from nuwa_lab.lab.experiment import (
    aggregate,
    collect,
    is_finished,
    load_sweep,
    notebook_parameters,
    run_sweep,
    to_markdown,
)
from nuwa_lab.lab.experiment import cli as sweep_command
from nuwa_lab.lab.experiment.lab_runs import read_lab_runs, task_target_rows
from nuwa_lab.lab.experiment.paper import NOT_COMPARABLE
from nuwa_lab.lab.experiment.report import build_report, write_report
from nuwa_lab.lab.experiment.runner import notebook_fingerprint, stale_reason
from nuwa_lab.lab.job import dry_run, lab_plan, lab_runs, run_lab
from nuwa_lab.train.files import atomic_write_json

ROOT = Path(__file__).resolve().parents[2]
# a 1x1 PNG, displayed so the runner has an inline figure to extract
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
    "hKmMIQAAAABJRU5ErkJggg=="
)


def cli(argv: list[str]) -> int:
    """`python -m nuwa_lab sweep ...` without importing the other commands' modules."""
    parser = argparse.ArgumentParser()
    sweep_command.add_arguments(parser)
    return sweep_command.run(parser.parse_args(argv))


def write_notebook(path: Path, extra_params: str = "", fail_at: int = -1) -> Path:
    params = nbformat.v4.new_code_cell(
        'PRESET: str = "tiny"  # smoke, tiny, base\n'
        "SEED: int = 0\n"
        "X: int = 1  # the swept value\n"
        f"FAIL_AT: int = {fail_at}  # raise when X equals this\n"
        'RUN_DIR: str = "../experiments/runs/manual/t"\n' + extra_params
    )
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import base64\n"
        "from IPython.display import Image, display\n"
        "from nuwa_lab.lab.experiment import log_metrics\n"
        f"display(Image(data=base64.b64decode('{PNG}')))\n"
        "if X == FAIL_AT:\n"
        "    raise RuntimeError(f'boom at X={X}')\n"
        "log_metrics(RUN_DIR, y=10 * X + SEED, preset=PRESET, acc={'shape': 0.5})"
    )
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# 99 · Test"), params, body]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "language": "python",
        "display_name": "Python 3",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_record(path: Path, record: dict) -> None:
    """A run.json / metrics.json as the runner leaves it: with its hash (`run.json.sha256`)."""
    atomic_write_json(path, record, sha256=True)


def write_sweep(root: Path, text: str, name: str = "s") -> Path:
    path = root / "experiments" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_notebook(tmp_path / "notebooks" / "99_test.ipynb")
    return tmp_path


def quiet(_: str) -> None:
    pass


def test_sweep_command_is_registered() -> None:
    assert COMMANDS["sweep"][0] == "nuwa_lab.lab.experiment.cli"


def test_parameters_cell_is_read_with_types_defaults_and_help(project: Path) -> None:
    params = notebook_parameters(project / "notebooks" / "99_test.ipynb")
    assert list(params) == ["PRESET", "SEED", "X", "FAIL_AT", "RUN_DIR"]
    assert params["X"].type == "int" and params["X"].default == 1
    assert params["X"].help == "the swept value"
    assert params["PRESET"].check("smoke") is None and params["X"].check("two") is not None


def test_unknown_key_is_an_error_naming_the_key_and_the_valid_ones(project: Path) -> None:
    path = write_sweep(
        project, "notebook: notebooks/99_test.ipynb\nbase: {PRESET: smoke}\ngrid: {Y: [1, 2]}\n"
    )
    with pytest.raises(
        ValueError, match="'Y'.*valid parameters: PRESET, SEED, X, FAIL_AT, RUN_DIR"
    ):
        load_sweep(path)
    assert cli([str(path)]) == 2
    assert not (project / "experiments" / "runs").exists()  # nothing ran


def test_value_of_the_wrong_type_and_unknown_preset_are_errors(project: Path) -> None:
    path = write_sweep(project, "notebook: notebooks/99_test.ipynb\ngrid: {X: [1, two]}\n")
    with pytest.raises(ValueError, match="X is declared `int` but got 'two'"):
        load_sweep(path)
    path = write_sweep(project, "notebook: notebooks/99_test.ipynb\nbase: {PRESET: huge}\n")
    with pytest.raises(ValueError, match="PRESET 'huge' is unknown"):
        load_sweep(path)


def test_missing_notebook_fails_validation_with_a_clear_message(project: Path) -> None:
    path = write_sweep(project, "notebooks: [notebooks/99_test.ipynb, notebooks/42_x.ipynb]\n")
    with pytest.raises(FileNotFoundError, match="42_x.ipynb' does not exist.*99_test.ipynb"):
        load_sweep(path)
    path = write_sweep(project, "notebooks: [notebooks/42_*.ipynb]\n")
    with pytest.raises(FileNotFoundError, match="42_\\*.ipynb' matches no notebook"):
        load_sweep(path)


def test_several_notebooks_give_one_folder_per_notebook_and_point(project: Path) -> None:
    write_notebook(
        project / "notebooks" / "98_other.ipynb", extra_params="MODALITY: str = 'image'\n"
    )
    path = write_sweep(project, "notebooks: [notebooks/9*_*.ipynb]\ngrid: {SEED: [0, 1]}\n")
    sweep = load_sweep(path, preset="smoke")
    assert [r.key for r in sweep.runs()] == [
        "98_other/PRESET=smoke-SEED=0",
        "98_other/PRESET=smoke-SEED=1",
        "99_test/PRESET=smoke-SEED=0",
        "99_test/PRESET=smoke-SEED=1",
    ]
    # a key must be declared by every notebook of the sweep
    path = write_sweep(project, "notebooks: [notebooks/9*_*.ipynb]\ngrid: {MODALITY: [image]}\n")
    with pytest.raises(ValueError, match="99_test.ipynb declares no parameter 'MODALITY'"):
        load_sweep(path)


def test_excluded_grid_points_get_no_run_and_bad_exclusions_are_named(project: Path) -> None:
    path = write_sweep(
        project,
        "notebook: notebooks/99_test.ipynb\ngrid: {SEED: [0, 1], X: [1, 2]}\n"
        "exclude: [{X: 2, SEED: 1}]\n",
    )
    keys = [r.key for r in load_sweep(path, preset="smoke").runs()]
    assert keys == [
        "PRESET=smoke-SEED=0-X=1",
        "PRESET=smoke-SEED=0-X=2",
        "PRESET=smoke-SEED=1-X=1",
    ]
    # a partial point excludes every point that matches it
    path = write_sweep(
        project,
        "notebook: notebooks/99_test.ipynb\ngrid: {SEED: [0, 1], X: [1, 2]}\nexclude: [{X: 2}]\n",
    )
    assert [r.params["X"] for r in load_sweep(path).runs()] == [1, 1]
    for exclude, message in (
        ("[{Y: 2}]", "'Y', which is not a grid key; grid keys: SEED, X"),
        ("[{X: 3}]", "X=3 is not in the grid's \\[1, 2\\]"),
        ("{X: 2}", "must be a list of partial grid points"),
        ("[{}]", "non-empty mapping"),
    ):
        path = write_sweep(
            project,
            "notebook: notebooks/99_test.ipynb\ngrid: {SEED: [0, 1], X: [1, 2]}\n"
            f"exclude: {exclude}\n",
        )
        with pytest.raises(ValueError, match=message):
            load_sweep(path)


def test_grid_runs_into_named_folders_then_skips_and_force_reruns(project: Path) -> None:
    path = write_sweep(
        project,
        "notebook: notebooks/99_test.ipynb\nbase: {PRESET: smoke, SEED: 3}\ngrid: {X: [1, 2]}\n",
    )
    result = run_sweep(path, echo=quiet)
    folder = project / "experiments" / "runs" / "s"
    assert result.exit_code == 0 and not result.skipped
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "PRESET=smoke-X=1",
        "PRESET=smoke-X=2",
    ]
    run_dir = folder / "PRESET=smoke-X=2"
    assert json.loads((run_dir / "metrics.json").read_text())["y"] == 23
    assert json.loads((run_dir / "params.json").read_text()) == {
        "PRESET": "smoke",
        "SEED": 3,
        "X": 2,
    }
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok" and record["wall_time_s"] > 0 and record["peak_mem_mb"] > 10
    assert 0 < record["cpu_time_s"] and len(record["load_avg"]) == 3
    assert {"python", "torch", "nuwa_lab"} <= set(record["versions"]) and "git_revision" in record
    assert (run_dir / "figures" / record["figures"][0]).read_bytes().startswith(b"\x89PNG")
    executed = nbformat.read(run_dir / "99_test.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert str(run_dir) in injected[0].source and ".partial" not in injected[0].source
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary folders left

    again = run_sweep(path, echo=quiet)
    assert len(again.skipped) == 2
    assert json.loads((run_dir / "run.json").read_text())["started"] == record["started"]

    forced = run_sweep(path, force=True, only=["X=2"], echo=quiet)
    assert [r["key"] for r in forced.records] == ["PRESET=smoke-X=2"] and not forced.skipped
    assert json.loads((run_dir / "run.json").read_text())["rerun_reason"] == "forced"

    rows = collect(path)
    assert [(r["X"], r["y"], r["acc.shape"]) for r in rows] == [(1, 13, 0.5), (2, 23, 0.5)]
    assert rows.failed == [] and rows.pending == []


def test_failed_run_is_recorded_others_go_on_and_the_command_fails(project: Path, capsys) -> None:
    path = write_sweep(
        project,
        "notebook: notebooks/99_test.ipynb\nbase: {PRESET: smoke, FAIL_AT: 1}\ngrid: {X: [1, 2]}\n",
    )
    assert cli([str(path), "--quiet"]) == 1
    assert "FAILED PRESET=smoke-X=1" in capsys.readouterr().out
    folder = project / "experiments" / "runs" / "s"
    failed = json.loads((folder / "PRESET=smoke-X=1" / "run.json").read_text())
    assert failed["status"] == "failed" and failed["error"]["ename"] == "RuntimeError"
    assert "boom at X=1" in failed["error"]["evalue"]
    assert (folder / "PRESET=smoke-X=1" / "99_test.ipynb").exists()  # the partial notebook
    assert not (folder / "PRESET=smoke-X=1" / "metrics.json").exists()
    assert is_finished(folder / "PRESET=smoke-X=2")

    rows = collect("s", runs_dir=project / "experiments" / "runs")
    assert [r["X"] for r in rows] == [2]
    assert rows.failed[0]["X"] == 1 and "boom" in rows.failed[0]["error"]


def test_interrupted_sweep_resumes_and_never_reads_half_written_runs(project: Path) -> None:
    path = write_sweep(
        project, "notebook: notebooks/99_test.ipynb\nbase: {PRESET: smoke}\ngrid: {X: [1, 2]}\n"
    )
    folder = project / "experiments" / "runs" / "s"
    # X=1 was interrupted: metrics written, no done marker, and a temporary folder left behind
    half = folder / "PRESET=smoke-X=1"
    half.mkdir(parents=True)
    (half / "metrics.json").write_text('{"y": -1}')
    (folder / ".PRESET=smoke-X=1.partial").mkdir()
    # X=2 finished before the interruption
    done = folder / "PRESET=smoke-X=2"
    done.mkdir()
    write_record(done / "metrics.json", {"y": 20})
    record = {"status": "ok", "params": {"PRESET": "smoke", "X": 2}, "notebook": "x.ipynb"}
    write_record(done / "run.json", record)
    assert collect(path).pending == ["PRESET=smoke-X=1"]
    assert [r["y"] for r in collect(path)] == [20]  # the half-written run is not a result

    result = run_sweep(path, echo=quiet)
    assert [r["skipped"] for r in result.records] == [False, True]
    assert json.loads((half / "metrics.json").read_text())["y"] == 10
    assert not (folder / ".PRESET=smoke-X=1.partial").exists()
    assert [r["y"] for r in collect(path)] == [10, 20]


def test_a_finished_run_with_other_parameters_or_code_is_not_finished(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "notebooks" / "99_test.ipynb")
    record = {"status": "ok", "params": {"X": [1, 2]}}
    record["notebook_sha256"] = notebook_fingerprint(notebook)
    write_record(tmp_path / "run.json", record)
    assert is_finished(tmp_path, {"X": (1, 2)}, notebook)
    assert stale_reason(tmp_path, {"X": (1, 3)}, notebook) == "parameters changed"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[0].source += "\nMore prose."  # markdown: not code, the run stays finished
    nbformat.write(nb, notebook)
    assert is_finished(tmp_path, {"X": (1, 2)}, notebook)
    nb.cells[2].source += "\nprint('changed')"
    nbformat.write(nb, notebook)
    assert stale_reason(tmp_path, {"X": (1, 2)}, notebook) == "the notebook's code changed"


def test_to_markdown_and_aggregate_over_seeds() -> None:
    rows = [
        {"ATTENTION": "full", "SEED": 0, "loss": 1.0},
        {"ATTENTION": "full", "SEED": 1, "loss": 3.0},
        {"ATTENTION": "nearby", "SEED": 0, "loss": 2.0, "note": "a|b"},
    ]
    table = aggregate(rows, by=["ATTENTION"])
    assert table == [
        {"ATTENTION": "full", "n": 2, "loss": 2.0, "loss_std": pytest.approx(2**0.5)},
        {"ATTENTION": "nearby", "n": 1, "loss": 2.0, "loss_std": 0.0},
    ]
    text = to_markdown(rows, ["ATTENTION", "loss", "note"])
    assert text.splitlines()[0] == "| ATTENTION | loss | note |"
    assert text.splitlines()[2] == "| full | 1 | – |" and "a\\|b" in text


@pytest.mark.parametrize("sweep_file", sorted((ROOT / "experiments").glob("*.yaml")), ids=str)
def test_project_sweeps_validate_when_their_notebooks_exist(sweep_file: Path) -> None:
    try:
        sweep = load_sweep(sweep_file)
    except FileNotFoundError as e:  # a notebook not written yet: the message says which
        assert "does not exist" in str(e) or "matches no notebook" in str(e)
        pytest.skip(str(e).splitlines()[0])
    assert sweep.runs()


def test_lab_plan_follows_the_dependency_stages(tmp_path: Path) -> None:
    for name in ["10_results", "05_y", "12_extra", "00_tour", "04_x", "02_tok"]:
        (tmp_path / "notebooks").mkdir(exist_ok=True)
        (tmp_path / "notebooks" / f"{name}.ipynb").write_text("{}")
    plan = [nb.stem for _, nb in lab_plan(tmp_path)]
    assert plan == ["00_tour", "02_tok", "04_x", "05_y", "12_extra", "10_results"]


def test_the_optional_notebook_runs_only_when_named(tmp_path: Path) -> None:
    for name in ["10_results", "11_your_own_data", "06_task"]:
        write_notebook(tmp_path / "notebooks" / f"{name}.ipynb")
    assert [nb.stem for _, nb in lab_plan(tmp_path)] == ["06_task", "10_results"]
    named = [(stage, nb.stem) for stage, nb in lab_plan(tmp_path, optional=["11"])]
    assert named[1] == ("your own data", "11_your_own_data") and len(named) == 3
    assert [name for *_, name in lab_runs(tmp_path, "tiny", optional=["11"])][1] == (
        "11_your_own_data"
    )
    plan = dry_run("tiny", root=tmp_path, preview=False, artifacts_root=tmp_path / "artifacts")
    assert "optional, not run: 11_your_own_data.ipynb" in plan and "--only 11" in plan
    only = dry_run("tiny", root=tmp_path, only=["11"], artifacts_root=tmp_path / "artifacts")
    assert "11_your_own_data" in only and "optional, not run" not in only


def test_lab_runs_every_notebook_records_failures_and_writes_the_report(tmp_path: Path) -> None:
    write_notebook(tmp_path / "notebooks" / "00_ok.ipynb")
    write_notebook(tmp_path / "notebooks" / "02_broken.ipynb", fail_at=1)
    assert run_lab("smoke", root=tmp_path, preview=False, progress=False, echo=quiet) == 1
    folder = tmp_path / "experiments" / "runs" / "lab-smoke"
    ok = json.loads((folder / "00_ok" / "run.json").read_text())
    assert ok["status"] == "ok" and ok["params"] == {"PRESET": "smoke"}
    assert json.loads((folder / "02_broken" / "run.json").read_text())["status"] == "failed"

    reports = tmp_path / "experiments" / "reports"
    assert [p.name for p in reports.iterdir()] == ["smoke"]  # a smoke lab writes its own report
    report = (reports / "smoke" / "report.md").read_text()
    assert NOT_COMPARABLE in report and "## Run times" in report
    assert "| y | 10 |" in report  # 00's metrics table
    assert "**Failed** in cell" in report and "boom at X=1" in report
    # figures are small copies beside the report, not links into the git-ignored runs/
    assert "![cell03_0.png](figures/00_ok-cell03_0.png)" in report
    assert (reports / "smoke" / "figures" / "00_ok-cell03_0.png").is_file()
    assert "runs/" not in report.split("## Run times")[1].split("## Ablation")[0]
    assert "a 1024³ fp32 matmul ran at" in report  # the host's speed, beside the lab's times
    page = (reports / "smoke" / "report.html").read_text()
    assert "data:image/png;base64," in page and "<table>" in page

    # a second lab re-runs only what failed
    assert run_lab("smoke", root=tmp_path, preview=False, progress=False, echo=quiet) == 1
    assert json.loads((folder / "00_ok" / "run.json").read_text())["started"] == ok["started"]


def test_report_puts_the_paper_beside_our_sweep_results(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    write_sweep(
        tmp_path,
        "notebook: notebooks/05_multitask_pretraining.ipynb\nbase: {PRESET: tiny}\n"
        "grid: {TASK_MIX: [t2v, t2v+t2i]}\n",
        name="multitask_ablation",
    )
    for mix, acc in [("t2v", 0.5), ("t2v+t2i", 0.7)]:
        run_dir = (
            tmp_path / "experiments" / "runs" / "multitask_ablation" / f"PRESET=tiny-TASK_MIX={mix}"
        )
        run_dir.mkdir(parents=True)
        write_record(run_dir / "metrics.json", {"t2v_accuracy": acc})
        record = {"status": "ok", "params": {"PRESET": "tiny", "TASK_MIX": mix}, "notebook": "x"}
        write_record(run_dir / "run.json", {**record, "wall_time_s": 1.0})
    lab_run = tmp_path / "experiments" / "runs" / "lab-tiny" / "02_vqgan_tokenizer"
    lab_run.mkdir(parents=True)
    write_record(lab_run / "metrics.json", {"seg_pixel_accuracy": 0.975})
    write_record(lab_run / "run.json", {**record, "wall_time_s": 60.0})
    text = build_report("tiny", root=tmp_path).markdown()
    assert "VQ-GAN-Seg pixel accuracy of reconstructed sketches, MSCOCO: 96.82%; " in text
    assert "ours (`seg_pixel_accuracy`): 0.975" in text
    assert "| runs | 1 | 1 |" in text
    assert "| t2v_accuracy | 0.5 | 0.7 |" in text
    assert (
        "| **paper**: CLIPSIM of T2V samples, MSR-VTT (higher is better) | 0.2314 | 0.2379 |"
        in text
    )
    assert text.count(NOT_COMPARABLE) >= 3
    assert "Not run at preset" not in text
    assert "Not run at preset smoke" in build_report("smoke", root=tmp_path).markdown()


def test_collect_keeps_the_sweep_files_order_and_skips_hidden_folders(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    (folder / ".ATTENTION=axial.partial").mkdir(parents=True)
    (folder / ".ATTENTION=axial.partial" / "run.json").write_text('{"status": "ok"}')
    (folder / "sweep.json").write_text(json.dumps({"grid": {"ATTENTION": ["full", "axial"]}}))
    for pattern in ["axial", "full"]:
        (folder / f"ATTENTION={pattern}").mkdir()
        record = {"status": "ok", "params": {"ATTENTION": pattern}, "notebook": "04_x.ipynb"}
        write_record(folder / f"ATTENTION={pattern}" / "run.json", record)
    assert [r["ATTENTION"] for r in collect(folder)] == ["full", "axial"]


def test_lab_runs_a_notebook_with_a_modality_parameter_once_per_modality(tmp_path: Path) -> None:
    write_notebook(tmp_path / "notebooks" / "00_tour.ipynb")
    write_notebook(tmp_path / "notebooks" / "06_task.ipynb", 'MODALITY: str = "image"\n')
    runs = [(nb.stem, params, name) for _, nb, params, name in lab_runs(tmp_path, "tiny")]
    assert runs == [
        ("00_tour", {"PRESET": "tiny"}, "00_tour"),
        ("06_task", {"PRESET": "tiny", "MODALITY": "image"}, "06_task-image"),
        ("06_task", {"PRESET": "tiny", "MODALITY": "video"}, "06_task-video"),
    ]


def test_lab_measures_task_notebooks_on_its_presets_evaluation_size(tmp_path: Path) -> None:
    from nuwa_lab.lab.job import LAB_NUM_EVAL

    write_notebook(tmp_path / "notebooks" / "00_tour.ipynb")
    write_notebook(tmp_path / "notebooks" / "05_model.ipynb", "NUM_EVAL: int = 0\n")
    task_params = 'MODALITY: str = "image"\nNUM_EVAL: int = 0\n'
    write_notebook(tmp_path / "notebooks" / "07_task.ipynb", task_params)
    for preset in ("tiny", "smoke"):
        params = {name: p for _, _, p, name in lab_runs(tmp_path, preset)}
        assert "NUM_EVAL" not in params["00_tour"]  # a notebook without the parameter
        assert "NUM_EVAL" not in params["05_model"]  # not a task notebook: its own default
        for modality in ("image", "video"):
            assert params[f"07_task-{modality}"].get("NUM_EVAL") == LAB_NUM_EVAL.get(preset)
    assert LAB_NUM_EVAL["tiny"] == 256 and "smoke" not in LAB_NUM_EVAL  # CI stays at 2 items


def test_report_lists_every_task_run_against_its_targets(tmp_path: Path) -> None:
    write_notebook(tmp_path / "notebooks" / "06_task.ipynb", 'MODALITY: str = "image"\n')
    folder = tmp_path / "experiments" / "runs" / "lab-tiny"
    logged = {
        "image": {"task": "t2i", "model_variant": "pretrained", "test_acc_all": 0.95,
                  "target_acc_all_test": True, "held_out_acc_all": 0.5,
                  "target_acc_all_held_out": False},
        "video": {"task": "tv2v", "model_variant": "pretrained", "test_edit_success": 0.25,
                  "target_edit_success_test": False},
    }  # fmt: skip
    for modality, metrics in logged.items():
        run = folder / f"06_task-{modality}"
        run.mkdir(parents=True)
        write_record(run / "metrics.json", metrics)
        write_record(run / "run.json", {"status": "ok", "wall_time_s": 1.0})
    rows = task_target_rows(read_lab_runs(folder, tmp_path))
    assert [(r["task"], r["reached"], r["met"]) for r in rows] == [
        ("T2I", 0.95, "yes"),
        ("T2I", 0.5, "**no**"),
        ("TV2V", 0.25, "**no**"),
        ("TV2V", None, "not measured"),  # given_tokens_kept was not logged
    ]
    report = build_report("tiny", root=tmp_path).markdown()
    assert "## The eight tasks against their targets" in report
    assert "### 99 · Test (video)" in report


def test_a_rate_target_carries_its_interval_and_says_whether_it_clears_the_goal(
    tmp_path: Path,
) -> None:
    """0.91 on 256 items meets a 0.90 goal, but its Wilson interval (0.869-0.939) does not clear it;
    0.98 on 256 clears it (0.955-0.992); the n comes from n_items, else the NUM_EVAL parameter."""
    write_notebook(tmp_path / "notebooks" / "06_task.ipynb", 'MODALITY: str = "image"\n')
    folder = tmp_path / "experiments" / "runs" / "lab-tiny"
    logged = {
        "image": ({"task": "t2i", "test_acc_all": 0.91, "test_n_items": 256}, {}),
        "video": ({"task": "t2v", "test_acc_all": 0.98}, {"NUM_EVAL": 256}),
    }
    for modality, (metrics, params) in logged.items():
        run = folder / f"06_task-{modality}"
        run.mkdir(parents=True)
        write_record(run / "metrics.json", metrics)
        (run / "params.json").write_text(json.dumps(params))
        write_record(run / "run.json", {"status": "ok", "wall_time_s": 1.0})
    rows = [r for r in task_target_rows(read_lab_runs(folder, tmp_path)) if r["reached"]]
    assert [(r["task"], r["95% interval"], r["interval clears the goal"]) for r in rows] == [
        ("T2I", "[0.869, 0.939] (n=256)", "no"),
        ("T2V", "[0.955, 0.992] (n=256)", "yes"),
    ]


def test_a_mean_target_carries_its_logged_bootstrap_interval_and_a_margin_its_own(
    tmp_path: Path,
) -> None:
    """TI2I's preservation gap (goal <= 2 dB) with the bootstrap interval the run logged; V2V's
    "beats copy-last" (a yes/no of means) with the interval of its PSNR gain over copy-last."""
    folder = tmp_path / "experiments" / "runs" / "lab-tiny"
    logged = {
        "09_task-image": {
            "task": "ti2i",
            "test_preservation_gap_db": 1.7,
            "test_preservation_gap_db_low": 1.5,
            "test_preservation_gap_db_high": 2.1,
            "test_n_items": 256,
        },
        "08_task-video": {
            "task": "v2v",
            "test_beats_copy_last_from_frame2": 1.0,
            "target_beats_copy_last_from_frame2_test": True,
            "test_psnr_gain_from_frame2_db": 1.2,
            "test_psnr_gain_from_frame2_db_low": 0.8,
            "test_psnr_gain_from_frame2_db_high": 1.6,
        },
    }
    for name, metrics in logged.items():
        run = folder / name
        run.mkdir(parents=True)
        write_record(run / "metrics.json", metrics)
        write_record(run / "run.json", {"status": "ok", "wall_time_s": 1.0})
    rows = {
        r["task"]: r
        for r in task_target_rows(read_lab_runs(folder, tmp_path))
        if r["reached"] is not None
    }
    gap = rows["TI2I"]
    assert gap["95% interval"] == "[1.500, 2.100] (n=256)"
    assert gap["interval clears the goal"] == "no"  # 2.1 > 2 dB: another draw could miss it
    beats = [r for r in task_target_rows(read_lab_runs(folder, tmp_path)) if "copy" in r["target"]]
    assert beats[0]["95% interval"] == "`psnr_gain_from_frame2_db` [0.8, 1.6]"
    assert beats[0]["interval clears the goal"] == "yes"


def test_a_rebuilt_report_keeps_the_notebook_runs_a_fresh_checkout_lacks(tmp_path: Path) -> None:
    write_notebook(tmp_path / "notebooks" / "00_ok.ipynb")
    write_notebook(tmp_path / "notebooks" / "01_two.ipynb")
    runs = tmp_path / "experiments" / "runs"
    for stem, y in (("00_ok", 10), ("01_two", 20)):
        run = runs / "lab-tiny" / stem
        (run / "figures").mkdir(parents=True)
        (run / "figures" / "cell03_0.png").write_bytes(base64.b64decode(PNG))
        write_record(run / "metrics.json", {"y": y})
        record = {"status": "ok", "params": {"PRESET": "tiny"}, "wall_time_s": 60.0}
        write_record(run / "run.json", {**record, "has_metrics": True})
    md, _ = write_report("tiny", root=tmp_path)
    first = md.read_text()
    assert "| y | 10 |" in first and "| y | 20 |" in first
    kept = tmp_path / "experiments" / "reports" / "tiny" / "runs"
    assert sorted(p.name for p in kept.iterdir()) == ["00_ok", "01_two"]

    shutil.rmtree(runs / "lab-tiny" / "00_ok")  # a fresh machine that ran 01 only
    again = write_report("tiny", root=tmp_path)[0].read_text()
    assert "| y | 10 |" in again and "| y | 20 |" in again
    assert "![cell03_0.png](figures/00_ok-cell03_0.png)" in again
    assert (md.parent / "figures" / "00_ok-cell03_0.png").is_file()  # not pruned: still shown
    assert "read from the records an earlier report kept" in again and "99 · Test" in again

    shutil.rmtree(runs)  # nothing run here at all: the kept records alone rebuild it
    assert "| y | 10 |" in write_report("tiny", root=tmp_path)[0].read_text()

    shutil.rmtree(kept)  # no runs, no records: refuse rather than drop the notebook sections
    with pytest.raises(FileNotFoundError, match="would drop their sections") as refused:
        write_report("tiny", root=tmp_path)
    assert "lab --preset tiny`; an optional notebook" in str(refused.value)  # how to restore them
    assert md.read_text().count("| y |") == 2
