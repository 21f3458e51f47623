r"""The attention ablation of NÜWA (§4.4): one small model per pattern, trained alike (notebook 04).

The paper compares full, axial and nearby attention in the encoder and the decoder on
sketch-to-video (S2V): the condition is a sketch video, so the pattern acts in all three places,

| where | attends | pattern |
|---|---|---|
| encoder self-attention | sketch tokens (T, h, w) -> themselves | `ATTENTION` |
| decoder self-attention | video tokens (T, h, w), causal | `ATTENTION` |
| decoder cross-attention | video tokens -> the encoded sketch (rescaled) | `ATTENTION` |

Every arm trains from the same initial seed with the same data, steps, batch and learning rate
(`ablation_config`); only the pattern differs. Training is `nuwa_lab.recipes.finetune`'s S2V loop
started from an untrained model; `nuwa_lab.lab.bench.costs.pattern_costs` measures the price of each
pattern per training step (time and tensor memory) on random codes, side by side in one process.

| symbol | code |
|---|---|
| pattern in encoder, decoder, cross | `cfg.model.attention`, `cfg.model.cross_attention` |
| budget | `cfg.tasks.finetune_steps` (or `steps=`), `finetune_batch_size`, lr `cfg.train.lr` |
| keys per query (causal, mean) | `pattern_costs(...)[i]["keys_per_query"]` |
"""

from __future__ import annotations

import dataclasses

import torch

from nuwa_lab.config import Config
from nuwa_lab.model.nuwa import PATTERNS, Nuwa
from nuwa_lab.recipes.finetune import finetune
from nuwa_lab.tasks import TaskKit, evaluate_task
from nuwa_lab.tasks.metrics import text_to_visual_metrics

TASK = "s2v"  # the paper's ablation task


def ablation_config(
    cfg: Config,
    attention: str,
    *,
    steps: int | None = None,
    batch: int | None = None,
    downsample: int | None = None,
) -> Config:
    """`cfg` with `attention` everywhere and a from-scratch budget for the S2V arm.

    Steps and batch are the fine-tuning budget (`cfg.tasks`, or `steps` / `batch`); the learning
    rate and warm-up are pretraining's (`cfg.train`), since the model starts untrained.
    `downsample` sets the tokenizers' factor f, hence the token grid (T, side/f, side/f): the
    ablation's longer sequence (f = 2 on the tiny world: 4 x 16 x 16 = 1,024 tokens) uses it.
    None or 0 keeps the preset's value for each of the three.
    """
    if attention not in PATTERNS:
        raise ValueError(f"unknown attention {attention!r}; valid: {', '.join(PATTERNS)}")
    for name, value in (("steps", steps), ("batch", batch), ("downsample", downsample)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be 0 (the preset's) or positive, got {value}")
    model = dataclasses.replace(cfg.model, attention=attention, cross_attention=attention)
    n = steps or cfg.tasks.finetune_steps
    tokenizer = cfg.tokenizer
    if downsample:
        if cfg.world.image_size % downsample or downsample & (downsample - 1):
            raise ValueError(
                f"downsample must be a power of two that divides world.image_size "
                f"({cfg.world.image_size}), got {downsample}"
            )
        tokenizer = dataclasses.replace(tokenizer, downsample=downsample)
    tasks = dataclasses.replace(
        cfg.tasks,
        finetune_steps=n,
        finetune_batch_size=batch or cfg.tasks.finetune_batch_size,
        finetune_lr=cfg.train.lr,
        finetune_warmup=min(cfg.train.warmup, max(1, n // 10)),
        # the S2V row of the fine-tuning budgets is for a pretrained start, not this one
        finetune_budgets=tuple(row for row in cfg.tasks.finetune_budgets if row[0] != TASK),
    )
    return dataclasses.replace(cfg, model=model, tasks=tasks, tokenizer=tokenizer)


def equal_time_steps(
    sec_per_step: dict[str, float], attention: str, steps: int, reference: str = "full"
) -> int:
    """Steps of `attention` that take as long as `steps` steps of `reference` (equal wall-clock).

    steps_arm = round(steps · t_reference / t_arm), with t the seconds per training step of each
    pattern measured side by side in one process (`pattern_costs`), so the budget is the
    reference's time on this machine, whatever its speed. At least one step.
    """
    for name in (attention, reference):
        if not sec_per_step.get(name, 0) > 0:
            raise ValueError(f"no positive seconds per step for {name!r} in {sec_per_step}")
    return max(1, round(steps * sec_per_step[reference] / sec_per_step[attention]))


def train_from_scratch(cfg: Config, *, workdir=None, progress: bool = True):
    """Train an untrained model (initialised from `cfg.seed`) on S2V: (model, metrics).

    The metrics are those of `nuwa_lab.recipes.finetune.finetune`: `val_loss_pretrained` is the
    validation loss at initialisation here, `val_loss_finetuned` after training.
    """
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        fresh = Nuwa.from_config(cfg)
    return finetune(TASK, cfg, pretrained=fresh, workdir=workdir, progress=progress)


def evaluate_arm(
    model: Nuwa, kit: TaskKit, *, n: int | None = None, split: str = "test", **sampling
):
    """Sample S2V on `n` items of `split` and measure: (TaskEvaluation, metrics).

    Metrics: the segmenter's pixel accuracy of the samples against the input sketch (the paper's
    Detected PA), the video probe's attribute accuracy against the items' true objects (colour is
    not in a sketch, so its accuracy is chance level and `acc_all` is bounded by it; `acc_shape`,
    `acc_position`, `acc_direction` are what a sketch determines), and lab-FVD against the real
    videos of the same items.
    """
    ev = evaluate_task(TASK, model, kit, split=split, n=n, **sampling)
    quality = text_to_visual_metrics(
        kit.video_probe, ev.output.pixels, list(ev.inputs["objects"]), real=ev.inputs["pixels"]
    )
    return ev, {**ev.metrics, **quality}
