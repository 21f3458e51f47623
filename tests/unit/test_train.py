"""The training loop: schedule, clipping, NaN guard, checkpoints, exact resume, two optimizers."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nuwa_lab.config import TrainConfig
from nuwa_lab.train.checkpoint import load_checkpoint
from nuwa_lab.train.loop import (
    CheckpointError,
    NonFiniteLossError,
    SimpleTrainable,
    lr_at,
    make_adamw,
    rank_slice,
    step_generator,
    train,
)

CFG = TrainConfig(steps=10, batch_size=8, lr=1e-2, warmup=2, log_every=1, ckpt_every=3)
W_TRUE = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def regression_batch(seed: int, step: int, rank: int, world_size: int, size: int = 8):
    """The global batch of `step` (a pure function of (seed, step)), this rank's shard of it."""
    g = step_generator(seed, step)
    x = torch.randn(size, 4, generator=g)
    y = x @ W_TRUE + 0.1 * torch.randn(size, 1, generator=g)
    shard = rank_slice(size, rank, world_size)
    return {"x": x[shard], "y": y[shard]}


class Regression:
    """A tiny MLP with dropout (so exact resume must also restore the RNG streams)."""

    def __init__(self, cfg: TrainConfig = CFG, *, init_seed: int = 0, nan_at: int | None = None):
        torch.manual_seed(init_seed)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))
        self.cfg, self.nan_at, self.dtypes = cfg, nan_at, []

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"net": make_adamw(self.net, self.cfg)}

    def batch(self, step, rank, world_size):
        return regression_batch(123, step, rank, world_size)

    def losses(self, batch, step):
        pred = self.net(batch["x"])
        self.dtypes.append(pred.dtype)
        loss = F.mse_loss(pred, batch["y"])
        if step == self.nan_at:
            loss = loss * float("nan")
        return {"net": loss}, {"pred_mean": pred.mean().item()}


def same_history(a: dict[str, list], b: dict[str, list]) -> bool:
    """Exact equality, with NaN (a value absent at a step) equal to NaN."""

    def key(v: float) -> object:
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return a.keys() == b.keys() and all(list(map(key, a[k])) == list(map(key, b[k])) for k in a)


