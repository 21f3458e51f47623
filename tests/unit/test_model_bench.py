"""`bench model` and `bench step`: quick runs return complete, consistent tables; the operator
groups and the utilisation bounds on known cases.

No timing assertions: the benchmarks report times; the tests check how they sort and sum them.
"""

from __future__ import annotations

import argparse
import json

import pytest

from nuwa_lab.lab.bench import TARGETS
from nuwa_lab.lab.bench.model import GROUPS, op_group, run, run_step_profile, step_bounds


@pytest.mark.parametrize(
    "name, group",
    [
        ("aten::mm", "matmul"),
        ("aten::addmm", "matmul"),
        ("aten::bmm", "matmul"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", "attention"),
        ("aten::_fused_adamw_", "optimizer"),
        ("Optimizer.step#AdamW.step", "optimizer"),
        ("aten::gelu_backward", "other kernels"),
        ("aten::native_layer_norm", "other kernels"),
        ("aten::fill_", "other kernels"),
        ("aten::view", "framework"),
        ("aten::transpose", "framework"),
        ("aten::matmul", "framework"),  # a composite: its mm is counted as matmul
        ("MmBackward0", "framework"),
        ("autograd::engine::evaluate_function: MmBackward0", "framework"),
    ],
)
def test_each_profiler_event_lands_in_its_group(name, group):
    assert op_group(name) == group


def test_step_bounds_on_a_known_case():
    # 100 FLOPs per step in 2 s unprofiled; the profiled step takes 2.5 s, of which the matmuls 1
    # s, on a 100 FLOP/s machine: the profiled step is 2.5x its matmuls (the unprofiled time is
    # not mixed in), the goal 1.3x leaves 0.3 s for the rest (now 1.5 s); U = 50 / 100, and with
    # only the matmuls left 100 FLOPs in 1 s = 1.0
    bounds = step_bounds(
        model_flops=100, step_s=2, profiled_step_s=2.5, matmul_s=1, rate=100, goal=1.3
    )
    assert bounds == pytest.approx(
        {
            "step_over_matmuls": 2.5,
            "non_matmul_s": 1.5,
            "non_matmul_budget_s": 0.3,
            "utilisation": 0.5,
            "utilisation_max": 1.0,
        }
    )


def test_quick_step_profile_groups_add_up_and_the_matmul_flops_are_counted(capsys):
    assert TARGETS["step"] == "nuwa_lab.lab.bench.model:run_step_profile"
    result = run_step_profile(argparse.Namespace(target="step", json=None, quick=True))
    json.dumps(result)  # the --json output must be serialisable
    assert tuple(result["group_s"]) == GROUPS
    assert all(seconds >= 0 for seconds in result["group_s"].values())
    assert result["group_s"]["matmul"] > 0 and result["group_s"]["attention"] > 0
    assert result["profiled_step_s"] == pytest.approx(sum(result["group_s"].values()))
    # the matmuls' FLOPs are part of the model FLOPs (which add the attention's pairs)
    assert 0 < result["matmul_flops"] <= result["model_flops"]
    # U_max bounds the utilisation of the profiled steps, whose groups hold the matmuls' time; the
    # unprofiled step is timed apart, so on a loaded host U can exceed U_max at smoke sizes
    profiled_u = result["model_flops"] / result["profiled_step_s"] / (result["matmul_gflops"] * 1e9)
    assert result["utilisation_max"] >= profiled_u > 0 and result["utilisation"] > 0
    assert all(op_group(name) == "other kernels" for name in result["top_other_kernels_s"])
    assert result["step_over_matmuls"] == pytest.approx(
        result["profiled_step_s"] / result["group_s"]["matmul"]
    )
    out = capsys.readouterr().out
    assert "U_max" in out and "profiled step / its own matmuls" in out and "goal <= 1.3" in out


def test_quick_model_bench_reports_its_three_ratios(capsys):
    assert TARGETS["model"] == "nuwa_lab.lab.bench.model:run"
    result = run(argparse.Namespace(target="model", json=None, quick=True))
    json.dumps(result)
    assert result["same_tokens"] is True  # cached and uncached sampling agree token for token
    assert result["cache_speedup"] == pytest.approx(result["uncached_s"] / result["cached_s"])
    assert result["train_utilisation"] == pytest.approx(
        result["model_gflops"] / result["matmul_gflops"]
    )
    assert result["last_over_first"] > 0
    out = capsys.readouterr().out
    assert "speed-up" in out and ">= 5" in out and ">= 0.60" not in out


def test_the_cost_curve_measures_every_pattern_at_every_grid_with_the_papers_keys():
    from nuwa_lab.config import make_config
    from nuwa_lab.lab.bench.costs import cost_curve, paper_keys_per_query, relative_to

    cfg = make_config("smoke", device="cpu")
    grids = ((2, 4, 4), (4, 4, 4))
    rows = relative_to(cost_curve(cfg, grids, repeats=1, progress=False))
    assert [(r["tokens"], r["pattern"]) for r in rows] == [
        (n, p) for n in (32, 64) for p in ("full", "axial", "block", "nearby")
    ]
    for r in rows:
        assert r["sec_per_step"] > 0 and r["peak_mem_mb"] > 0 and r["gflop_per_step"] > 0
        # a causal query sees at most what the paper's (non-causal) term counts
        assert 1 <= r["causal_keys_per_query"] <= r["paper_keys_per_query"]
    assert {r["time_vs_nearby"] for r in rows if r["pattern"] == "nearby"} == {1.0}
    # known answers of the paper's term on a 4x4x4 grid
    assert paper_keys_per_query("full", (4, 4, 4), (1, 1, 1), (1, 2, 2)) == 64
    assert paper_keys_per_query("axial", (4, 4, 4), (1, 1, 1), (1, 2, 2)) == 12
    assert paper_keys_per_query("block", (4, 4, 4), (1, 1, 1), (1, 2, 2)) == 4
    assert paper_keys_per_query("nearby", (4, 4, 4), (1, 3, 3), (1, 2, 2)) == 147


def test_cost_grids_grow_from_the_presets_grid_and_the_slope_reads_a_power_law():
    from nuwa_lab.config import make_config
    from nuwa_lab.lab.bench.costs import cost_grids, log_log_slope

    grids = cost_grids(make_config("tiny"))
    assert [t * h * w for t, h, w in grids] == [256, 1024, 2048, 4096]
    rows = [{"pattern": "full", "tokens": n, "sec_per_step": 3e-6 * n**2} for n in (256, 1024)]
    rows += [{"pattern": "nearby", "tokens": n, "sec_per_step": 5e-4 * n} for n in (256, 1024)]
    assert log_log_slope(rows, "full") == pytest.approx(2.0)
    assert log_log_slope(rows, "nearby") == pytest.approx(1.0)


def test_time_against_full_names_an_answer_only_outside_the_spread() -> None:
    from nuwa_lab.lab.bench.costs import with_time_vs_full

    def row(pattern, fastest, median):
        return {"pattern": pattern, "sec_per_step": fastest, "sec_per_step_median": median}

    rows = with_time_vs_full(
        [
            row("full", 1.0, 1.1),
            row("block", 0.4, 0.45),
            row("nearby", 0.95, 1.2),
            row("axial", 1.3, 1.4),
        ]
    )
    by = {r["pattern"]: r for r in rows}
    assert (
        by["full"]["time_vs_full"] == 1.0 and by["full"]["cheaper_than_full"] == "within the spread"
    )
    assert (
        by["block"]["time_vs_full_range"] == (0.36, 0.45)
        and by["block"]["cheaper_than_full"] == "yes"
    )
    assert by["nearby"]["cheaper_than_full"] == "within the spread"  # 0.86 .. 1.2
    assert by["axial"]["cheaper_than_full"] == "no"  # 1.18 .. 1.4
    assert with_time_vs_full([row("block", 0.4, 0.5)])[0].get("time_vs_full") is None
