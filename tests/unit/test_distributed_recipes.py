"""Every training recipe under torchrun: two CPU processes (gloo) train what one process trains.

The worker (`recipes_worker.py`) runs the `recipe` command under `torchrun --nproc_per_node 2`
for the tokenizers, the probes, pretraining, fine-tuning, notebook 04's ablation arm and a
mixture run; the test runs the same commands in one process and compares the artifacts: equal to
float rounding. Rank 0 alone writes (checkpoints, artifacts, caches); a checkpoint written by two
processes resumes on one and the other way round, equal to an uninterrupted run (the VQ-GAN: two
optimizers, the discriminator switching on, EMA codebook buffers, dead-code restarts).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.recipes.cache import get_or_train
from nuwa_lab.train.checkpoint import load_checkpoint
from nuwa_lab.world import ShapesWorld

WORKER = Path(__file__).with_name("recipes_worker.py")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
PROBES = ("probe", "video_probe", "segmenter")


def load_worker():
    spec = importlib.util.spec_from_file_location("recipes_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchrun(out: Path, what: str) -> list[dict]:
    """Run the worker on two CPU processes; each rank's record."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    proc = subprocess.run(
        [*cmd, str(WORKER), str(out), what], env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def assert_close_states(a: dict, b: dict, what: str, *, scale: float | None = None) -> None:
    """Nested state dicts equal: tensors to 1e-5 absolute and 1e-4 relative, or with `scale`
    to `scale` times each tensor's largest value; everything else exactly."""
    assert a.keys() == b.keys(), what
    for key, value in a.items():
        if isinstance(value, dict):
            assert_close_states(value, b[key], f"{what}.{key}", scale=scale)
        elif isinstance(value, torch.Tensor) and scale is not None and value.is_floating_point():
            atol = scale * max(float(b[key].abs().max()), 1e-6) if value.numel() else 0.0
            torch.testing.assert_close(value, b[key], atol=atol, rtol=0, msg=f"{what}.{key}")
        elif isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, b[key], atol=1e-5, rtol=1e-4, msg=f"{what}.{key}")
        else:
            assert value == b[key], f"{what}.{key}"


def probe_outputs(probe, cfg) -> torch.Tensor:
    world = ShapesWorld(cfg.world)
    data = world.videos(list(range(6)))
    pixels = data.pixels if probe.__class__.__name__ == "VideoProbe" else data.pixels[:, 0]
    with torch.no_grad():
        out = probe(pixels)
    return out if isinstance(out, torch.Tensor) else torch.cat([v.flatten() for v in out.values()])


@pytest.mark.slow
def test_every_recipe_trains_on_two_processes_as_on_one(tmp_path: Path, monkeypatch) -> None:
    worker = load_worker()
    ranks = torchrun(tmp_path / "two", "recipes")
    single = tmp_path / "one"
    worker.run_commands(single)  # sets NUWA_LAB_ARTIFACTS for itself
    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(single / "artifacts"))

    # the same artifacts (same config hashes), equal weights
    two = {p.parent.name: p for p in (tmp_path / "two" / "artifacts").glob("*/model.pt")}
    one = {p.parent.name: p for p in (single / "artifacts").glob("*/model.pt")}
    assert one.keys() == two.keys() and len(one) == 12, sorted(one)
    cfg = make_config("smoke", device="cpu")
    for name in sorted(one):
        kind = name.rsplit("-", 1)[0]
        a = torch.load(one[name], weights_only=True)["state_dict"]
        b = torch.load(two[name], weights_only=True)["state_dict"]
        if kind in PROBES:
            # a conv bias right before a GroupNorm has a zero gradient, up to rounding, which
            # Adam scales up to full steps: the weights differ there, what the probe reads not
            probe = get_or_train(kind, cfg)
            mine = probe_outputs(probe, cfg)
            probe.load_state_dict(b)
            torch.testing.assert_close(probe_outputs(probe, cfg), mine, atol=1e-5, rtol=1e-4)
        else:
            # Adam divides each step by the gradient's own running size, so an element whose
            # gradient is near zero turns rounding into visible steps (one VQ-VAE conv weight of
            # 2,304: 1.9e-5 apart on one host): each tensor to 1e-3 of its largest value, as the
            # resume test below compares
            assert_close_states(a, b, name, scale=1e-3)
    ablation = [torch.load(p / "ablation" / "model.pt") for p in (single, tmp_path / "two")]
    assert_close_states(ablation[0], ablation[1], "ablation", scale=1e-3)

    # rank 0 alone wrote: artifacts, checkpoints, token caches, pools, the ablation's files
    written = set(ranks[0]["renamed"])
    assert ranks[1]["renamed"] == [] and len(written) > 50
    for part in ("model.pt", "meta.json", "checkpoint.pt", "nuwa_tokens-", "pool_train.pt"):
        assert any(part in path for path in written), part
    assert {"ablation/model.pt", "ablation/metrics.json"} <= written
    # a budget measured in time: every rank trains rank 0's number of steps
    assert ranks[0]["time_budget_steps"] == ranks[1]["time_budget_steps"] >= 1


@pytest.mark.slow
def test_a_checkpoint_resumes_on_another_number_of_processes(tmp_path: Path) -> None:
    """2 -> 1 and 1 -> 2 processes after PART of the VQ-GAN's 4 steps equal one run of 4."""
    worker = load_worker()
    worker.train_vqgan(tmp_path / "r12", max_steps=worker.PART)
    torchrun(tmp_path, "resume")
    assert load_checkpoint(tmp_path / "r21" / "checkpoint.pt")["step"] == worker.PART
    worker.train_vqgan(tmp_path / "r21")
    worker.train_vqgan(tmp_path / "full")
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    assert set(full["modules"]) == {"model", "disc"} and full["step"] == 4
    quantizer = full["modules"]["model"]
    assert int(quantizer["quantizer.step"]) == 4 and bool(quantizer["quantizer.initialised"])
    history = {k: torch.tensor(v) for k, v in full["history"].items()}
    for run in ("r12", "r21"):
        ckpt = load_checkpoint(tmp_path / run / "checkpoint.pt")
        assert ckpt["step"] == 4
        # The same codes are used and restarted at every step, and the losses agree to 1e-5:
        for key in ("perplexity", "usage", "restarted"):
            assert torch.equal(torch.tensor(ckpt["history"][key]), history[key]), key
        for key in ("loss/gen", "loss/disc", "adaptive_weight"):  # NaN: before disc_start
            mine = torch.tensor(ckpt["history"][key])
            torch.testing.assert_close(mine, history[key], rtol=1e-5, atol=0, equal_nan=True)
        # the weights, buffers and Adam moments to 0.1% of each tensor's scale: the adaptive
        # weight (about 360 here) multiplies the rounding of a sum over 2 shards or 1 batch, and
        # Adam turns near-zero gradients into full steps (a restart drawn from one shard, or an
        # init from rank 0's shard, would be off by the whole scale)
        assert_close_states(ckpt["modules"], full["modules"], f"{run} modules", scale=1e-3)
        assert_close_states(ckpt["optimizers"], full["optimizers"], f"{run} Adam", scale=1e-3)
