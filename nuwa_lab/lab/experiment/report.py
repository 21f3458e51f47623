"""The results report of a preset: `experiments/reports/<preset>/report.md` and `report.html`.

Each preset has its own folder, so a smoke run never touches the committed tiny report; the
markdown links small copies of its figures in `figures/` beside it (committed with the report, so
it renders on the repository's web page), and the HTML page embeds them.

Built from what is on disk, never from memory of a run, so it can be rebuilt at any time
(`python -m nuwa_lab lab --report-only`):

| section | read from |
|---|---|
| run times | `experiments/runs/lab-<preset>/<notebook>/run.json` |
| the eight tasks against their targets | the task notebooks' runs (`<notebook>-<modality>/`) |
| a section per notebook: metrics, figures | the same folders' `metrics.json`, `figures/`, `*.png` |
| the ablation sweeps, one column per setting | `collect(<sweep>)` for each `experiments/*.yaml` |
| beside the paper | `nuwa_lab.lab.experiment.paper` and the notebooks' `paper_comparison` metrics |

Every table that puts the paper's numbers beside ours carries the label `NOT_COMPARABLE`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.collect import collect, flatten, format_cell, is_seed_key
from nuwa_lab.lab.experiment.compare import (
    COMPARISONS,
    EXPLANATION,
    NO_INTERVAL,
    SHOWN,
    Comparison,
    comparison_tables,
)
from nuwa_lab.lab.experiment.document import Document, figure_name
from nuwa_lab.lab.experiment.lab_runs import (
    keep_lab_records,
    kept_lab_runs,
    lab_folder,
    read_lab_runs,
    task_target_rows,
)
from nuwa_lab.lab.experiment.paper import NOT_COMPARABLE, NOTEBOOK_REFERENCES, SWEEP_REFERENCES
from nuwa_lab.lab.experiment.provenance import provenance
from nuwa_lab.lab.experiment.results import SWEEPS as SWEEP_ORDER
from nuwa_lab.lab.experiment.results import sweep_tables
from nuwa_lab.lab.experiment.task_seeds import (
    targets_over_seeds,
    task_seed_runs,
    where_seeds_ran,
)

FIGURES_PER_NOTEBOOK = 6
COMPARISON_KEY = "paper_comparison"  # a metric holding rows that quote the paper beside ours


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _figures(run_dir: Path) -> list[Path]:
    saved = sorted(p for p in run_dir.glob("*.png"))
    inline = sorted((run_dir / "figures").glob("*.png"))
    return saved + inline


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, value in flatten({k: v for k, v in metrics.items() if k != COMPARISON_KEY}).items():
        if isinstance(value, list) and len(value) > 8:
            value = format_cell(value[:8]) + f", … ({len(value)} values)"
        rows.append({"metric": key, "value": value})
    return rows


def _runtime_table(
    doc: Document,
    runs: list[dict[str, Any]],
    lab_seconds: float | None,
    host_gflops: tuple[float, float] | None = None,
) -> None:
    rows, total = [], 0.0
    for run in runs:
        record = run["record"] or {}
        seconds = record.get("wall_time_s")
        total += seconds or 0.0
        rows.append(
            {
                "notebook": run["title"],
                "status": record.get("status", "unfinished"),
                "wall time (min)": seconds / 60 if seconds is not None else None,
                "kernel CPU (min)": cpu / 60 if (cpu := record.get("cpu_time_s")) else None,
                "load (5 min)": (record.get("load_avg") or [None, None])[1],
                "peak memory (MB)": record.get("peak_mem_mb"),
                "finished": record.get("finished"),
            }
        )
    cpu_total = sum((run["record"] or {}).get("cpu_time_s") or 0.0 for run in runs)
    rows.append(
        {"notebook": "**total**", "wall time (min)": total / 60, "kernel CPU (min)": cpu_total / 60}
    )
    doc.table(rows, floatfmt=".3g")
    if lab_seconds is not None:
        doc.paragraph(
            f"This invocation of the lab took {duration(lab_seconds)} in all (notebooks that "
            "had finished before were skipped; their times above are from when they ran)."
        )
    if host_gflops is not None:
        doc.paragraph(
            f"The host's speed, measured in the lab's own process: a 1024³ fp32 matmul ran at "
            f"{host_gflops[0]:.0f} GFLOP/s before the notebooks and {host_gflops[1]:.0f} after. "
            "Wall times scale inversely with it, so compare lab times across machines (or days "
            "on a shared host) together with these two numbers."
        )
    doc.paragraph(
        "Wall time grows when other programs share the cores (the load average beside it says "
        "how busy the machine was); kernel CPU time is the notebook's own user + system time "
        "(more than the wall time when torch uses several threads). Peak memory is the kernel "
        "process's maximum resident set size (`ru_maxrss`): the Python interpreter, torch and "
        "the notebook's data."
    )


def _task_targets_section(doc: Document, runs: list[dict[str, Any]]) -> None:
    rows = task_target_rows(runs)
    if not rows:
        return
    doc.heading("The eight tasks against their targets", 2)
    doc.paragraph(
        "The lab's goals at the tiny preset, read from the task notebooks' runs (at the smoke "
        "preset they mean nothing). A rate over items carries its 95% Wilson interval over the "
        "items evaluated; a target is met when the measured value reaches the goal, and the last "
        "column says whether the whole interval does (a target met with no margin may be missed "
        "on another draw of items, or by another training seed). Held-out numbers and every other "
        "metric are in each notebook's section below."
    )
    doc.table(rows, floatfmt=".3g")


def _task_seeds_section(doc: Document, runs_dir: Path, preset: str) -> None:
    runs = task_seed_runs(runs_dir, preset)
    rows = targets_over_seeds(runs)
    if not rows:
        return
    doc.heading("The task targets over seeds", 2)
    doc.paragraph(
        "From `python -m nuwa_lab sweep experiments/task_seeds.yaml`: every task trained and "
        "measured once per seed (pretraining included), each seed's value (✓ met, ✗ missed), "
        "the mean with its 95% t-interval over the seeds, and whether every seed met the goal. "
        f"Ran on: {where_seeds_ran(runs)}."
    )
    doc.table(rows)


def _notebook_section(doc: Document, run: dict[str, Any]) -> None:
    doc.heading(run["title"], 3)
    record = run["record"]
    if record is None:
        doc.paragraph("Not finished (no run.json): the lab was interrupted here or is running.")
        return
    if record.get("status") != "ok":
        error = record.get("error") or {}
        doc.paragraph(
            f"**Failed** in cell {error.get('cell_index')}: `{error.get('ename')}: "
            f"{str(error.get('evalue'))[:300]}`. The executed notebook with the error is "
            f"`{run['dir'].name}/{Path(record.get('notebook', '')).name}`."
        )
        return
    doc.paragraph(
        f"{duration(record.get('wall_time_s') or 0)}, {record.get('peak_mem_mb') or 0:.0f} MB "
        f"peak; parameters `{json.dumps(record.get('params', {}))}`."
    )
    rows = _metric_rows(run["metrics"] or {})
    if rows:
        doc.table(rows)
    else:
        doc.paragraph("No metrics.json: the notebook did not call log_metrics.")
    for ref in NOTEBOOK_REFERENCES:
        if run["stem"].startswith(ref.notebook + "_"):
            ours = (run["metrics"] or {}).get(ref.metric) if ref.metric else None
            mine = f"; ours (`{ref.metric}`): {format_cell(ours)}" if ours is not None else ""
            doc.note(
                f"{NOT_COMPARABLE}. The paper ({ref.source}): {ref.measure}: {ref.paper}{mine}."
            )
    figures = run["figures"] if "figures" in run else _figures(run["dir"])[:FIGURES_PER_NOTEBOOK]
    if figures:  # captioned by the run's own file names (a kept figure's lose their prefix)
        doc.figures(figures, [p.name.removeprefix(f"{run['stem']}-") for p in figures])
        total = run.get("figure_total") or len(_figures(run["dir"]))
        if total > len(figures):
            doc.paragraph(f"({total - len(figures)} more figures in the run folder)")


def _sweep_files(root: Path) -> list[tuple[str, dict[str, Any], Path]]:
    """(name, content, path) of every sweep file but smoke, in the paper's order of ablations."""
    import yaml

    found = []
    for path in sorted((root / "experiments").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        name = str(data.get("name") or path.stem)
        if name != "smoke" and isinstance(data, dict):
            found.append((name, data, path))
    order = {name: i for i, name in enumerate(SWEEP_ORDER)}
    return sorted(found, key=lambda item: (order.get(item[0], len(order)), item[0]))


def _sweep_section(doc: Document, name: str, data: dict, path: Path, runs_dir: Path, preset: str):
    rows = [r for r in collect(name, runs_dir=runs_dir) if r.get("PRESET", preset) == preset]
    doc.heading(name, 3)
    if data.get("description"):
        doc.paragraph(str(data["description"]) + ".")
    if not rows:
        doc.paragraph(
            f"Not run at preset {preset} yet: `python -m nuwa_lab sweep "
            f"experiments/{path.name} --preset {preset}`."
        )
        return
    keys = [k for k in (data.get("grid") or {}) if not is_seed_key(k)]
    tables = sweep_tables(name, rows, keys)
    for notebook, table, columns in tables:
        if len(tables) > 1:
            doc.paragraph(f"`{notebook}`:")
        doc.table(table, columns)
    for comparison in COMPARISONS.get(name, ()):
        _comparison_section(doc, rows, comparison)
    if any(ref.sweep == name for ref in SWEEP_REFERENCES):
        doc.note(f"{NOT_COMPARABLE}: compare the ordering of the settings, not the values.")
    doc.paragraph(
        f"{len(rows)} finished runs; mean ± standard deviation over seeds where there are several. "
        f"All runs: `python -m nuwa_lab sweep experiments/{path.name} --table`."
    )


def _comparison_section(doc: Document, rows: list[dict[str, Any]], comparison: Comparison) -> None:
    """The arms against the reference, per metric, with 95% intervals over seeds (`compare`)."""
    tables = comparison_tables(rows, comparison)
    if not tables:
        doc.paragraph(NO_INTERVAL)
    for caption, subset in tables:
        doc.paragraph(caption)
        doc.table(subset, list(SHOWN))
    if tables:
        doc.note(EXPLANATION)


def _comparisons(runs: list[dict[str, Any]], sweep_names: list[str], runs_dir: Path, preset: str):
    """(source, rows) of every `paper_comparison` metric logged by a lab or sweep run."""
    found, seen = [], set()
    sources = [(run["title"], run["metrics"] or {}) for run in runs if run["record"]]
    for name in sweep_names:
        rows = collect(name, runs_dir=runs_dir)
        for row in rows:
            if row.get("PRESET", preset) == preset:
                sources.append((f"{name}: {row['run']}", rows.run_metrics(row)))
    for source, metrics in sources:
        rows = metrics.get(COMPARISON_KEY)
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            fingerprint = json.dumps(rows, sort_keys=True)
            if fingerprint not in seen:
                seen.add(fingerprint)
                found.append((source, rows))
    return found


def build_report(
    preset: str,
    *,
    root: Path,
    runs_dir: Path | None = None,
    lab_seconds: float | None = None,
    host_gflops: tuple[float, float] | None = None,
    report_dir: Path | None = None,
) -> Document:
    """The whole report for `preset` as a Document (see `Document.write`)."""
    runs_dir = Path(runs_dir or root / "experiments" / "runs")
    base = Path(report_dir or root / "experiments")
    doc = Document(base=base, figure_dir=base / "figures" if report_dir else None)
    folder = lab_folder(runs_dir, preset)
    runs = read_lab_runs(folder, root) if folder.is_dir() else []
    have = {run["stem"] for run in runs}
    kept = (
        [r for r in kept_lab_runs(report_dir, root) if r["stem"] not in have] if report_dir else []
    )
    runs = sorted(runs + kept, key=lambda run: run["stem"])
    info = provenance(str(root))
    doc.heading(f"nuwa_lab results, preset `{preset}`", 1)
    doc.note(
        f"{NOT_COMPARABLE}. Every number below was measured on the procedural Shapes World "
        "with the lab's own probe (lab-FID, lab-FVD, attribute accuracy), not on MSCOCO, "
        "Kinetics or MSR-VTT with Inception or CLIP."
    )
    doc.paragraph(
        f"Written {dt.datetime.now().isoformat(timespec='minutes')} by `python -m nuwa_lab lab "
        f"--preset {preset}`; git `{info['git_revision'] or 'uncommitted'}`"
        f"{' with local changes' if info['git_dirty'] else ''}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
        + f"; {info['cpu_count']} CPUs ({info['platform']})."
    )
    preview = folder / "world_preview.png"
    if not preview.exists() and report_dir is not None:  # as the kept report shows it
        preview = Path(report_dir) / "figures" / figure_name(preview)
    if preview.exists():
        doc.heading("The Shapes World", 2)
        doc.figures([preview], ["python -m nuwa_lab world --preview"])

    doc.heading("Run times", 2)
    if runs:
        _runtime_table(doc, runs, lab_seconds, host_gflops)
    else:
        doc.paragraph(f"No notebook has run at preset {preset} yet.")
    _task_targets_section(doc, runs)
    _task_seeds_section(doc, runs_dir, preset)
    if runs:
        doc.heading("Notebooks", 2)
        if kept:
            doc.note(
                f"Not in this machine's {folder}, so read from the records an earlier report "
                f"kept (experiments/reports/{preset}/runs/, with its figures): "
                + ", ".join(run["title"] for run in kept)
                + "."
            )
        for run in runs:
            _notebook_section(doc, run)

    sweeps = _sweep_files(root)
    doc.heading("Ablation sweeps", 2)
    if not sweeps:
        doc.paragraph("No sweep files in experiments/.")
    for name, data, path in sweeps:
        _sweep_section(doc, name, data, path, runs_dir, preset)

    doc.heading("Beside the paper", 2)
    doc.note(NOT_COMPARABLE + ".")
    comparisons = _comparisons(runs, [name for name, _, _ in sweeps], runs_dir, preset)
    for source, rows in comparisons:
        doc.paragraph(f"From {source}:")
        doc.table(rows)
    if SWEEP_REFERENCES or NOTEBOOK_REFERENCES:
        doc.paragraph(
            "The paper's numbers also appear in the sweep tables above (rows marked **paper**) "
            "and under the notebooks they correspond to."
        )
    if not comparisons:
        doc.paragraph("No notebook has logged a `paper_comparison` table at this preset yet.")
    return doc


def report_folder(root: Path, preset: str) -> Path:
    """Where the report of `preset` lives: experiments/reports/<preset>/."""
    return Path(root) / "experiments" / "reports" / preset


def notebook_titles(report: Path) -> list[str]:
    """The notebook sections ("### <title>" under "## Notebooks") of a written report.md."""
    if not report.exists():
        return []
    text = report.read_text(encoding="utf-8").partition("\n## Notebooks\n")[2]
    section = text.partition("\n## ")[0]
    return [line[4:] for line in section.splitlines() if line.startswith("### ")]


def write_report(preset: str, *, root: Path, runs_dir: Path | None = None, **kwargs: Any):
    """Write the report of `preset` (report.md, report.html, figures/); return the two paths."""
    folder = report_folder(root, preset)
    lab = lab_folder(Path(runs_dir or root / "experiments" / "runs"), preset)
    runs = read_lab_runs(lab, root) if lab.is_dir() else []
    earlier = folder / "report.md"
    readable = {run["title"] for run in runs + kept_lab_runs(folder, root)}
    lost = [title for title in notebook_titles(earlier) if title not in readable]
    if lost:
        raise FileNotFoundError(
            f"neither {lab} nor the records kept in {folder / 'runs'} hold the runs of "
            f"{', '.join(lost)}, so rebuilding would drop their sections of {earlier}; run them "
            f"first (`python -m nuwa_lab lab --preset {preset}`; an optional notebook such as 11 "
            "runs with `--only NN`), or delete the report to start it afresh"
        )
    doc = build_report(preset, root=root, runs_dir=runs_dir, report_dir=folder, **kwargs)
    for old in (folder / "figures").glob("*.png"):  # figures this report no longer shows
        if old.name not in doc.figure_names:
            old.unlink()
    md, page = folder / "report.md", folder / "report.html"
    doc.write(md, page, title=f"nuwa_lab results ({preset})")
    if runs:  # what a fresh checkout's rebuild will read (`kept_lab_runs`)
        shown = {}
        for run in runs:
            figures = _figures(run["dir"])
            names = [figure_name(p) for p in figures[:FIGURES_PER_NOTEBOOK]]
            shown[run["stem"]] = {"shown": names, "total": len(figures)}
        keep_lab_records(runs, folder, shown)
    return md, page
