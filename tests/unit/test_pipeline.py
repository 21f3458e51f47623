"""The pipeline's short run, the `recipe` command, and what makes every recipe data-parallel.

The runs themselves (every recipe on two processes, the base pipeline) are the slow tests of
test_distributed_recipes.py and test_base_preset.py; these are the fast checks beside them.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nuwa_lab.__main__ import main
from nuwa_lab.config import make_config
from nuwa_lab.model import KINDS, Nuwa
from nuwa_lab.recipes import artifact_dir
from nuwa_lab.recipes.finetune_data import FinetuneTrainable
from nuwa_lab.recipes.pipeline import pipeline_artifacts, short_config, task_artifacts
from nuwa_lab.train.checkpoint import set_rng_state
from nuwa_lab.train.files import atomic_write_json, is_writer

BASE = make_config("base")


def test_short_config_caps_every_stage_and_keeps_the_sizes() -> None:
    short = short_config(BASE, 3, batch=2, items=5)
    assert (short.world, short.text, short.model) == (BASE.world, BASE.text, BASE.model)
    assert short.tokenizer.codebook_size == BASE.tokenizer.codebook_size
    steps = (
        short.tokenizer.steps,
        short.tokenizer.seg_steps,
        short.probe.steps,
        short.probe.video_steps,
        short.probe.seg_steps,
        short.train.steps,
        short.tasks.finetune_steps,
    )
    assert steps == (3,) * 7
    assert all(row[1:3] == (3, 2) for row in short.tasks.finetune_budgets)
    assert short.tasks.finetune_budget("s2v")[:2] == (3, 2)
    assert short.tokenizer.disc_start == 2  # the discriminator takes the last step
    assert short.train.batch_size == 4  # three pretraining tasks: two batches of 2
    assert (short.pretrain.pool, short.tasks.finetune_pool, short.sample.num_eval) == (5, 5, 5)
    # without `batch` the batch sizes stay (a GPU user checks the real memory too)
    assert short_config(BASE, 3).train.batch_size == BASE.train.batch_size
    with pytest.raises(ValueError, match="must be positive"):
        short_config(BASE, 0)


def test_a_short_artifact_never_stands_in_for_a_full_one() -> None:
    short = short_config(BASE, 2, batch=2)
    for kind in pipeline_artifacts(BASE):
        assert artifact_dir(kind, short) != artifact_dir(kind, BASE), kind


def test_the_pipeline_trains_what_each_task_runs_with_in_order() -> None:
    assert task_artifacts("i2i") == []  # the pretrained model
    assert task_artifacts("tv2v") == ["nuwa_finetuned_t2i", "nuwa_finetuned_t2v"]
    kinds = pipeline_artifacts(BASE)
    assert kinds[:6] == ["vqgan", "vqgan_seg", "probe", "video_probe", "segmenter", "nuwa"]
    assert kinds.index("nuwa_finetuned_t2v") < kinds.index("nuwa_finetuned_v2v")
    assert kinds.index("nuwa_finetuned_s2i") < kinds.index("nuwa_finetuned_s2v")
    assert pipeline_artifacts(BASE, ("t2i",)) == ["vqgan", "probe", "nuwa", "nuwa_finetuned_t2i"]


def test_the_recipe_command_names_what_it_can_train(capsys) -> None:
    with pytest.raises(SystemExit, match="not a recipe; choose pipeline, ablation, mixture"):
        main(["recipe", "vqgam", "--preset", "smoke", "--device", "cpu"])
    with pytest.raises(SystemExit, match="needs --out"):
        main(["recipe", "ablation", "--preset", "smoke", "--device", "cpu"])


def test_fine_tuning_shards_average_to_the_global_loss() -> None:
    """Fixed positions fall unevenly between shards (as I2I's hidden regions do): the shards'
    losses, averaged over ranks as the loop's gradients are, still give the global mean."""
    cfg = make_config("smoke")
    torch.manual_seed(0)
    model = Nuwa(cfg.model, text_vocab=8, codebook_size=16, sketch_codebook_size=8)
    g = torch.Generator().manual_seed(1)
    n = 8
    pool = {
        "condition": torch.zeros(n, 1, 1, 1, dtype=torch.long),
        "target": torch.randint(0, 16, (n, 4, 4), generator=g),
        "fixed": torch.rand(n, 4, 4, generator=g) < torch.linspace(0.1, 0.9, n)[:, None, None],
        "kind": torch.tensor(KINDS.index("none")),
    }
    train_cfg = dataclasses.replace(cfg.train, batch_size=4)
    trainable = FinetuneTrainable(model, pool, train_cfg, seed=3)
    whole = trainable.losses(trainable.batch(5, 0, 1), 5)[0]["model"]
    shards = [trainable.losses(trainable.batch(5, r, 2), 5)[0]["model"] for r in range(2)]
    counts = [int((~trainable.batch(5, r, 2)["fixed"]).sum()) for r in range(2)]
    assert counts[0] != counts[1]  # the case a plain mean per shard gets wrong
    torch.testing.assert_close((shards[0] + shards[1]) / 2, whole)
    assert trainable.batch(5, 0, 1)["scale"] == 1.0  # one process: exactly the plain mean


def test_only_rank_0_writes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    assert not is_writer()
    atomic_write_json(tmp_path / "metrics.json", {"a": 1}, sha256=True)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    atomic_write_json(tmp_path / "metrics.json", {"a": 1}, sha256=True)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1}


def test_a_checkpoint_from_more_gpus_restores_on_fewer(monkeypatch) -> None:
    """The CUDA RNG states are one per GPU of the machine that saved them."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.append(i))
    state = {
        "torch": torch.get_rng_state(),
        "python": __import__("random").getstate(),
        "numpy": list(__import__("numpy").random.get_state()),
        "cuda": [torch.zeros(8, dtype=torch.uint8)] * 8,
    }
    state["numpy"][1] = state["numpy"][1].tolist()
    set_rng_state(state)
    assert restored == [0]
