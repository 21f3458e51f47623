"""Presets compose per-component configs; overrides use dotted keys; typos are errors."""

from __future__ import annotations

import dataclasses

import pytest

from nuwa_lab.config import (
    PRESETS,
    config_hash,
    make_config,
    parse_overrides,
    resolve_device,
    shorter_schedules,
)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_and_records_its_name(preset: str) -> None:
    cfg = make_config(preset)
    assert cfg.preset == preset


def test_presets_grow_from_smoke_to_paper() -> None:
    dims = [make_config(p).model.dim for p in PRESETS]
    assert dims == sorted(dims) and dims[0] < dims[-1]
    assert make_config("paper").model.dim == 1280
    paper = make_config("paper").model
    assert (paper.enc_layers, paper.dec_layers) == (12, 24)


def test_dotted_and_double_underscore_overrides_are_the_same() -> None:
    a = make_config("smoke", **{"model.dim": 48, "train.steps": 7})
    b = make_config("smoke", model__dim=48, train__steps=7)
    assert a == b and a.model.dim == 48 and a.train.steps == 7


def test_override_beats_preset_value() -> None:
    assert make_config("smoke").world.image_size == 16
    assert make_config("smoke", **{"world.image_size": 24}).world.image_size == 24


def test_lists_from_yaml_become_tuples() -> None:
    cfg = make_config("tiny", **{"model.extent": [2, 1, 1]})
    assert cfg.model.extent == (2, 1, 1)


def test_parse_overrides_reads_literals_text_and_quoted_values() -> None:
    text = "pretrain.pool=24576 train.lr=3e-4 world.source=shapes 'model.extent=(2, 1, 1)'"
    assert parse_overrides(text) == {
        "pretrain.pool": 24576,
        "train.lr": 3e-4,
        "world.source": "shapes",
        "model.extent": (2, 1, 1),
    }
    assert parse_overrides("") == {} and parse_overrides("  ") == {}
    assert parse_overrides(["train.steps=20", "train.batch_size=4"]) == {
        "train.steps": 20,
        "train.batch_size": 4,
    }
    cfg = make_config("smoke", **parse_overrides(text))
    assert cfg.pretrain.pool == 24576 and cfg.model.extent == (2, 1, 1)


@pytest.mark.parametrize("bad", ["train.steps", "=3", "train.steps 200"])
def test_parse_overrides_names_a_pair_without_key_or_value(bad: str) -> None:
    with pytest.raises(ValueError, match=r"write KEY=VALUE, e\.g\. train\.steps=200"):
        parse_overrides(bad)


def test_a_notebook_s_config_keys_cannot_be_set_twice() -> None:
    with pytest.raises(TypeError, match="seed"):
        make_config("smoke", seed=1, **parse_overrides("seed=2"))


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown config key 'model\.dimm'.*model\.dim"):
        make_config("tiny", **{"model.dimm": 3})


def test_unknown_preset_lists_valid_presets() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'.*smoke, tiny, base, paper"):
        make_config("huge")


def test_configs_are_frozen() -> None:
    cfg = make_config("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.dim = 3  # type: ignore[misc]


def test_config_hash_changes_with_the_config_and_only_then() -> None:
    a, b = make_config("smoke"), make_config("smoke")
    assert config_hash(a.tokenizer) == config_hash(b.tokenizer)
    c = make_config("smoke", **{"tokenizer.codebook_size": 64})
    assert config_hash(a.tokenizer) != config_hash(c.tokenizer)
    assert config_hash(a.world) == config_hash(c.world)


def test_auto_device_is_cpu_without_cuda() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


def test_shorter_schedules_scale_every_stage_and_keep_the_rest() -> None:
    tiny = make_config("tiny")
    short = make_config("tiny", **shorter_schedules(tiny, tokenizer=0.25, model=0.5))
    assert short.tokenizer.steps == tiny.tokenizer.steps // 4
    assert short.tokenizer.disc_start == tiny.tokenizer.disc_start // 4
    assert short.train.steps == round(tiny.train.steps / 2)
    for task, steps, batch, lr in tiny.tasks.finetune_budgets:
        assert short.tasks.finetune_budget(task) == (round(steps / 2), batch, lr)
    assert short.tasks.finetune_budget("i2i")[0] == round(tiny.tasks.finetune_steps / 2)
    # warm-ups, batches, learning rates and the probes are not schedules of the models trained
    assert (short.train.warmup, short.train.batch_size, short.train.lr) == (
        tiny.train.warmup,
        tiny.train.batch_size,
        tiny.train.lr,
    )
    assert short.probe == tiny.probe
    # 1 changes nothing (the same artifact keys); a tiny fraction still trains one step a stage
    assert make_config("tiny", **shorter_schedules(tiny)) == tiny
    smoke = make_config("smoke")
    assert make_config("smoke", **shorter_schedules(smoke, model=1e-6)).train.steps == 1


def test_shorter_schedules_give_a_task_s_fine_tuning_its_own_fraction() -> None:
    tiny = make_config("tiny")
    short = make_config("tiny", **shorter_schedules(tiny, model=0.5, finetune={"t2v": 0.75}))
    steps, batch, lr = make_config("tiny").tasks.finetune_budget("t2v")
    assert short.tasks.finetune_budget("t2v") == (round(steps * 0.75), batch, lr)
    assert short.tasks.finetune_budget("t2i")[0] == round(tiny.tasks.finetune_budget("t2i")[0] / 2)
    assert short.train.steps == round(tiny.train.steps / 2)
    # a task on the shared budget (I2I at tiny; every task at smoke) gets a row of its own
    short = make_config("tiny", **shorter_schedules(tiny, finetune={"i2i": 0.5}))
    shared = tiny.tasks
    want = (round(shared.finetune_steps / 2), shared.finetune_batch_size, shared.finetune_lr)
    assert short.tasks.finetune_budget("i2i") == want
    assert short.tasks.finetune_budget("s2i") == tiny.tasks.finetune_budget("s2i")
    smoke = make_config("smoke")
    same = make_config("smoke", **shorter_schedules(smoke, finetune={"t2v": 1.0}))
    assert same.tasks.finetune_budget("t2v") == smoke.tasks.finetune_budget("t2v")
    with pytest.raises(ValueError, match="finetune names \\['t3v'\\], not tasks"):
        shorter_schedules(tiny, finetune={"t3v": 0.5})
    with pytest.raises(ValueError, match=r"t2v must be a fraction in \(0, 1\]"):
        shorter_schedules(tiny, finetune={"t2v": 1.5})


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
@pytest.mark.parametrize("stage", ["tokenizer", "model"])
def test_shorter_schedules_refuse_a_fraction_outside_zero_to_one(
    stage: str, fraction: float
) -> None:
    with pytest.raises(ValueError, match=rf"{stage} must be a fraction in \(0, 1\]"):
        shorter_schedules(make_config("tiny"), **{stage: fraction})
