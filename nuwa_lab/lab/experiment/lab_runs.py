"""The runs of the main job (`make lab`): where they live, what each holds, the targets they met.

Shared by the report (`report.py`) and the notebook-side result helpers (`results.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.archive import keep_run
from nuwa_lab.lab.experiment.notebook import notebook_title
from nuwa_lab.lab.experiment.runner import METRICS_FILE, PARAMS_FILE, RUN_FILE, read_json
from nuwa_lab.metrics.intervals import rate_interval
from nuwa_lab.tasks.report import ITEM_RATES, TARGETS
from nuwa_lab.train.files import atomic_write_json

# a yes/no target decided by means, and the per-item margin whose interval says how safely:
# V2V beats copy-last when its PSNR gain over copy-last (frames 2..) is above zero
MARGINS = {"beats_copy_last_from_frame2": "psnr_gain_from_frame2_db"}


# The lab's run folders are not committed, so a fresh checkout has none. Each report keeps the
# records of the runs it shows beside it, experiments/reports/<preset>/runs/<notebook>/ (run.json,
# metrics.json, params.json, and figures.json: which of the report's figures are the run's), and a
# report rebuilt where the run folders are missing reads them from there instead of dropping them.
KEPT_RUNS = "runs"
FIGURE_LIST = "figures.json"


def lab_folder(runs_dir: Path, preset: str) -> Path:
    """Where `make lab PRESET=preset` keeps its runs."""
    return Path(runs_dir) / f"lab-{preset}"


def read_lab_runs(folder: Path, root: Path) -> list[dict[str, Any]]:
    """The runs of one lab folder: stem, title, folder, record and metrics (None if unfinished)."""
    runs = []
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record = read_json(run_dir / RUN_FILE)
        stem, _, variant = run_dir.name.partition("-")  # "06_text_to_visual-video"
        notebook = root / "notebooks" / f"{stem}.ipynb"
        title = notebook_title(notebook) if notebook.exists() else stem
        title += f" ({variant})" if variant else ""
        runs.append(
            {
                "stem": run_dir.name,
                "title": title,
                "dir": run_dir,
                "record": record,
                "metrics": read_json(run_dir / METRICS_FILE) if record else None,
                "params": read_json(run_dir / PARAMS_FILE) or {},
            }
        )
    return runs


def keep_lab_records(runs: list[dict[str, Any]], report_dir: Path, figures: dict[str, Any]) -> None:
    """Keep the records of the finished `runs` (and `figures[stem]`: {"shown": names, "total": n})
    in `report_dir/runs/`, each replacing what an earlier report kept of the same notebook."""
    kept = Path(report_dir) / KEPT_RUNS
    for run in runs:
        if keep_run(run["dir"], kept / run["stem"]):  # finished, not smoke
            atomic_write_json(kept / run["stem"] / FIGURE_LIST, figures.get(run["stem"], {}))


def kept_lab_runs(report_dir: Path, root: Path) -> list[dict[str, Any]]:
    """The runs as `keep_lab_records` kept them, each with "figures" (the report's own files, in
    the order shown) and "figure_total"; [] when none were kept."""
    kept = Path(report_dir) / KEPT_RUNS
    runs = read_lab_runs(kept, root) if kept.is_dir() else []
    notebooks = Path(root) / "notebooks"  # a notebook since removed is not shown
    runs = [r for r in runs if (notebooks / f"{r['stem'].partition('-')[0]}.ipynb").exists()]
    for run in runs:
        listed = read_json(run["dir"] / FIGURE_LIST) or {}
        shown = [Path(report_dir) / "figures" / name for name in listed.get("shown", [])]
        run["figures"] = [p for p in shown if p.exists()]
        run["figure_total"] = listed.get("total", len(run["figures"]))
    return runs


def task_target_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task target (`nuwa_lab.tasks.report.TARGETS`) of every task run.

    A rate over items (`ITEM_RATES`) carries its 95% Wilson interval over the n items evaluated
    (the run's `<split>_n_items`, else its NUM_EVAL parameter), a mean over items the bootstrap
    interval the run logged (`<split>_<metric>_low/_high`), a yes/no target decided by means the
    interval of its margin (`MARGINS`); "clears" says whether the whole interval meets the goal,
    i.e. whether the target would still be met on another draw of items."""
    rows = []
    for run in runs:
        metrics = run["metrics"] or {}
        task = metrics.get("task")
        if not run["record"] or task not in TARGETS:
            continue
        for metric, split, op, goal, meaning in TARGETS[task]:
            value = metrics.get(f"{split}_{metric}")
            if metric == "preservation_gap_db" and value is None:
                kept, ours = (
                    metrics.get(f"{split}_psnr_preserved{s}_db") for s in ("_tokenizer", "")
                )
                value = kept - ours if kept is not None and ours is not None else None
            met = metrics.get(f"target_{metric}_{split}")
            n = metrics.get(f"{split}_n_items") or (run.get("params") or {}).get("NUM_EVAL")
            interval, clears = "–", "–"
            bounds = None
            if metric in ITEM_RATES and value is not None and n:
                bounds = rate_interval(value, int(n))
            elif f"{split}_{metric}_low" in metrics:  # a mean over items: bootstrap interval
                bounds = metrics[f"{split}_{metric}_low"], metrics[f"{split}_{metric}_high"]
            elif metric in MARGINS and f"{split}_{MARGINS[metric]}_low" in metrics:
                margin = MARGINS[metric]
                low, high = metrics[f"{split}_{margin}_low"], metrics[f"{split}_{margin}_high"]
                interval = f"`{margin}` [{low:.3g}, {high:.3g}]"
                clears = "yes" if low > 0 else "no"
            if bounds is not None:
                low, high = bounds
                interval = f"[{low:.3f}, {high:.3f}]" + (f" (n={int(n)})" if n else "")
                clears = "yes" if (low >= goal if op == ">=" else high <= goal) else "no"
            rows.append(
                {
                    "task": task.upper(),
                    "model": metrics.get("model_variant"),
                    "target": f"{meaning} (`{metric}`, {split})",
                    "goal": f"{op} {goal}",
                    "reached": value,
                    "95% interval": interval,
                    "met": {True: "yes", False: "**no**", None: "not measured"}[met],
                    "interval clears the goal": clears,
                }
            )
    return rows
