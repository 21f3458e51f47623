"""Multi-task pretraining: the mixture, the summed loss, data parallelism, the cached artifact.

Run as a script under torchrun (`test_two_cpu_processes_train_like_one`), it is its own worker.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nuwa_lab.config import make_config
from nuwa_lab.model import Condition, Nuwa
from nuwa_lab.recipes.pretrain import (
    PretrainTrainable,
    TokenData,
    check_task_mix,
    parse_task_mix,
    pretraining_history,
    task_counts,
    task_layout,
    validation_losses,
)

K, VOCAB = 32, 40
SIZES = dict(
    text_vocab=VOCAB, codebook_size=K, sketch_codebook_size=16, max_grid=(2, 4, 4), text_length=8
)
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def synthetic_data(n: int = 16) -> TokenData:
    g = torch.Generator().manual_seed(0)
    text = torch.randint(5, VOCAB, (n, 8), generator=g)
    text[:, 6:] = 0
    return TokenData(
        images=torch.randint(0, K, (n, 4, 4), generator=g).short(),
        image_text=text.short(),
        videos=torch.randint(0, K, (n, 2, 4, 4), generator=g).short(),
        video_text=text.flip(0).short(),
    )


def setup(batch_size: int = 6, mix: str = "t2i+t2v+v2v"):
    cfg = make_config(
        "smoke",
        **{"train.batch_size": batch_size, "train.steps": 3, "train.task_mix": parse_task_mix(mix)},
    )
    torch.manual_seed(0)
    model = Nuwa(dataclasses.replace(cfg.model, dec_layers=2), **SIZES)
    return cfg, model, PretrainTrainable(model, synthetic_data(), cfg)


def test_task_counts_follow_the_ratios() -> None:
    assert task_counts((("t2i", 1.0), ("v2v", 1.0), ("t2v", 1.0)), 32) == {
        "t2i": 11,
        "v2v": 11,
        "t2v": 10,
    }
    assert task_counts(parse_task_mix("t2v:3+t2i:1"), 8) == {"t2i": 2, "t2v": 6}
    # however a mixture is written, it is one config (one artifact): the default's order
    assert parse_task_mix("t2v+t2i+v2v") == make_config("tiny").train.task_mix
    assert task_counts(parse_task_mix("t2v+t2i:0"), 5) == {"t2v": 5}
    layout = task_layout(parse_task_mix("t2v+t2i+v2v"), 6)
    # interleaved: both halves of the batch (two data-parallel shards) hold every task once
    assert sorted(layout[:3]) == sorted(layout[3:]) == ["t2i", "t2v", "v2v"]


def test_bad_task_mix_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown or repeated"):
        parse_task_mix("t2v+s2v")
    with pytest.raises(ValueError, match="unknown or repeated"):
        check_task_mix((("t2v", 1.0), ("t2v", 2.0)))
    with pytest.raises(ValueError, match="positive sum"):
        check_task_mix((("t2v", 0.0),))


def test_loss_is_the_sum_of_the_tasks_mean_cross_entropies() -> None:
    cfg, model, trainable = setup()
    batch = trainable.batch(step=0, rank=0, world_size=1)
    losses, logs = trainable.losses(batch, 0)
    expected = 0.0
    for task in ("t2i", "t2v", "v2v"):
        cond, target = batch[task]["condition"], batch[task]["target"]
        assert target.shape[0] == 2
        logits, _ = model(cond, target)
        ce = F.cross_entropy(logits.reshape(-1, K), target.flatten())
        assert logs[f"loss_{task}"] == pytest.approx(ce.item(), rel=1e-5)
        expected = expected + ce
    assert losses["model"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert batch["v2v"]["condition"].kind == "none"
    assert batch["t2i"]["target"].shape[1:] == (4, 4)
    assert batch["t2v"]["target"].shape[1:] == (2, 4, 4)


def test_shard_losses_average_to_the_global_loss() -> None:
    _, _, trainable = setup(batch_size=4)  # counts (2, 1, 1): one shard lacks two tasks
    whole = trainable.losses(trainable.batch(3, 0, 1), 3)
    shards = [trainable.losses(trainable.batch(3, r, 2), 3) for r in range(2)]
    mean = sum(s[0]["model"] for s in shards) / 2
    assert mean.item() == pytest.approx(whole[0]["model"].item(), rel=1e-5)
    for key, value in whole[1].items():
        assert sum(s[1][key] for s in shards) / 2 == pytest.approx(value, rel=1e-5)


def test_validation_losses_per_task() -> None:
    _, model, _ = setup()
    val = validation_losses(model, synthetic_data(6), batch_size=4)
    assert set(val) == {"val_nll_t2i", "val_nll_t2v", "val_nll_v2v"}
    data = synthetic_data(6)
    logits, _ = model.eval()(Condition.none(6), data.videos.long())
    ce = F.cross_entropy(logits.reshape(-1, K), data.videos.long().flatten())
    assert val["val_nll_v2v"] == pytest.approx(ce.item(), rel=1e-5)


def run_training(run_dir: Path) -> dict:
    from nuwa_lab.train.loop import train

    cfg, model, trainable = setup()
    result = train(trainable, cfg.train, run_dir=run_dir, device="cpu", seed=0, progress=False)
    return {"state": model.state_dict(), "history": result.history}


@pytest.mark.slow
def test_two_cpu_processes_train_like_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    proc = subprocess.run(
        [*cmd, __file__, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    single = run_training(tmp_path / "single")
    for key, value in single["state"].items():
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
        torch.testing.assert_close(ranks[0]["state"][key], value, atol=1e-5, rtol=1e-4)
    for key in ("loss/model", "loss_t2i", "loss_t2v", "loss_v2v"):
        torch.testing.assert_close(
            torch.tensor(ranks[0]["history"][key]), torch.tensor(single["history"][key])
        )


@pytest.mark.slow
def test_pretraining_is_cached_as_the_nuwa_artifact(tmp_path: Path, monkeypatch) -> None:
    from nuwa_lab.recipes.cache import get_or_train, load_meta

    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(tmp_path))

    cfg = make_config("smoke", device="cpu", **{"train.steps": 3})
    model = get_or_train("nuwa", cfg, root=tmp_path, progress=False)
    again = get_or_train("nuwa", cfg, root=tmp_path, progress=False)
    assert isinstance(again, Nuwa) and again is not model
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    meta = load_meta("nuwa", cfg, root=tmp_path)
    assert {"val_nll_t2i", "val_nll_t2v", "val_nll_v2v", "train_loss_t2v"} <= set(meta["metrics"])
    history = pretraining_history(cfg, root=tmp_path)
    assert history["step"] == [0, 1, 2]
    assert all(len(history[f"loss_{t}"]) == 3 for t in ("t2i", "t2v", "v2v"))
    # the token pools were cached beside the artifacts
    assert list(tmp_path.glob("nuwa_tokens-*/train-*.pt"))
    other = make_config("smoke", device="cpu", **{"train.task_mix": parse_task_mix("t2v")})
    from nuwa_lab.recipes.cache import artifact_dir

    assert artifact_dir("nuwa", other, root=tmp_path) != artifact_dir("nuwa", cfg, root=tmp_path)


if __name__ == "__main__":  # the torchrun worker
    import torch.distributed as dist

    out = Path(sys.argv[1])
    record = run_training(out / "run")
    torch.save(record, out / f"rank{dist.get_rank()}.pt")