def params_of(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_lr_schedule_matches_hand_computed_values() -> None:
    cfg = TrainConfig(steps=10, warmup=2, lr=1.0, min_lr_ratio=0.1)
    # warm-up (s+1)/W, then 0.1 + 0.9 * (1 + cos(pi * (s - 2) / 8)) / 2
    expected = {0: 0.5, 1: 1.0, 2: 1.0, 4: 0.8681980515, 6: 0.55, 8: 0.2318019485, 10: 0.1}
    for step, value in expected.items():
        assert lr_at(step, cfg) == pytest.approx(value, abs=1e-9), step
    assert lr_at(6, cfg, base_lr=4.0) == pytest.approx(2.2)
    assert lr_at(50, cfg) == pytest.approx(0.1)  # clamped after the last step
    constant = replace(cfg, warmup=0, min_lr_ratio=1.0)
    assert all(lr_at(s, constant) == 1.0 for s in range(12))


def test_loop_applies_the_schedule_to_every_param_group() -> None:
    result = train(Regression(), CFG, device="cpu", progress=False)
    assert result.history["lr/net"] == pytest.approx([lr_at(s, CFG) for s in range(CFG.steps)])
    assert result.history["step"] == list(range(CFG.steps)) and result.step == CFG.steps


def test_cpu_training_is_fp32() -> None:
    trainable = Regression(replace(CFG, steps=2))
    train(trainable, replace(CFG, steps=2), device="cpu", progress=False)
    assert set(trainable.dtypes) == {torch.float32}


def sgd_trainable(cfg: TrainConfig) -> SimpleTrainable:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    trainable = SimpleTrainable(
        model=model,
        batch_fn=lambda step, rank, ws: regression_batch(5, step, rank, ws),
        loss_fn=lambda m, b: 100.0 * F.mse_loss(m(b["x"]), b["y"]),  # large gradients
        cfg=cfg,
    )
    trainable.optimizers = lambda: {"model": torch.optim.SGD(model.parameters(), lr=cfg.lr)}
    return trainable


@pytest.mark.parametrize("clip", [1e-3, 0.0])
def test_gradient_clipping_bounds_the_update(clip: float) -> None:
    cfg = TrainConfig(steps=1, lr=1.0, warmup=0, min_lr_ratio=1.0, grad_clip=clip)
    trainable = sgd_trainable(cfg)
    before = torch.cat([p.detach().flatten() for p in trainable.model.parameters()])
    result = train(trainable, cfg, device="cpu", progress=False)
    after = torch.cat([p.detach().flatten() for p in trainable.model.parameters()])
    step_norm = (after - before).norm().item()  # SGD with lr 1: the (clipped) gradient's norm
    grad_norm = result.history["grad_norm/model"][0]  # logged before clipping
    assert grad_norm > 1.0
    if clip:
        assert step_norm == pytest.approx(clip, rel=1e-3)
    else:
        assert step_norm == pytest.approx(grad_norm, rel=1e-4)


def test_nan_guard_raises_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"step 7: loss 'net' is not finite") as info:
        train(Regression(nan_at=7), CFG, run_dir=tmp_path, device="cpu", progress=False)
    assert "checkpoint.pt (step 6) is kept" in str(info.value)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 6 and len(ckpt["history"]["step"]) == 6
    clean = Regression()
    train(clean, CFG, device="cpu", progress=False, max_steps=6)
    for saved, p in zip(ckpt["modules"]["net"].values(), clean.net.parameters(), strict=True):
        assert torch.equal(saved, p.detach())
    # after the fix, resuming continues from step 6 to the end
    result = train(Regression(), CFG, run_dir=tmp_path, device="cpu", progress=False)
    assert result.resumed_from == 6 and result.step == CFG.steps


def test_nan_gradient_with_a_finite_loss_is_caught() -> None:
    trainable = Regression()
    trainable.losses = lambda batch, step: {"net": (trainable.net[0].weight * 0).sqrt().sum()}
    with pytest.raises(NonFiniteLossError, match="step 0: gradient norm of 'net'.*no checkpoint"):
        train(trainable, CFG, device="cpu", progress=False)


class Crash(Exception):
    pass


