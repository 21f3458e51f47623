"""Collecting runs into one table: parameters + metrics + runtime, without pandas.

    rows = collect("attention_ablation")        # or a sweep file, or a run folder
    print(to_markdown(rows, ["ATTENTION", "SEED", "val_nll_bits", "run_time_s"]))
    print(to_markdown(aggregate(rows, by=["ATTENTION"], metrics=["val_nll_bits"])))
    rows.failed, rows.pending                   # runs that failed / never finished

Only runs whose `run.json` says ok become rows (see `nuwa_lab.lab.experiment.runner`): a
half-written or
failed run is never read as a result. Nested metrics are flattened with dots (`accuracy.shape`).
Each row also has `run_time_s`, `run_cpu_s` and `run_peak_mem_mb`: the whole notebook's wall time,
its kernel's CPU time and peak memory, from run.json.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nuwa_lab.lab.experiment.archive import kept_folders, results_dir
from nuwa_lab.lab.experiment.runner import METRICS_FILE, RUN_FILE, default_runs_dir, read_json
from nuwa_lab.lab.experiment.sweep import find_root

# run.json field -> row column; prefixed so a notebook's own `peak_mem_mb` metric is not overwritten
RUNTIME_COLUMNS = {
    "wall_time_s": "run_time_s",
    "cpu_time_s": "run_cpu_s",
    "peak_mem_mb": "run_peak_mem_mb",
}


class Collection(list):
    """The finished runs of a sweep as a list of flat dicts; `.failed` and `.pending` beside."""

    def __init__(
        self,
        rows: Iterable[dict[str, Any]] = (),
        *,
        name: str = "",
        folder: Path | None = None,
        failed: Iterable[dict[str, Any]] = (),
        pending: Iterable[str] = (),
        folders: dict[str, Path] | None = None,
        records: dict[str, dict[str, Any]] | None = None,
        metrics: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(rows)
        self.name, self.folder = name, folder
        self.failed, self.pending = list(failed), list(pending)
        self.folders = dict(folders or {})  # run key -> the folder its records were read from
        self.records = dict(records or {})  # run key -> its run.json, as read once
        self.metrics = dict(metrics or {})  # run key -> its metrics.json (nested), as read once

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        """`row`'s run.json (read when the collection was made)."""
        return self.records.get(row["run"], {})

    def run_metrics(self, row: dict[str, Any]) -> dict[str, Any]:
        """`row`'s metrics.json as the notebook logged it (nested, not flattened)."""
        return self.metrics.get(row["run"], {})

    def run_dir(self, row: dict[str, Any]) -> Path:
        """The folder holding `row`'s records: its run folder, or its kept copy in results/."""
        return self.folders.get(row["run"]) or Path(self.folder) / row["run"]

    def columns(self) -> list[str]:
        """Every key of every row, in order of first appearance."""
        return list(dict.fromkeys(k for row in self for k in row))

    def __repr__(self) -> str:
        return (
            f"Collection({self.name!r}: {len(self)} finished, {len(self.failed)} failed, "
            f"{len(self.pending)} pending)"
        )


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"acc": {"shape": 1.0}} -> {"acc.shape": 1.0}; lists and scalars are kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resolve_folder(sweep: str | Path, runs_dir: str | Path | None = None) -> tuple[str, Path]:
    """(name, folder) of a sweep given by name, by sweep file or by run folder."""
    path = Path(sweep)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        name = str(data.get("name") or path.stem)
        return name, Path(runs_dir or default_runs_dir(find_root(path))) / name
    if path.is_dir() and ((path / "sweep.json").exists() or any(path.rglob(RUN_FILE))):
        return path.name, path
    name = str(sweep)
    return name, Path(runs_dir or default_runs_dir(find_root(Path.cwd()))) / name


def run_folders(folder: Path) -> list[Path]:
    """Folders under `folder` (any depth, hidden ones excluded) that hold files of a run."""
    found = set()
    for marker in (RUN_FILE, METRICS_FILE, "params.json"):
        for path in folder.rglob(marker):
            rel = path.parent.relative_to(folder)
            if not any(part.startswith(".") for part in rel.parts):
                found.add(path.parent)
    return sorted(found)


