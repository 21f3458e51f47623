"""The config sections of generation: sampling, the eight tasks' fine-tuning, the pretraining data.

Each field has a default (the tiny preset) and a rule in its section's `RULES` table; `Config`
(nuwa_lab.config.sections) composes them with the model's and the data's sections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nuwa_lab.config.choices import TASKS
from nuwa_lab.config.rules import NON_NEGATIVE, POSITIVE, Rule, between, task_rows


@dataclass(frozen=True)
class SampleConfig:
    """Sampling: raster order, temperature, top-k, top-p."""

    # tau below the model's own 1.0: on this world the model's spread is mostly error, not
    # variety, so colder samples were measured both more often right and closer to the real ones
    # by lab-FID / FVD at tiny (docs/lab-notes.md has the numbers)
    temperature: float = 0.3
    # (task, tau): tasks sampled at their own temperature instead of `temperature`
    task_temperatures: tuple[tuple[str, float], ...] = ()
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    candidates: int = 1  # samples drawn per condition; > 1 keeps the one the probe ranks first
    # (task, n): tasks that draw their own number of candidates. TI2I ranks its 4 by the probe,
    # then by how much of the source they keep (nuwa_lab.tasks.rerank): at tiny a single sample
    # missed the 2 dB preservation goal on 2 of 3 seeds (docs/lab-notes.md)
    task_candidates: tuple[tuple[str, int], ...] = (("ti2i", 4),)
    batch_size: int = 16
    num_eval: int = 64  # samples generated per evaluation

    RULES: ClassVar[dict[str, Rule]] = {
        "temperature": NON_NEGATIVE,  # 0 = greedy
        "task_temperatures": task_rows(TASKS, "(task, temperature >= 0)", lambda r: r[1] >= 0),
        "top_k": NON_NEGATIVE,  # 0 = off
        "top_p": between(0, 1, low_open=True),  # 1 = off
        "candidates": POSITIVE,
        "task_candidates": task_rows(
            TASKS, "(task, candidates >= 1)", lambda r: isinstance(r[1], int) and r[1] >= 1
        ),
        "batch_size": POSITIVE,
        "num_eval": POSITIVE,
    }

    def temperature_for(self, task: str) -> float:
        """tau of `task`: its row of `task_temperatures`, else `temperature`."""
        return float(dict(self.task_temperatures).get(task, self.temperature))

    def candidates_for(self, task: str) -> int:
        """Samples per condition of `task`: its row of `task_candidates`, else `candidates`."""
        return int(dict(self.task_candidates).get(task, self.candidates))


@dataclass(frozen=True)
class TaskConfig:
    """The eight tasks (nuwa_lab.tasks) and fine-tuning on one (nuwa_lab.recipes.finetune)."""

    # V2V: leading frames given as fixed tokens (1..frames-1). Two, because one frame shows where
    # the object is but not where it goes: from one frame each of the four directions is as likely
    given_frames: int = 2
    edit_given_frames: int = 1  # TV2V: leading frames kept; the new caption steers the rest
    finetune_steps: int = 300  # optimizer steps of one task's fine-tuning from the pretrained model
    finetune_batch_size: int = 16
    finetune_lr: float = 3e-4  # peak lr (a third of pretraining's)
    finetune_warmup: int = 30
    # (task, steps, batch, peak lr): tasks whose fine-tuning replaces the three budgets above,
    # each the smallest budget measured to reach its task's target at tiny (docs/lab-notes.md).
    # T2V and S2V start from the T2I / S2I models and V2V from the T2V model
    # (`nuwa_lab.recipes.finetune.FINETUNE_START`); V2V's misses are videos that turn at a wall in
    # the predicted frames, and training time is what teaches the turn. T2V needs 3,000 steps
    # after the 3,000-step T2I model (at 2,000 one seed of three missed its target; at 2,500
    # TV2V, which edits with the T2V model, missed on one), S2V 800 (at 400 one seed missed the
    # shape-pixel target), V2V 6,000 (at 4,000 one seed read 89.8%; at 5,000 after the 2,500-step
    # T2V model, 90.2%, one video above the goal).
    finetune_budgets: tuple[tuple[str, int, int, float], ...] = (
        ("t2i", 3000, 32, 1e-3),
        ("t2v", 3000, 16, 1e-3),
        ("v2v", 6000, 8, 1e-3),
        ("s2i", 1000, 32, 1e-3),
        ("s2v", 800, 16, 1e-3),
    )

    def finetune_budget(self, task: str) -> tuple[int, int, float]:
        """(steps, batch size, peak lr) of fine-tuning `task`."""
        for name, steps, batch, lr in self.finetune_budgets:
            if name == task:
                return int(steps), int(batch), float(lr)
        return self.finetune_steps, self.finetune_batch_size, self.finetune_lr

    finetune_pool: int = 2048  # train items tokenized once and cached; batches are drawn from it
    # V2V batches draw a training video whose object turns at a wall after the given frames this
    # many times as often as one that moves straight (18% of the videos turn; weight 2: 30% of a
    # batch): a small gain on the test split at tiny, none on held-out (docs/lab-notes.md)
    v2v_turning_weight: float = 2.0

    RULES: ClassVar[dict[str, Rule]] = {
        "given_frames": POSITIVE,  # and fewer than world.frames: see CROSS_RULES
        "edit_given_frames": POSITIVE,
        "finetune_steps": POSITIVE,
        "finetune_batch_size": POSITIVE,
        "finetune_lr": POSITIVE,
        "finetune_warmup": NON_NEGATIVE,
        "finetune_budgets": task_rows(
            TASKS,
            "(task, steps > 0, batch size > 0, peak lr > 0)",
            lambda row: min(row[1:]) > 0,
        ),
        "finetune_pool": POSITIVE,
        "v2v_turning_weight": NON_NEGATIVE,
    }


@dataclass(frozen=True)
class PretrainConfig:
    """Multi-task pretraining data (nuwa_lab.recipes.pretrain); the mix is cfg.train.task_mix."""

    # train images and videos tokenized once (cached, 22 s at tiny); batches drawn from them.
    # 24,576 rather than 8,192: T2V and TI2I gained on two seeds, T2I's held-out pairs needed
    # the longer T2I fine-tune below to recover (docs/lab-notes.md)
    pool: int = 24576
    val_size: int = 256  # validation images and videos for the per-task validation loss

    RULES: ClassVar[dict[str, Rule]] = {"pool": POSITIVE, "val_size": POSITIVE}
