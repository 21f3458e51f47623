"""Worker for test_distributed_recipes.py: `torchrun --nproc_per_node 2 recipes_worker.py OUT WHAT`.

WHAT = "recipes": the `recipe` command of every entry of `COMMANDS`, artifacts under
OUT/artifacts (the ablation arm under OUT/ablation), then the steps a measured (time) budget
gives; each rank saves OUT/rank<r>.pt with those steps and the files it renamed into place under
OUT (every write of the lab ends in one `os.replace`).

WHAT = "resume": the VQ-GAN of `resume_config()` trained for `PART` steps in OUT/r21 (one process
finishes it), and finished in OUT/r12 (one process started it).

`commands(out)` and `train_vqgan(...)` also run in one process, for the reference.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from nuwa_lab.__main__ import leave, main
from nuwa_lab.config import make_config
from nuwa_lab.recipes.mixture_budget import budget_steps
from nuwa_lab.recipes.tokenizers import train_tokenizer

SMOKE = ["--preset", "smoke", "--device", "cpu", "--quiet"]
PART = 2  # steps before a run changes its number of processes


def commands(out: Path) -> list[list[str]]:
    """Every training recipe once: the pipeline of two tasks (VQ-GAN, VQ-GAN-Seg, the three
    probes, pretraining, the T2I, S2I and S2V fine-tunings, a sample of each task), VQ-VAE, the
    I2I fine-tuning (a loss over a hidden region), notebook 04's arm and a mixture run."""
    return [
        ["recipe", "pipeline", "--tasks", "t2i", "s2v", *SMOKE],
        ["recipe", "vqvae", *SMOKE],
        ["recipe", "nuwa_finetuned_i2i", *SMOKE],
        ["recipe", "ablation", "--attention", "nearby", "--out", str(out / "ablation"), *SMOKE],
        ["recipe", "mixture", "--mix", "t2v", "--budget", "t2v_examples:t2v+t2i+v2v", *SMOKE],
    ]


def run_commands(out: Path) -> None:
    os.environ["NUWA_LAB_ARTIFACTS"] = str(out / "artifacts")
    for cmd in commands(out):
        assert main(cmd) == 0, cmd


def resume_config():
    """Smoke's VQ-GAN (4 steps, the discriminator from step 2, a checkpoint every step) with
    dead codes restarted after one idle step: every step draws restarts from the global batch."""
    return make_config("smoke", device="cpu", **{"tokenizer.dead_code_steps": 1})


def train_vqgan(workdir: Path, max_steps: int | None = None) -> None:
    train_tokenizer("vqgan", resume_config(), workdir=workdir, progress=False, max_steps=max_steps)


if __name__ == "__main__":
    import torch.distributed as dist

    out, what = Path(sys.argv[1]), sys.argv[2]
    renamed: list[str] = []
    replace = os.replace

    def recording_replace(src, dst, *args, **kwargs):
        if str(dst).startswith(str(out)):
            renamed.append(str(Path(dst).relative_to(out)))
        return replace(src, dst, *args, **kwargs)

    os.replace = recording_replace
    record: dict = {}
    if what == "recipes":
        run_commands(out)
        cfg = make_config("smoke", device="cpu")
        record["time_budget_steps"] = budget_steps(cfg, "t2v", "time:t2v+t2i", 4)
    else:
        train_vqgan(out / "r21", max_steps=PART)
        train_vqgan(out / "r12")
    record |= {"rank": dist.get_rank(), "world_size": dist.get_world_size(), "renamed": renamed}
    torch.save(record, out / f"rank{dist.get_rank()}.pt")
    leave()  # as `python -m nuwa_lab` does once its command has finished
