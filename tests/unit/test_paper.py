"""The paper's numbers (`nuwa_lab.lab.experiment.paper`) name real sweeps and settings."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from nuwa_lab.lab.experiment.collect import setting_label, to_markdown
from nuwa_lab.lab.experiment.paper import SWEEP_REFERENCES, SweepReference
from nuwa_lab.lab.experiment.results import sweep_tables

ROOT = Path(__file__).resolve().parents[2]


def sweep_grid(name: str) -> dict[str, list[Any]]:
    path = ROOT / "experiments" / f"{name}.yaml"
    assert path.is_file(), f"no sweep file experiments/{name}.yaml"
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("grid") or {}


@pytest.mark.parametrize("ref", SWEEP_REFERENCES, ids=lambda r: f"{r.sweep}:{r.measure[:24]}")
def test_every_sweep_reference_names_a_sweep_file_and_its_settings(ref: SweepReference) -> None:
    grid = sweep_grid(ref.sweep)
    assert ref.key in grid, f"{ref.sweep} has no grid key {ref.key}"
    settings = {str(v) for v in grid[ref.key]}
    assert ref.values, "a reference without values prints nothing"
    assert set(ref.values) <= settings, f"not values of {ref.key}: {set(ref.values) - settings}"
    assert ref.source and ref.measure


@pytest.mark.parametrize("name", sorted({ref.sweep for ref in SWEEP_REFERENCES}))
def test_sweep_tables_print_the_paper_beside_each_setting_it_measured(name: str) -> None:
    grid = {k: v for k, v in sweep_grid(name).items() if k != "SEED"}
    keys = list(grid)
    rows = [
        {"run": f"run{i}", "notebook": "nb", **dict(zip(keys, combo, strict=True)), "score": 1.0}
        for i, combo in enumerate(itertools.product(*grid.values()))
    ]
    [(_, table, columns)] = sweep_tables(name, rows, keys)
    refs = [ref for ref in SWEEP_REFERENCES if ref.sweep == name]
    paper_rows = {row[""]: row for row in table if row[""].startswith("**paper**")}
    assert len(paper_rows) == len(refs)
    for ref in refs:
        row = paper_rows[f"**paper**: {ref.measure}"]
        for combo in itertools.product(*grid.values()):
            setting = dict(zip(keys, combo, strict=True))
            expected = ref.values.get(str(setting[ref.key]))
            assert row[setting_label(setting, keys)] == expected
    text = to_markdown(table, columns)
    assert all(f"**paper**: {ref.measure}" in text for ref in refs)
