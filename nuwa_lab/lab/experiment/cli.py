"""`python -m nuwa_lab sweep FILE.yaml [--preset P] [--force] [--only KEY=value ...]`.

Validates the sweep file against the notebooks' parameters, runs every grid point that has not
finished (papermill, one process per run), prints one line per run and a summary; exits 1 when a run
failed, 2 when the sweep file is invalid (a file that is not UTF-8 YAML: `FILE:LINE: message`), 130
when interrupted (re-run the same command to resume).
`--dry-run` lists the runs and their state; `--table` prints the collected results as markdown;
`--keep-results` copies the records of the finished runs into `experiments/results/` (beside the
runs folder; commit it) so that the sweep's results outlive this machine. A sweep keeps every run
it finishes there anyway (`--no-keep`: not) and skips the runs kept there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nuwa_lab.config import PRESETS
from nuwa_lab.lab.experiment.archive import keep_sweep, kept_record, results_dir
from nuwa_lab.lab.experiment.collect import collect, to_markdown
from nuwa_lab.lab.experiment.runner import default_runs_dir, is_finished
from nuwa_lab.lab.experiment.sweep import (
    SweepFileError,
    load_sweep,
    read_sweep_file,
    select_runs,
)
from nuwa_lab.lab.experiment.sweep_run import run_sweep
from nuwa_lab.lab.experiment.worker import interrupt_on_sigterm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="sweep file, e.g. experiments/attention_ablation.yaml")
    parser.add_argument("--preset", choices=PRESETS, help="override PRESET of every run")
    parser.add_argument("--force", action="store_true", help="re-run runs that finished already")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="KEY=value",
        help="run only the grid points with these values (notebook=NN selects a notebook)",
    )
    parser.add_argument("--runs-dir", help="where run folders go (default: experiments/runs)")
    parser.add_argument("--cell-timeout", type=float, help="seconds a single cell may take")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    parser.add_argument(
        "--table", action="store_true", help="print the collected results, run nothing"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-cell progress bar")
    parser.add_argument(
        "--keep-results",
        action="store_true",
        help="copy the finished runs' records to experiments/results (to commit), run nothing",
    )
    parser.add_argument(
        "--no-keep",
        action="store_true",
        help="neither skip runs kept in experiments/results nor keep the runs finished here",
    )


def _dry_run(args: argparse.Namespace) -> int:

    sweep = load_sweep(args.file, preset=args.preset)
    folder = Path(args.runs_dir or default_runs_dir(sweep.root)) / sweep.name
    runs = select_runs(sweep.runs(), args.only)
    runs_dir = folder.parent
    for run in runs:
        done = is_finished(folder / run.key, run.params, run.notebook)
        kept = not done and not args.no_keep
        kept = kept and kept_record(runs_dir, sweep.name, run.key, run.params, run.notebook)
        state = "finished" if done else "kept" if kept else "to run"
        state = "to run" if args.force else state
        print(f"{state:>8}  {run.notebook.name}  {run.key}")
    print(f"{len(runs)} runs of sweep {sweep.name} in {folder}")
    return 0


def _table(args: argparse.Namespace) -> int:

    path = Path(args.file)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        read_sweep_file(path)  # a malformed file is reported as FILE:LINE, not a traceback
    rows = collect(args.file, runs_dir=args.runs_dir)
    print(to_markdown(rows) if rows else f"no finished runs in {rows.folder}")
    for row in rows.failed:
        print(f"FAILED {row['run']}: {row['error']}")
    for key in rows.pending:
        print(f"unfinished {key}")
    return 0


def _keep_results(args: argparse.Namespace) -> int:

    sweep = load_sweep(args.file, preset=args.preset)
    runs_dir = Path(args.runs_dir or default_runs_dir(sweep.root))
    kept = keep_sweep(sweep.name, runs_dir)
    dest = results_dir(runs_dir) / sweep.name
    print(f"kept {len(kept)} finished runs of sweep {sweep.name} in {dest}" if kept else
          f"no finished runs of sweep {sweep.name} in {runs_dir / sweep.name} to keep")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:

    interrupt_on_sigterm()
    try:
        if args.dry_run:
            return _dry_run(args)
        if args.table:
            return _table(args)
        if args.keep_results:
            return _keep_results(args)
        result = run_sweep(
            args.file,
            preset=args.preset,
            force=args.force,
            only=args.only,
            runs_dir=args.runs_dir,
            progress=not args.quiet,
            cell_timeout=args.cell_timeout,
            keep=not args.no_keep,
        )
    except SweepFileError as e:
        print(e, file=sys.stderr)  # FILE:LINE: message, as compilers print it
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: re-run the same command to resume (finished runs are kept)")
        return 130
    print(result.summary())
    return result.exit_code