@pytest.mark.parametrize("how", ["max_steps", "crash"])
def test_resume_reproduces_an_uninterrupted_run_bit_for_bit(tmp_path: Path, how: str) -> None:
    full = Regression()
    expected = train(full, CFG, device="cpu", progress=False)
    first = Regression()
    if how == "max_steps":  # stopped on purpose at step 4 (a checkpoint is written there)
        train(first, CFG, run_dir=tmp_path, device="cpu", progress=False, max_steps=4)
    else:  # crashed during step 5: the last checkpoint is the interval one at step 3
        losses = first.losses
        first.losses = lambda b, s: (_ for _ in ()).throw(Crash()) if s == 5 else losses(b, s)
        with pytest.raises(Crash):
            train(first, CFG, run_dir=tmp_path, device="cpu", progress=False)
    second = Regression(init_seed=99)  # different init: everything must come from the checkpoint
    resumed = train(second, CFG, run_dir=tmp_path, device="cpu", progress=False)
    assert resumed.resumed_from == (4 if how == "max_steps" else 3)
    assert same_history(resumed.history, expected.history)  # every loss, lr, grad norm and log
    for a, b in zip(full.net.parameters(), second.net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_runs_are_reproducible_by_seed() -> None:
    a, b, c = Regression(), Regression(), Regression()
    ha = train(a, CFG, device="cpu", progress=False, seed=1).history
    hb = train(b, CFG, device="cpu", progress=False, seed=1).history
    hc = train(c, CFG, device="cpu", progress=False, seed=2).history  # other dropout masks
    assert ha == hb
    assert ha["loss/net"] != hc["loss/net"]


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = replace(CFG, ckpt_every=2)
    train(Regression(), cfg, run_dir=tmp_path, device="cpu", progress=False, max_steps=2)
    good = (tmp_path / "checkpoint.pt").read_bytes()

    def crash_before_rename(src, dst):
        raise OSError("simulated crash during the checkpoint write")

    monkeypatch.setattr("nuwa_lab.train.files.os.replace", crash_before_rename)
    with pytest.raises(OSError, match="simulated crash"):
        train(Regression(), cfg, run_dir=tmp_path, device="cpu", progress=False)
    # no partial temp file; the checkpoint and its hash as they were
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "checkpoint.pt.sha256"]
    assert (tmp_path / "checkpoint.pt").read_bytes() == good
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint_names_the_file_and_the_fix(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "checkpoint.pt"
    train(Regression(), CFG, ckpt_path=path, device="cpu", progress=False, max_steps=3)
    data = path.read_bytes()
    path.write_bytes(b"not a checkpoint" if damage == "garbage" else data[: len(data) // 2])
    fix = rf"{re.escape(str(path))} does not match its hash.*delete .*checkpoint.pt.*resume=False"
    with pytest.raises(CheckpointError, match=fix):
        train(Regression(), CFG, ckpt_path=path, device="cpu", progress=False)
    result = train(Regression(), CFG, ckpt_path=path, resume=False, device="cpu", progress=False)
    assert result.resumed_from == 0 and load_checkpoint(path)["step"] == CFG.steps


def test_missing_checkpoint_starts_fresh_and_a_finished_run_does_nothing(tmp_path: Path) -> None:
    first = train(Regression(), CFG, run_dir=tmp_path / "new", device="cpu", progress=False)
    assert first.resumed_from == 0 and first.steps_run == CFG.steps
    assert (tmp_path / "new" / "checkpoint.pt").exists()
    again = train(Regression(), CFG, run_dir=tmp_path / "new", device="cpu", progress=False)
    assert again.steps_run == 0 and again.history == first.history


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path: Path) -> None:
    train(Regression(), CFG, run_dir=tmp_path, device="cpu", progress=False, max_steps=3)
    other = Regression()
    other.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 1))
    fix = "(?s)does not fit this model.*size mismatch.*resume=False"
    with pytest.raises(CheckpointError, match=fix):
        train(other, CFG, run_dir=tmp_path, device="cpu", progress=False)


class ToyGAN:
    """Generator G: noise -> 2-D points; discriminator D: point -> score. Two optimizers, hinge
    loss, VQ-GAN's adaptive weight at G's last layer, D switched on at `disc_start`."""

    def __init__(self, *, disc_start: int = 3, sgd: bool = False, cfg: TrainConfig = CFG):
        torch.manual_seed(0)
        self.g, self.d = nn.Linear(3, 2), nn.Linear(2, 1)
        self.disc_start, self.sgd, self.cfg, self.lam = disc_start, sgd, cfg, []

    def modules(self):
        return {"gen": self.g, "disc": self.d}

    def optimizers(self):
        if self.sgd:
            return {n: torch.optim.SGD(m.parameters(), lr=1.0) for n, m in self.modules().items()}
        return {"gen": make_adamw(self.g, self.cfg), "disc": make_adamw(self.d, self.cfg)}

    def batch(self, step, rank, world_size):
        g = step_generator(7, step)
        z, real = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g) + 2.0
        shard = rank_slice(8, rank, world_size)
        return z[shard], real[shard]

    def terms(self, batch):
        z, real = batch
        fake = self.g(z)
        rec = (fake - real).abs().mean()
        gan = -self.d(fake).mean()
        disc = F.relu(1 - self.d(real)).mean() + F.relu(1 + self.d(fake.detach())).mean()
        return rec, gan, disc

    def losses(self, batch, step):
        rec, gan, disc = self.terms(batch)
        if step < self.disc_start:
            return {"gen": rec}, {"lambda": 0.0}
        last = self.g.weight  # the decoder's last layer
        g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
        g_gan = torch.autograd.grad(gan, last, retain_graph=True)[0]
        lam = (g_rec.norm() / (g_gan.norm() + 1e-4)).detach()
        return {"gen": rec + lam * gan, "disc": disc}, {"lambda": lam.item()}


