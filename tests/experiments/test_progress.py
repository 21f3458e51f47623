"""Progress of the main job: the snapshot writer, the tqdm hook, the tail, its lines, estimates."""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
import tqdm.auto as tqdm_auto
import tqdm.autonotebook as tqdm_autonotebook
from tqdm.std import tqdm as std_tqdm

from nuwa_lab.config import make_config
from nuwa_lab.lab import job, progress
from nuwa_lab.lab.experiment import worker
from nuwa_lab.lab.experiment.runner import notebook_fingerprint
from nuwa_lab.lab.progress import (
    CELLS_FILE,
    KERNEL_FILE,
    PROGRESS_ENV,
    ReportingTqdm,
    Snapshots,
    Tail,
    describe_bar,
    eta_seconds,
    format_line,
    read_snapshot,
    write_json_atomic,
)
from nuwa_lab.lab.schedule import Estimate, estimate, expected_time
from nuwa_lab.recipes import artifact_dir
from nuwa_lab.train.files import atomic_write_json


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch):
    """Whatever `install` patches is put back after the test."""
    monkeypatch.setattr(tqdm_auto, "tqdm", tqdm_auto.tqdm)
    monkeypatch.setattr(tqdm_autonotebook, "tqdm", tqdm_autonotebook.tqdm)
    monkeypatch.setattr(ReportingTqdm, "snapshots", None)


def quiet_bar(**kwargs) -> std_tqdm:
    return std_tqdm(file=io.StringIO(), mininterval=0, **kwargs)


