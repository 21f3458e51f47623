"""Budgets of the multi-task ablation: equal steps, equal T2V examples, equal wall-clock."""

from __future__ import annotations

import pytest

from nuwa_lab import make_config
from nuwa_lab.recipes.mixture_budget import (
    budget_steps,
    mixture_step_seconds,
    parse_budget,
    t2v_items,
)
from nuwa_lab.recipes.pretrain import parse_task_mix


def test_budgets_parse_and_bad_ones_name_the_form() -> None:
    assert parse_budget("steps") == ("steps", None)
    assert parse_budget("time:t2v+t2i") == ("time", "t2v+t2i")
    assert parse_budget("t2v_examples:t2v+t2i+v2v") == ("t2v_examples", "t2v+t2i+v2v")
    for bad in ("epochs", "time", "steps:t2v", "time:"):
        with pytest.raises(ValueError, match="'t2v_examples:<mixture>'"):
            parse_budget(bad)
    with pytest.raises(ValueError):
        parse_budget("time:t2v+x2y")


def test_equal_t2v_examples_gives_t2v_alone_the_mixtures_share_of_steps() -> None:
    cfg = make_config("tiny")  # batch 32
    b = cfg.train.batch_size
    assert t2v_items(parse_task_mix("t2v"), b) == b
    assert t2v_items(parse_task_mix("t2v+t2i"), b) == b // 2
    assert budget_steps(cfg, "t2v", "t2v_examples:t2v+t2i", 1500) == 750
    three = t2v_items(parse_task_mix("t2v+t2i+v2v"), b)  # 11 of 32 (largest remainder)
    assert budget_steps(cfg, "t2v", "t2v_examples:t2v+t2i+v2v", 1500) == round(1500 * three / b)
    assert budget_steps(cfg, "t2v+t2i", "steps", 1500) == 1500
    with pytest.raises(ValueError, match="no T2V items"):
        budget_steps(cfg, "t2i", "t2v_examples:t2v+t2i", 100)


def test_equal_time_uses_the_ratio_of_step_times() -> None:
    cfg = make_config("tiny")
    seconds = {"t2v": 0.5, "t2v+t2i": 0.4}
    assert budget_steps(cfg, "t2v", "time:t2v+t2i", 1500, seconds=seconds) == 1200
    assert budget_steps(cfg, "t2v+t2i", "time:t2v+t2i", 10, seconds=seconds) == 10


def test_step_times_are_measured_for_every_mixture_and_images_are_cheaper() -> None:
    cfg = make_config("smoke")
    seconds = mixture_step_seconds(cfg, ["t2v", "t2i"], repeats=2)
    assert set(seconds) == {"t2v", "t2i"} and all(s > 0 for s in seconds.values())
    assert budget_steps(cfg, "t2v", "time:t2i", 100, seconds=seconds) >= 1
