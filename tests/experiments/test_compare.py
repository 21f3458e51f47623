"""Arm comparisons over seeds: the Welch interval, the verdict and its direction, stand-in runs."""

from __future__ import annotations

import pytest
from scipy import stats

from nuwa_lab.lab.experiment.compare import (
    ATTENTION,
    Comparison,
    compare_arms,
    comparison_markdown,
)


def rows_of(values: dict[tuple[str, str], list[float]], metric: str = "val_loss") -> list[dict]:
    return [
        {"ATTENTION": arm, "BUDGET": budget, "SEED": seed, metric: v}
        for (arm, budget), vs in values.items()
        for seed, v in enumerate(vs)
    ]


def test_a_clear_difference_holds_and_names_the_better_arm_for_either_direction() -> None:
    rows = rows_of(
        {("full", "steps"): [2.05, 2.08, 2.03], ("nearby", "steps"): [1.91, 1.92, 1.915]}
    )
    rows += [dict(r, test_pixel_accuracy=1 - r["val_loss"] / 10) for r in rows]
    (loss,) = [r for r in compare_arms(rows, ATTENTION) if r["metric"] == "val_loss"]
    assert loss["arm"] == "full" and loss["reference"] == "nearby" and loss["BUDGET"] == "steps"
    assert loss["verdict"] == "holds here: nearby better"  # lower loss is better
    (acc,) = [r for r in compare_arms(rows, ATTENTION) if r["metric"] == "test_pixel_accuracy"]
    assert acc["verdict"] == "holds here: nearby better"  # higher accuracy is better
    assert acc["difference"] < 0 < loss["difference"]


def test_the_interval_is_welchs_and_overlapping_arms_are_not_resolved() -> None:
    a, b = [1.0, 1.3, 0.9], [1.1, 1.0, 1.2]
    rows = rows_of({("axial", "steps"): a, ("nearby", "steps"): b})
    (row,) = compare_arms(rows, ATTENTION)
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert row["low"] == pytest.approx(welch.low) and row["high"] == pytest.approx(welch.high)
    assert row["verdict"] == "not resolved at this budget"
    assert row["seeds"] == "3 / 3"


def test_budgets_are_compared_separately_and_full_stands_in_for_its_time_run() -> None:
    rows = rows_of(
        {
            ("full", "steps"): [2.0, 2.1, 2.05],
            ("nearby", "steps"): [1.9, 1.95, 1.92],
            ("nearby", "time"): [2.3, 2.35, 2.32],  # fewer steps in full's time
        }
    )
    found = compare_arms(rows, ATTENTION)
    assert [(r["BUDGET"], r["arm"]) for r in found] == [("steps", "full"), ("time", "full")]
    assert found[1]["verdict"] == "holds here: full better"
    text = comparison_markdown(rows, ATTENTION)
    assert "BUDGET=steps" in text and "BUDGET=time" in text and "holds here: full better" in text


def test_single_seed_arms_get_no_interval_and_the_markdown_says_why() -> None:
    rows = rows_of({("full", "steps"): [2.0], ("nearby", "steps"): [1.9, 1.8]})
    assert compare_arms(rows, ATTENTION) == []
    assert "at least 2 seeds of each arm" in comparison_markdown(rows, ATTENTION)
    plain = Comparison(arm="TASK_MIX", reference="t2v", metrics=(("acc", False),))
    rows = [
        {"TASK_MIX": m, "acc": a} for m, a in (("t2v", 0.1), ("t2v", 0.2), ("x", 0.5), ("x", 0.6))
    ]
    (row,) = compare_arms(rows, plain)
    assert row["verdict"].startswith("holds here: x better")


def test_task_targets_over_seeds_show_each_seed_and_say_when_one_misses() -> None:
    from nuwa_lab.lab.experiment.task_seeds import targets_over_seeds

    def run(seed: int, acc: float, held: float) -> dict:
        metrics = {
            "task": "t2i",
            "model_variant": "finetuned",
            "test_acc_all": acc,
            "held_out_acc_all": held,
            "target_acc_all_test": acc >= 0.9,
            "target_acc_all_held_out": held >= 0.6,
            "test_n_items": 256,
            "held_out_n_items": 256,
        }
        return {"record": True, "metrics": metrics, "params": {"SEED": seed}, "seed": seed}

    rows = targets_over_seeds([run(0, 0.92, 0.70), run(1, 0.89, 0.66), run(2, 0.95, 0.64)])
    test, held = rows
    assert test["task"] == "T2I" and "test" in test["target"] and test["goal"] == ">= 0.9"
    assert (test["seed 0"], test["seed 1"], test["seed 2"]) == ("0.92 ✓", "0.89 ✗", "0.95 ✓")
    assert test["every seed meets it"] == "**no**: 2 of 3"
    assert held["every seed meets it"] == "yes (3 seeds)"
    mean, interval = held["mean [95% over seeds]"].split(" ", 1)
    assert float(mean) == pytest.approx((0.70 + 0.66 + 0.64) / 3, abs=1e-3)
    low, high = (float(x) for x in interval.strip("[]").split(", "))
    ref = stats.t.interval(0.95, 2, loc=float(mean), scale=stats.sem([0.70, 0.66, 0.64]))
    assert (low, high) == pytest.approx(ref, abs=1e-3)
    assert targets_over_seeds([]) == []


def test_the_multitask_comparison_sets_t2v_alone_under_each_budget_against_its_mixture() -> None:
    from nuwa_lab.lab.experiment.compare import COMPARISONS

    pair, triple = COMPARISONS["multitask_ablation"]
    accuracy = {
        "t2v+t2i": [0.60, 0.65, 0.70],
        "t2v": [0.10, 0.12, 0.08],
        "t2v @ t2v_examples:t2v+t2i": [0.05, 0.07, 0.06],
        "t2v @ time:t2v+t2i": [0.61, 0.66, 0.69],
        "t2v+t2i+v2v": [0.0, 0.01, 0.02],
        "t2v @ time:t2v+t2i+v2v": [0.1, 0.2, 0.15],
    }
    rows = [
        {"arm": arm, "SEED": seed, "t2v_acc_all": a}
        for arm, values in accuracy.items()
        for seed, a in enumerate(values)
    ]
    found = {r["arm"]: r["verdict"] for r in compare_arms(rows, pair)}
    assert found == {
        "t2v": "holds here: t2v+t2i better",
        "t2v @ t2v_examples:t2v+t2i": "holds here: t2v+t2i better",
        "t2v @ time:t2v+t2i": "not resolved at this budget",
    }
    found = {r["arm"]: r["verdict"] for r in compare_arms(rows, triple)}
    assert set(found) == {"t2v", "t2v @ time:t2v+t2i+v2v"}  # only its own budgets, no pair arms
    assert found["t2v @ time:t2v+t2i+v2v"] == "holds here: t2v @ time:t2v+t2i+v2v better"


def test_where_seeds_ran_groups_the_seeds_by_machine() -> None:
    from nuwa_lab.lab.experiment.task_seeds import where_seeds_ran

    runs = [
        {"seed": 0, "host": "AMD EPYC (2 cores) at abc1234"},
        {"seed": 0, "host": "AMD EPYC (2 cores) at abc1234"},
        {"seed": 1, "host": "AMD EPYC (2 cores) at abc1234"},
        {"seed": 2, "host": "Intel Xeon (2 cores) at def5678"},
    ]
    assert where_seeds_ran(runs) == (
        "seed 0 and seed 1 on AMD EPYC (2 cores) at abc1234; "
        "seed 2 on Intel Xeon (2 cores) at def5678"
    )