def test_snapshots_write_at_most_once_per_interval_and_at_once_when_a_bar_closes(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "kernel.json"
    snapshots = Snapshots(path, notebook="02_tok", interval=1.0, clock=clock)
    bar = quiet_bar(total=10, desc="vqgan")
    bar.update(1)
    assert snapshots.update(bar) and snapshots.writes == 1
    for _ in range(5):  # the same second: nothing written
        bar.update(1)
        assert not snapshots.update(bar)
    assert read_snapshot(path)["bars"][0]["n"] == 1
    clock.now += 1.0
    bar.update(1)
    assert snapshots.update(bar) and snapshots.writes == 2
    written = read_snapshot(path)
    assert written["notebook"] == "02_tok" and written["bars"][0]["n"] == 7
    assert written["bars"][0]["desc"] == "vqgan" and written["bars"][0]["total"] == 10

    bar.close()
    assert snapshots.close(bar) and snapshots.writes == 3  # within the second, all the same
    assert read_snapshot(path)["bars"] == []
    assert not snapshots.close(quiet_bar(total=3))  # a bar never shown: nothing to say


def test_a_snapshot_is_renamed_into_place_whole_and_a_failed_write_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kernel.json"
    write_json_atomic(path, {"bars": [1]})
    renamed = []
    real_replace = os.replace

    def replace(src, dst):  # what is renamed over the target is already the whole file
        renamed.append((Path(src).parent, json.loads(Path(src).read_text())))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_json_atomic(path, {"bars": [2]})
    assert renamed == [(tmp_path, {"bars": [2]})]
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bars": [object()]})
    assert json.loads(path.read_text()) == {"bars": [2]}
    assert [p.name for p in tmp_path.iterdir()] == ["kernel.json"]  # no temporary file left


def test_the_hooked_tqdm_draws_the_same_bar_and_reports_it(tmp_path: Path, hooked) -> None:
    snapshots = progress.install(tmp_path / "kernel.json", notebook="nb", interval=0.0)
    from tqdm.auto import tqdm  # as the library imports it, after the hook

    assert tqdm is ReportingTqdm and tqdm_autonotebook.tqdm is ReportingTqdm
    drawn = {}
    for cls in (std_tqdm, tqdm):
        out = io.StringIO()
        bar = cls(total=4, desc="probe", file=out, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}")
        for _ in range(4):
            bar.update(1)
            bar.set_postfix({"loss": "0.5"}, refresh=False)
        if cls is tqdm:
            shown = read_snapshot(tmp_path / "kernel.json")["bars"]
        bar.close()
        drawn[cls] = out.getvalue()
    assert drawn[tqdm] == drawn[std_tqdm]
    assert [(b["desc"], b["n"], b["total"], b["postfix"]) for b in shown] == [
        ("probe", 4, 4, "loss=0.5")
    ]
    assert read_snapshot(tmp_path / "kernel.json")["bars"] == []  # closed

    writes = snapshots.writes
    for _ in tqdm(range(5), disable=True):  # a disabled bar reports nothing
        pass
    assert snapshots.writes == writes


def test_eta_is_what_is_left_at_the_rate() -> None:
    assert eta_seconds({"n": 1200, "total": 2000, "rate": 4.0}) == 200.0
    assert eta_seconds({"n": 1200, "total": None, "rate": 4.0}) is None
    assert eta_seconds({"n": 0, "total": 2000, "rate": None}) is None
    assert eta_seconds({"n": 2001, "total": 2000, "rate": 4.0}) == 0.0


def test_a_known_snapshot_gives_a_known_line() -> None:
    train = {
        "desc": "vqgan",
        "n": 1200,
        "total": 2000,
        "elapsed": 290.0,
        "rate": 4.1,
        "postfix": "rec=0.0123, lr=0.0003",
        "unit": "it",
    }
    assert describe_bar(train) == (
        "vqgan 1200/2000 (60%) rec=0.0123, lr=0.0003 · 4.1 it/s · ETA 3.3 min"
    )
    slow = {"desc": "features", "n": 3, "total": None, "rate": 0.5, "unit": "it"}
    assert describe_bar(slow) == "features 3 · 2 s/it"
    cells = {"bars": [{"desc": "Executing", "n": 9, "total": 23, "rate": 0.1, "unit": "cell"}]}
    kernel = {"notebook": "02_vqgan_tokenizer", "bars": [train]}
    assert format_line("02_vqgan_tokenizer", 192.0, cells, kernel) == (
        "... 02_vqgan_tokenizer 3.2 min · cell 10/23 · "
        "vqgan 1200/2000 (60%) rec=0.0123, lr=0.0003 · 4.1 it/s · ETA 3.3 min"
    )
    assert format_line("03_attention_3d", 30.0, None, None) == "... 03_attention_3d 30 s"
    done = format_line("03_attention_3d", 95.0, {"bars": []}, {"bars": []})
    assert done == "... 03_attention_3d 1.6 min · all cells run"


def test_the_tail_prints_the_running_notebooks_snapshots_and_restores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    lines: list[str] = []
    write_json_atomic(tmp_path / KERNEL_FILE, {"bars": [{"desc": "old", "n": 1}]})
    with Tail(tmp_path, echo=lines.append, every=0.05, poll=0.01) as tail:
        with tail.running("06_task-image"):
            assert os.environ[PROGRESS_ENV] == str(tmp_path)
            assert not (tmp_path / KERNEL_FILE).exists()  # an earlier notebook's is gone
            bar = {"desc": "sampling", "n": 5, "total": 10, "rate": 2.0, "unit": "it"}
            write_json_atomic(tmp_path / KERNEL_FILE, {"bars": [bar]})
            write_json_atomic(tmp_path / CELLS_FILE, {"bars": [{"n": 2, "total": 9}]})
            deadline = time.monotonic() + 10
            while not lines and time.monotonic() < deadline:
                time.sleep(0.01)
        assert PROGRESS_ENV not in os.environ
        count = len(lines)
        time.sleep(0.2)
        assert len(lines) == count  # nothing is printed between notebooks
    assert lines[0].startswith("... 06_task-image ")
    assert lines[0].endswith(" · cell 3/9 · sampling 5/10 (50%) · 2 it/s · ETA 2 s")


def test_the_worker_points_the_kernel_at_the_start_up_file_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hooked
) -> None:
    spec = {"notebook": str(tmp_path / "02_tok.ipynb"), "progress": True}
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.delenv("PYTHONSTARTUP", raising=False)
    with worker.reporting_progress(spec) as bar:
        assert bar is True and "PYTHONSTARTUP" not in os.environ  # papermill's own bar
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path))
    with worker.reporting_progress(spec) as bar:
        startup = Path(os.environ["PYTHONSTARTUP"])
        assert bar["file"].name == os.devnull  # papermill's bar reports instead of drawing
        assert os.environ[progress.NOTEBOOK_ENV] == "02_tok"
        code = startup.read_text()
        assert "install_from_environment()" in code
        binds = (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.NamedExpr)
        assert not [n for n in ast.walk(ast.parse(code)) if isinstance(n, binds)]
    assert "PYTHONSTARTUP" not in os.environ and progress.NOTEBOOK_ENV not in os.environ
    assert tqdm_auto.tqdm is ReportingTqdm  # papermill's bar, made in the worker, reports
    assert ReportingTqdm.snapshots.path == tmp_path / CELLS_FILE


