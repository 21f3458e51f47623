"""Worker for test_distributed.py: `torchrun --nproc_per_node 2 distributed_worker.py OUT`.

Every rank trains the same toy two-optimizer model (with an EMA buffer) on its shard of each global
batch and saves its final parameters, buffers and history to OUT/rank<r>.pt. `run(out, ...)` also
runs in one process, for the reference. Then, for resuming on another number of processes, the
ranks train OUT/r21 for `PART` steps (one process finishes it later) and finish OUT/r12, which one
process trained for `PART` steps before the launch; OUT/rank<r>.pt holds that run's end too.
Last, each rank resumes from its own folder OUT/alone<r>, of which only alone0 holds a
checkpoint: the error every rank raises is recorded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import nuwa_lab.train.loop as train_module
from nuwa_lab.__main__ import leave
from nuwa_lab.config import TrainConfig
from nuwa_lab.train.loop import make_adamw, rank_slice, step_generator, train

CFG = TrainConfig(steps=6, batch_size=8, lr=5e-2, warmup=2, log_every=1, ckpt_every=3)
PART = 2  # steps before a run changes its number of processes (the discriminator starts at 2)


class EmaLinear(nn.Linear):
    """A linear layer that keeps an EMA of its input mean (a buffer, like an EMA codebook)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("input_ema", torch.zeros(self.in_features))

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.input_ema.mul_(0.9).add_(0.1 * x.mean(0))
        return super().forward(x)


class ToyGAN:
    def __init__(self):
        torch.manual_seed(0)
        self.g = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), EmaLinear(8, 2))
        self.d = nn.Linear(2, 1)

    def modules(self):
        return {"gen": self.g, "disc": self.d}

    def optimizers(self):
        return {"gen": make_adamw(self.g, CFG), "disc": make_adamw(self.d, CFG)}

    def batch(self, step, rank, world_size):
        g = step_generator(11, step)
        z = torch.randn(CFG.batch_size, 3, generator=g)
        real = torch.randn(CFG.batch_size, 2, generator=g)
        shard = rank_slice(CFG.batch_size, rank, world_size)
        return {"z": z[shard], "real": real[shard] + 1.0}

    def losses(self, batch, step):
        fake = self.g(batch["z"])
        rec = F.mse_loss(fake, batch["real"])
        out = {"gen": rec - 0.1 * self.d(fake).mean()}
        if step >= 2:  # the discriminator starts at step 2
            d_real, d_fake = self.d(batch["real"]), self.d(fake.detach())
            out["disc"] = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        return out, {"fake_mean": fake.mean().item()}


def run(run_dir: Path, max_steps: int | None = None) -> dict:
    """Train the toy GAN (resuming from run_dir's checkpoint, stopping after `max_steps`): its
    final state, history and the checkpoints this process wrote."""
    saves = []
    original = train_module.save_checkpoint

    def counting_save(*args, **kwargs):
        saves.append(kwargs["step"])
        return original(*args, **kwargs)

    train_module.save_checkpoint = counting_save
    try:
        gan = ToyGAN()
        result = train(gan, CFG, run_dir=run_dir, device="cpu", progress=False, max_steps=max_steps)
    finally:
        train_module.save_checkpoint = original
    state = {n: m.state_dict() for n, m in gan.modules().items()}
    return {"state": state, "history": result.history, "saves": saves}


if __name__ == "__main__":
    import torch.distributed as dist

    out = Path(sys.argv[1])
    record = run(out / "run")
    record["world_size"] = dist.get_world_size()
    run(out / "r21", max_steps=PART)  # one process finishes it
    record["r12"] = run(out / "r12")  # one process started it
    try:  # as on two machines that do not share a disk: only rank 0 sees a checkpoint
        run(out / f"alone{dist.get_rank()}")
    except RuntimeError as e:
        record["unshared"] = str(e)
    torch.save(record, out / f"rank{dist.get_rank()}.pt")
    leave()  # as `python -m nuwa_lab` does once its command has finished
