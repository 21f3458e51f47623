"""The attention benchmark runs (--quick) and returns a complete, consistent table.

No timing assertions: speed is reported by the benchmark itself, as ratios.
"""

from __future__ import annotations

import argparse
import json

import pytest

from nuwa_lab.attention import PATTERNS
from nuwa_lab.lab.bench import TARGETS
from nuwa_lab.lab.bench.attention import QUICK_GRIDS, run


@pytest.mark.slow  # 64 profiled calls: ~4 s on an idle machine, over a minute under load
def test_quick_bench_reports_every_pattern_grid_and_backend(tmp_path, capsys):
    assert TARGETS["attention"] == "nuwa_lab.lab.bench.attention:run"
    result = run(argparse.Namespace(target="attention", json=None, quick=True))
    json.dumps(result)  # the --json output must be serialisable
    rows = result["rows"]
    seen = {(r["pattern"], tuple(r["grid"]), r["backend"]) for r in rows}
    expected = {(p, g, b) for p in PATTERNS for g in QUICK_GRIDS for b in ("dense", "efficient")}
    assert seen == expected
    for r in rows:
        assert r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0
        assert r["fwd_mb"] >= 0 and r["fwdbwd_mb"] > 0
        assert r["keys_causal_mean"] <= r["tokens"]
        if r["backend"] == "efficient":
            assert r["max_abs_err"] < 1e-5
            assert r["speedup_fwd"] > 0
    assert "quick" in result["flex_status"]
    assert {t["target"] for t in result["targets"]} >= {"nearby fwd speed-up over dense >= 30"}
    assert "targets" in capsys.readouterr().out


def test_the_complexity_table_names_a_winner_only_outside_the_spread() -> None:
    from nuwa_lab.lab.bench.attention import complexity_table

    rows = complexity_table((2, 4, 4), extent=(1, 1, 1), block=(1, 2, 2), seconds=0.01)
    assert [r["pattern"] for r in rows] == ["full", "axial", "block", "nearby"]
    for r in rows:
        low, high = r["speedup_range"]
        assert low - 0.01 <= r["speedup"] <= high + 0.01  # medians sit between the quartiles
        assert r["dense_iqr_ms"] >= 0 and r["efficient_iqr_ms"] >= 0
        expected = "efficient" if low > 1 else "dense" if high < 1 else "within the spread"
        assert r["faster"] == expected
