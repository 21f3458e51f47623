"""The main job, `make lab` = `python -m nuwa_lab lab --preset tiny`: every notebook, the report.

1. the Shapes World preview (`python -m nuwa_lab world --preview .../world_preview.png`);
2. the notebooks that exist, in dependency order (`STAGES`), each through papermill into
   `experiments/runs/lab-<preset>/<notebook>/` with the sweep runner's run folders: a notebook that
   finished before is skipped (unless `--force`), a failing one is recorded and the lab goes on
   (later notebooks train what they need through `nuwa_lab.recipes.cache.get_or_train`). A notebook
   with a `MODALITY` parameter (the task notebooks 06-09) runs once per modality, into
   `<notebook>-image/` and `<notebook>-video/`, so the report covers all eight tasks. An
   `OPTIONAL` notebook (11, your own data) runs only when `--only` names it;
3. with `--sweeps`, the ablation sweeps of `experiments/*.yaml` at the same preset, before the
   results notebook (which always runs again: it takes seconds and reads whatever runs exist);
4. `experiments/reports/<preset>/report.md` and `report.html` (`nuwa_lab.lab.experiment.report`).

While it runs it says what is happening: every ~12 s a line from inside the running notebook (the
artifact training, step / total, loss, rate, ETA: `nuwa_lab.lab.progress`); after each notebook its
time and about how long the rest will take (`nuwa_lab.lab.schedule.estimate`: earlier run records,
else the README's times at tiny); at the end the time of each stage. `--dry-run` prints the plan and
runs nothing: stages, which notebooks run or are skipped, the artifacts each needs and whether
they are cached, the expected time.

Artifacts (tokenizers, probes, models) are cached under `data/artifacts/` by config hash, so the
notebooks of later stages load what earlier ones trained, and a second `make lab` only re-runs what
failed or never finished. Exits 1 when something failed, 130 when interrupted (run it again to
resume).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nuwa_lab.config import PRESETS
from nuwa_lab.lab.bench.model import matmul_rate
from nuwa_lab.lab.experiment.lab_runs import lab_folder
from nuwa_lab.lab.experiment.notebook import notebook_parameters
from nuwa_lab.lab.experiment.report import write_report
from nuwa_lab.lab.experiment.runner import describe, execute_run
from nuwa_lab.lab.experiment.sweep import find_root
from nuwa_lab.lab.experiment.sweep_run import run_sweep
from nuwa_lab.lab.experiment.worker import interrupt_on_sigterm
from nuwa_lab.lab.progress import Tail, duration
from nuwa_lab.lab.schedule import Estimate, describe_plan, estimate, expected_time, will_run

# (stage, notebook prefixes): a notebook runs after every notebook of the stages before its own
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the tour and the Shapes World", ("00", "01")),
    ("tokenizers and probes", ("02",)),
    ("3D attention", ("03",)),
    ("the model: attention ablation, multi-task pretraining", ("04", "05")),
    ("the eight tasks", ("06", "07", "08", "09")),
    ("your own data", ("11",)),
    ("results", ("10",)),
)
# Notebooks that run only when `--only` names them (`python -m nuwa_lab lab --only 11`): 11 trains
# a tokenizer, a label probe, a model and its T2I / T2V of its own on the digits, about 14 minutes
# beyond the tiny lab's 45 minutes, and its results are not read by notebook 10 or the report's
# tables.
OPTIONAL = {"11": "your own data: trains its own artifacts on the digits (about 14 min at tiny)"}
RESULTS_STAGE = "results"
MODALITIES = ("image", "video")  # the values of a notebook's MODALITY parameter, each run
# Items per split the lab's task notebooks (06-09) are measured on (their NUM_EVAL), by preset; a
# notebook run by hand uses the preset's sample.num_eval (64 at tiny). On 64 items one item is 1.6
# points and a 90% rate reads 83-97% (95% interval); on 256 it reads 86-94%.
LAB_NUM_EVAL = {"tiny": 256}
SKIPPED = Estimate(0.0, "finished earlier: skipped")


def project_root() -> Path:
    """The checkout holding notebooks/: around the working directory, else around the package."""

    try:
        return find_root(Path.cwd())
    except FileNotFoundError:
        return find_root(Path(__file__).resolve().parents[1])


def lab_plan(root: Path, *, optional: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """(stage, notebook) for every existing notebooks/NN_*.ipynb, in the order they must run;
    an `OPTIONAL` notebook only when `optional` names its number.

    A notebook whose number no stage lists runs after the tasks and before the results.
    """
    notebooks = sorted(
        nb
        for nb in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")
        if nb.name[:2] not in OPTIONAL or nb.name[:2] in optional
    )
    order = {prefix: i for i, (_, prefixes) in enumerate(STAGES) for prefix in prefixes}
    stage_names = [name for name, _ in STAGES]
    other = stage_names.index(RESULTS_STAGE) - 0.5

    def rank(nb: Path) -> tuple[float, str]:
        return (order.get(nb.name[:2], other), nb.name)

    plan = []
    for nb in sorted(notebooks, key=rank):
        index = order.get(nb.name[:2])
        plan.append((stage_names[index] if index is not None else "other notebooks", nb))
    return plan


def lab_runs(
    root: Path, preset: str, *, optional: Sequence[str] = ()
) -> list[tuple[str, Path, dict[str, Any], str]]:
    """(stage, notebook, parameters, run folder name) of every run of the lab, in order (the
    `OPTIONAL` notebooks that `optional` names included)."""

    runs = []
    for stage, notebook in lab_plan(root, optional=optional):
        declared = notebook_parameters(notebook)
        if "MODALITY" in declared:  # a task notebook: measured against the task targets
            task: dict[str, Any] = {"PRESET": preset}
            if "NUM_EVAL" in declared and preset in LAB_NUM_EVAL:
                task["NUM_EVAL"] = LAB_NUM_EVAL[preset]
            for modality in MODALITIES:
                params = {**task, "MODALITY": modality}
                runs.append((stage, notebook, params, f"{notebook.stem}-{modality}"))
        else:
            runs.append((stage, notebook, {"PRESET": preset}, notebook.stem))
    return runs


def render_preview(path: Path, preset: str, echo: Callable[[str], Any]) -> bool:
    """Draw the world preview (`python -m nuwa_lab world`); False (and a message) if it failed."""
    cmd = [sys.executable, "-m", "nuwa_lab", "world", "--preview", str(path), "--preset", preset]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        echo(f"world preview FAILED ({' '.join(cmd[1:])}):\n{done.stderr.strip()[-2000:]}")
        return False
    echo(f"world preview: {path}")
    return True


def run_sweeps(root: Path, preset: str, runs_dir: Path, echo: Callable, **kwargs: Any) -> list[str]:
    """Every sweep file except smoke at `preset`; returns the names of sweeps with failed runs."""

    failed = []
    for path in sorted((root / "experiments").glob("*.yaml")):
        if path.stem == "smoke":
            continue
        try:
            result = run_sweep(path, preset=preset, runs_dir=runs_dir, echo=echo, **kwargs)
        except (ValueError, FileNotFoundError) as e:  # e.g. its notebook does not exist yet
            echo(f"sweep {path.name} not run: {str(e).splitlines()[0]}")
            continue
        echo(result.summary())
        if result.failed:
            failed.append(result.name)
    return failed


def run_lab(
    preset: str = "tiny",
    *,
    root: Path | None = None,
    runs_dir: Path | None = None,
    force: bool = False,
    only: list[str] | None = None,
    sweeps: bool = False,
    preview: bool = True,
    progress: bool = True,
    progress_every: float = 12.0,
    echo: Callable[[str], Any] = print,
) -> int:
    """Run the lab (see the module docstring); returns the exit code.

    `progress`: a line from inside the running notebook every `progress_every` seconds."""

    start = time.perf_counter()
    host_before = matmul_rate() / 1e9  # the host's speed: lab times scale with it
    echo(f"host: 1024³ fp32 matmul at {host_before:.0f} GFLOP/s")
    root = Path(root or project_root()).resolve()
    runs_dir = Path(runs_dir or root / "experiments" / "runs")
    folder = lab_folder(runs_dir, preset)
    folder.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    if preview and not only:
        target = folder / "world_preview.png"
        if (force or not target.exists()) and not render_preview(target, preset, echo):
            problems.append("world preview")

    plan = [
        run
        for run in lab_runs(root, preset, optional=only or ())
        if not only or run[1].name[:2] in only
    ]
    if not plan:
        echo(
            f"no notebooks to run under {root / 'notebooks'}"
            + (f" matching {only}" if only else "")
        )
    expected = []  # what each run should take: 0 when it will be skipped as finished
    for run in plan:
        stage, _, params, name = run
        runs_it, _ = will_run(run, folder, force=force, always=stage == RESULTS_STAGE)
        expected.append(estimate(folder, preset, name, params) if runs_it else SKIPPED)
    to_run = [e for e in expected if e is not SKIPPED]
    if plan:
        echo(f"{len(to_run)} of {len(plan)} notebook runs to do: {expected_time(to_run)}")
    stage_seconds: dict[str, float] = {}
    swept = False
    with Tail(echo=echo, every=progress_every) if progress else contextlib.nullcontext() as tail:
        for i, (stage, notebook, params, name) in enumerate(plan, 1):
            if sweeps and stage == RESULTS_STAGE and not swept:
                problems += [
                    f"sweep {n}" for n in run_sweeps(root, preset, runs_dir, echo, force=force)
                ]
                swept = True
            label = f"[{i}/{len(plan)}] {stage}: {name}"
            echo(f"{label} ...")
            began = time.perf_counter()
            with tail.running(name) if tail else contextlib.nullcontext():
                record = execute_run(
                    notebook,
                    params,
                    folder / name,
                    force=force or stage == RESULTS_STAGE,  # it reads the runs, which may be new
                    progress=progress,
                    info={"sweep": folder.name, "key": name},
                    root=root,
                )
            stage_seconds[stage] = stage_seconds.get(stage, 0.0) + time.perf_counter() - began
            echo(f"{label}: {describe(record)}")
            if record["status"] != "ok":
                problems.append(name)
            rest = [e for e in expected[i:] if e is not SKIPPED]
            if rest:
                echo(f"    {expected_time(rest, left=True)}")
    if sweeps and not swept:
        problems += [f"sweep {n}" for n in run_sweeps(root, preset, runs_dir, echo, force=force)]
    if stage_seconds:
        echo("time per stage:")
        for stage, seconds in stage_seconds.items():
            echo(f"    {duration(seconds):>9}  {stage}")

    elapsed = time.perf_counter() - start
    host = (host_before, matmul_rate() / 1e9)
    try:
        md, page = write_report(
            preset, root=root, runs_dir=runs_dir, lab_seconds=elapsed, host_gflops=host
        )
    except FileNotFoundError as error:  # the report would lose notebooks run elsewhere
        echo(f"report not written: {error}")
        return 1
    echo(f"report: {md} and {page}")
    echo(
        f"lab ({preset}) took {elapsed / 60:.1f} min; host matmul {host[0]:.0f} GFLOP/s before, "
        f"{host[1]:.0f} after"
    )
    if problems:
        echo(f"FAILED: {', '.join(problems)} (see the report; re-run to retry only these)")
        return 1
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", choices=PRESETS, help="default: tiny")
    parser.add_argument("--force", action="store_true", help="re-run notebooks that finished")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NN",
        help="run only these notebooks (by number), e.g. 00 01; the optional 11 runs only so",
    )
    parser.add_argument(
        "--sweeps", action="store_true", help="also run the ablation sweeps (before notebook 10)"
    )
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report")
    parser.add_argument("--no-preview", action="store_true", help="skip the world preview")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress lines from inside the notebooks"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (runs, cached artifacts, expected time) and run nothing",
    )


def dry_run(
    preset: str,
    *,
    root: Path | None = None,
    runs_dir: Path | None = None,
    force: bool = False,
    only: list[str] | None = None,
    sweeps: bool = False,
    preview: bool = True,
    artifacts_root: Path | None = None,
) -> str:
    """The plan `run_lab` with the same arguments would follow, as text; runs nothing."""
    root = Path(root or project_root()).resolve()
    folder = lab_folder(Path(runs_dir or root / "experiments" / "runs"), preset)
    plan = [
        run
        for run in lab_runs(root, preset, optional=only or ())
        if not only or run[1].name[:2] in only
    ]
    left_out = [
        f"{nb.name}: {OPTIONAL[nb.name[:2]]}; run it with --only {nb.name[:2]}"
        for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        if nb.name[:2] in OPTIONAL and nb.name[:2] not in (only or ())
    ]
    text = describe_plan(
        plan,
        preset=preset,
        folder=folder,
        results_stage=RESULTS_STAGE,
        force=force,
        sweeps=sweeps,
        preview=preview and not only,
        artifacts_root=artifacts_root,
    )
    return "\n".join([text, *(f"optional, not run: {line}" for line in left_out)])


def run(args: argparse.Namespace) -> int:
    if args.report_only:
        try:
            md, page = write_report(args.preset, root=project_root())
        except FileNotFoundError as error:
            print(f"report not written: {error}", file=sys.stderr)
            return 1
        print(f"report: {md} and {page}")
        return 0
    if args.dry_run:
        print(
            dry_run(
                args.preset,
                force=args.force,
                only=args.only,
                sweeps=args.sweeps,
                preview=not args.no_preview,
            )
        )
        return 0

    interrupt_on_sigterm()
    try:
        return run_lab(
            args.preset,
            force=args.force,
            only=args.only,
            sweeps=args.sweeps,
            preview=not args.no_preview,
            progress=not args.quiet,
            echo=functools.partial(print, flush=True),  # lines appear at once in a log file too
        )
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume (finished notebooks are kept)")
        return 130