def test_two_optimizer_gan_steps_each_on_its_own_loss_only() -> None:
    cfg = TrainConfig(steps=2, lr=1.0, warmup=0, min_lr_ratio=1.0, grad_clip=0.0)
    gan = ToyGAN(disc_start=0, sgd=True, cfg=cfg)
    batch = gan.batch(0, 0, 1)
    rec, gan_term, disc = gan.terms(batch)
    d_params, g_params = list(gan.d.parameters()), list(gan.g.parameters())
    lam = gan.losses(batch, 0)[1]["lambda"]
    expected_d = torch.autograd.grad(disc, d_params, retain_graph=True)  # not d(gen + disc)/dD
    expected_g = torch.autograd.grad(rec + lam * gan_term, g_params)
    before = [p.detach().clone() for p in d_params + g_params]
    train(gan, cfg, device="cpu", progress=False, max_steps=1)
    for b, p, grad in zip(before, d_params + g_params, expected_d + expected_g, strict=True):
        torch.testing.assert_close(b - p.detach(), grad)  # SGD lr 1: the step is the gradient


def test_discriminator_switches_on_at_its_start_step(tmp_path: Path) -> None:
    gan = ToyGAN(disc_start=3)
    d_init = params_of(gan.d)
    train(gan, CFG, device="cpu", progress=False, max_steps=3)
    assert all(torch.equal(a, b) for a, b in zip(d_init, gan.d.parameters(), strict=True))
    result = train(gan, CFG, run_dir=tmp_path, device="cpu", progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(d_init, gan.d.parameters(), strict=True))
    disc = result.history["loss/disc"]
    assert all(math.isnan(v) for v in disc[:3]) and all(math.isfinite(v) for v in disc[3:])
    assert all(v > 0 for v in result.history["lambda"][3:])


def test_two_optimizer_resume_is_exact(tmp_path: Path) -> None:
    full = ToyGAN()
    expected = train(full, CFG, device="cpu", progress=False)
    train(ToyGAN(), CFG, run_dir=tmp_path, device="cpu", progress=False, max_steps=5)
    resumed = ToyGAN()
    result = train(resumed, CFG, run_dir=tmp_path, device="cpu", progress=False)
    assert same_history(result.history, expected.history)
    for a, b in zip(full.g.parameters(), resumed.g.parameters(), strict=True):
        assert torch.equal(a, b)


def test_contract_violations_are_named() -> None:
    bad = Regression()
    bad.losses = lambda batch, step: {"nett": bad.net(batch["x"]).mean()}
    with pytest.raises(KeyError, match=r"\['nett'\].*\['net'\]"):
        train(bad, CFG, device="cpu", progress=False)
    with pytest.raises(TypeError, match="is an nn.Module"):
        train(nn.Linear(2, 2), CFG, device="cpu", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not split into 3 equal shards"):
        rank_slice(8, 0, 3)


def test_resuming_with_a_changed_config_warns(tmp_path: Path) -> None:
    train(Regression(), CFG, run_dir=tmp_path, device="cpu", progress=False, max_steps=3)
    with pytest.warns(UserWarning, match="changed lr, seed: the run will not equal"):
        train(
            Regression(),
            replace(CFG, lr=0.5),
            run_dir=tmp_path,
            device="cpu",
            progress=False,
            seed=4,
        )