def collect(sweep: str | Path, *, runs_dir: str | Path | None = None) -> Collection:
    """Parameters + metrics + runtime of every finished run of `sweep`; failed ones in `.failed`.

    `sweep` is a sweep name (looked up in `runs_dir`, by default `experiments/runs` of the project
    around the working directory), a sweep file, or a run folder. Runs kept in `results/` beside
    the runs folder (`nuwa_lab.lab.experiment.archive`) fill in the keys without a finished run
    folder. A sweep with no runs yet gives an empty Collection (check `len(rows)`), not an error.
    """
    name, folder = resolve_folder(sweep, runs_dir)
    rows, failed, pending = [], [], []
    local = (
        {d.relative_to(folder).as_posix(): d for d in run_folders(folder)}
        if folder.is_dir()
        else {}
    )
    kept = kept_folders(folder.parent, name)
    records = {k: read_json(d / RUN_FILE) for k, d in local.items()}
    finished = {k for k, record in records.items() if (record or {}).get("status") == "ok"}
    folders = {
        **{k: d for k, d in kept.items() if k not in finished},
        **{k: local[k] for k in finished},
    }
    for key in folders.keys() - finished:  # a kept copy stands in for the run folder
        records[key] = read_json(folders[key] / RUN_FILE)
    metrics: dict[str, dict[str, Any]] = {}
    for key in sorted(set(local) | set(folders)):
        run_dir = folders.get(key, local.get(key))
        record = records.get(key)
        if record is None:
            pending.append(key)
            continue
        notebook = Path(record.get("notebook", "")).stem
        base = {"run": key, "notebook": notebook, **(record.get("params") or {})}
        if record.get("status") != "ok":
            error = record.get("error") or {}
            failed.append(
                {
                    **base,
                    "error": f"{error.get('ename')}: {error.get('evalue')}",
                    "cell": error.get("cell_index"),
                }
            )
            continue
        row = dict(base)
        metrics[key] = read_json(run_dir / METRICS_FILE) or {}
        for k, v in flatten(metrics[key]).items():
            row.setdefault(k, v)
        row.update({column: record.get(k) for k, column in RUNTIME_COLUMNS.items()})
        rows.append(row)
    order = grid_order(
        folder if (folder / "sweep.json").is_file() else results_dir(folder.parent) / name
    )
    rows.sort(key=order)
    failed.sort(key=order)
    return Collection(
        rows,
        name=name,
        folder=folder,
        failed=failed,
        pending=pending,
        folders=folders,
        records={k: r for k, r in records.items() if r is not None},
        metrics=metrics,
    )


def grid_order(folder: Path):
    """A sort key putting runs in the sweep file's order (notebooks, then grid values as listed),
    read from the sweep.json the runner writes; runs of other values go last, by folder name."""
    info = read_json(folder / "sweep.json") or {}
    notebooks = [Path(n).stem for n in info.get("notebooks", [])]
    grid = info.get("grid") or {}

    def position(values: list[Any], value: Any) -> int:
        plain = [json.dumps(v, sort_keys=True) for v in values]
        key = json.dumps(value, sort_keys=True, default=str)
        return plain.index(key) if key in plain else len(plain)

    def key(row: dict[str, Any]) -> tuple:
        nb = row.get("notebook")
        first = notebooks.index(nb) if nb in notebooks else len(notebooks)
        return (first, *(position(v, row.get(k)) for k, v in grid.items()), row["run"])

    return key


def format_cell(value: Any, floatfmt: str = ".4g") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, floatfmt)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_cell(v, floatfmt) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(
    rows: Iterable[dict[str, Any]], columns: list[str] | None = None, *, floatfmt: str = ".4g"
) -> str:
    """A GitHub-markdown table of `rows` (all columns in order of appearance by default)."""
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    if not columns:
        return "_(no rows)_"
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(c), floatfmt) for c in columns) + " |")
    return "\n".join(lines)


def is_seed_key(key: str) -> bool:
    """A grid key that only repeats a setting with another seed (SEED, TOKENIZER_SEED, ...):
    tables average over it instead of making it a setting."""
    return key == "SEED" or key.endswith("_SEED")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def aggregate(
    rows: Iterable[dict[str, Any]], by: list[str], metrics: list[str] | None = None
) -> list[dict[str, Any]]:
    """Mean and standard deviation of numeric `metrics` over the rows sharing the `by` values.

    Each output row holds the `by` values, `n`, and `<metric>` (mean) and `<metric>_std` (sample
    standard deviation; 0.0 for a single run). Groups keep the order in which they first appear.
    """
    rows = list(rows)
    if metrics is None:
        skip = set(by) | {"run", "notebook"}
        metrics = [
            c
            for c in dict.fromkeys(k for r in rows for k in r)
            if c not in skip
            and not c.isupper()
            and not is_seed_key(c)
            and any(_is_number(r.get(c)) for r in rows)
        ]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(repr(row.get(k)) for k in by), []).append(row)
    out = []
    for members in groups.values():
        summary: dict[str, Any] = {k: members[0].get(k) for k in by}
        summary["n"] = len(members)
        for metric in metrics:
            values = [float(r[metric]) for r in members if _is_number(r.get(metric))]
            summary[metric] = statistics.fmean(values) if values else None
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[f"{metric}_std"] = std if values else None
        out.append(summary)
    return out


def setting_label(row: dict[str, Any], keys: list[str]) -> str:
    """ "ATTENTION=nearby, SEED=0" (or "all" without keys)."""
    return ", ".join(f"{k}={format_cell(row.get(k))}" for k in keys) or "all"


def pivot(
    rows: Iterable[dict[str, Any]], keys: list[str], metrics: list[str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Settings as columns, metrics as rows, mean ± std over the runs of a setting (seeds).

    Returns (rows, columns) for `to_markdown`; the first row counts the runs of each setting.
    """
    table = aggregate(rows, by=keys, metrics=metrics)
    if not table:
        return [], [""]
    settings = [setting_label(t, keys) for t in table]
    names = [k for k in table[0] if k not in keys and k != "n" and not k.endswith("_std")]
    out = [{"": "runs", **{s: t["n"] for s, t in zip(settings, table, strict=True)}}]
    for metric in names:
        row: dict[str, Any] = {"": metric}
        for setting, t in zip(settings, table, strict=True):
            mean, std = t.get(metric), t.get(f"{metric}_std")
            row[setting] = mean if not std else f"{format_cell(mean)} ± {format_cell(std)}"
        out.append(row)
    return out, ["", *settings]