def test_estimates_come_from_earlier_records_else_the_readme_at_tiny(tmp_path: Path) -> None:
    run = tmp_path / "06_task-video"
    run.mkdir()
    params = {"PRESET": "tiny", "MODALITY": "video"}
    assert estimate(tmp_path, "tiny", "06_task-video", params) == Estimate(11, "README, tiny")
    assert estimate(tmp_path, "tiny", "03_attention", {}) == Estimate(0.5, "README, tiny")
    assert estimate(tmp_path, "base", "06_task-video", params) == Estimate(None, "no estimate")
    (run / "run.json").write_text(json.dumps({"status": "failed", "wall_time_s": 30.0}))
    assert estimate(tmp_path, "tiny", "06_task-video", params).source == "README, tiny"
    (run / "run.json").write_text(json.dumps({"status": "ok", "wall_time_s": 300.0}))
    assert estimate(tmp_path, "base", "06_task-video", params) == Estimate(5.0, "earlier run")

    guesses = [Estimate(5.0, "earlier run"), Estimate(11, "README, tiny")]
    assert expected_time(guesses + [Estimate(None, "no estimate")], left=True) == (
        "about 16 min left (3 runs: 1 timed by an earlier run, 1 from the README, tiny, "
        "1 without an estimate)"
    )
    assert expected_time([Estimate(None, "no estimate")]) == (
        "unknown time (1 run: 1 without an estimate)"
    )
    assert expected_time([], left=True) == "nothing left"


# --- the main job: the plan (--dry-run) and the progress lines of a real run --------------------


def write_notebook(path: Path, params: str = "", body: str = "") -> Path:
    """A notebook with a parameters cell (PRESET, SEED, RUN_DIR + `params`) and a `body` cell
    that ends by logging a metric."""
    cell = nbformat.v4.new_code_cell(
        'PRESET: str = "tiny"  # smoke, tiny\nSEED: int = 0\nRUN_DIR: str = "."\n' + params
    )
    cell.metadata["tags"] = ["parameters"]
    body += "\nfrom nuwa_lab.lab.experiment import log_metrics\nlog_metrics(RUN_DIR, y=1)"
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# 99 · Test"), cell, nbformat.v4.new_code_cell(body)]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def lab_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    return job.run(parser.parse_args(argv))


def test_dry_run_prints_the_plan_skips_finished_runs_and_knows_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    done = write_notebook(tmp_path / "notebooks" / "00_tour.ipynb")
    write_notebook(tmp_path / "notebooks" / "06_task.ipynb", 'MODALITY: str = "image"\n')
    finished = tmp_path / "experiments" / "runs" / "lab-tiny" / "00_tour"
    finished.mkdir(parents=True)
    record = {"status": "ok", "params": {"PRESET": "tiny"}, "wall_time_s": 90.0}
    atomic_write_json(
        finished / "run.json",
        {**record, "notebook_sha256": notebook_fingerprint(done)},
        sha256=True,
    )
    artifacts = tmp_path / "artifacts"
    probe = artifact_dir("probe", make_config("tiny", seed=0, device="auto"), root=artifacts)
    probe.mkdir(parents=True)
    (probe / "meta.json").write_text("{}")  # a finished artifact
    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(artifacts))
    monkeypatch.chdir(tmp_path)

    assert lab_command(["--dry-run", "--no-preview"]) == 0
    text = capsys.readouterr().out
    # each line with its spaces collapsed and without the artifact's folder, "(probe-1a2b...)"
    lines = [
        re.sub(r" \([a-z_0-9]+-[0-9a-f]{12}\)$", "", " ".join(x.split())) for x in text.splitlines()
    ]
    assert "00_tour finished earlier: skipped" in lines
    assert "06_task-image runs (not run yet), ~6.0 min (README, tiny)" in lines
    assert "06_task-video runs (not run yet), ~11.0 min (README, tiny)" in lines
    image = lines[lines.index("parameters: MODALITY=image") + 1 :]
    assert image[:4] == [
        "vqgan trains here",
        "probe cached",
        "nuwa_finetuned_t2i trains here",
        "nuwa trains here, to train nuwa_finetuned_t2i from it",
    ]
    video = lines[lines.index("parameters: MODALITY=video") + 1 :]
    assert video[:4] == [
        "vqgan trained earlier by 06_task-image",
        "video_probe trains here",
        "nuwa_finetuned_t2v trains here",
        "nuwa_finetuned_t2i trained earlier by 06_task-image, to train nuwa_finetuned_t2v from it",
    ]
    assert "2 of 3 runs will run, 1 finished earlier (skipped)." in lines
    assert lines[-1] == (
        "expected time on this machine: about 17 min (2 runs: 2 from the README, tiny)"
    )
    assert sorted(p.name for p in (tmp_path / "experiments" / "runs" / "lab-tiny").iterdir()) == [
        "00_tour"
    ]  # nothing ran
    assert not any(artifacts.glob("nuwa*"))

    assert lab_command(["--dry-run", "--force", "--only", "00"]) == 0
    out = capsys.readouterr().out
    assert "00_tour runs (--force), ~1.5 min (earlier run)" in " ".join(out.split())


@pytest.mark.slow  # ~20-40 s: two notebooks through papermill, kernels started on a busy machine
def test_a_lab_run_prints_the_notebooks_progress_bars_and_what_is_left(tmp_path: Path) -> None:
    loop = (
        "import time\nfrom tqdm.auto import tqdm\n"
        "bar = tqdm(total=30, desc='train thing')\n"
        "for step in range(30):\n"
        "    time.sleep(0.15)\n"
        "    bar.update(1)\n"
        "    bar.set_postfix({'loss': f'{1 / (step + 1):.3g}'}, refresh=False)\n"
        "bar.close()\n"
    )
    write_notebook(tmp_path / "notebooks" / "00_bar.ipynb", body=loop)
    write_notebook(tmp_path / "notebooks" / "01_quick.ipynb")
    lines: list[str] = []
    code = job.run_lab("smoke", root=tmp_path, preview=False, progress_every=1.0, echo=lines.append)
    assert code == 0, lines
    progress_lines = [line for line in lines if line.startswith("... 00_bar ")]
    assert any(" · train thing " in line and "/30 (" in line for line in progress_lines), lines
    assert any("loss=" in line and "ETA" in line for line in progress_lines), lines
    assert "2 of 2 notebook runs to do: unknown time (2 runs: 2 without an estimate)" in lines
    assert "    unknown time left (1 run: 1 without an estimate)" in lines
    assert lines[lines.index("time per stage:") + 1].endswith("  the tour and the Shapes World")

    # what the notebook computed and showed is its own: no trace of the hook in its outputs
    folder = tmp_path / "experiments" / "runs" / "lab-smoke"
    executed = nbformat.read(folder / "00_bar" / "00_bar.ipynb", as_version=4)
    outputs = [o for cell in executed.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("name") == "stderr" or o["output_type"] == "error"]
    assert "train thing" in str(outputs)  # the bar itself, as the notebook drew it
    assert json.loads((folder / "00_bar" / "metrics.json").read_text()) == {"y": 1}
    assert PROGRESS_ENV not in os.environ
