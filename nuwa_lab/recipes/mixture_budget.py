r"""Fair budgets for the multi-task ablation: equal steps, equal T2V examples, or equal time.

"Does adding T2I (and V2V) to pretraining help T2V?" At equal steps a mixture is handicapped: a
batch of B items split between T2V and T2I holds only B/2 T2V items. Two fairer budgets give a
T2V-only run exactly what a mixture `match` got:

- equal T2V examples: as many T2V items as `match` sees in `steps` steps,
  $\text{steps} \cdot n_{t2v}(\text{match}) / n_{t2v}(\text{mix})$ with $n_{t2v}$ the T2V items per
  batch (`task_counts`);
- equal wall-clock: the time `match` takes for `steps` steps,
  $\text{steps} \cdot t(\text{match}) / t(\text{mix})$ with $t$ the seconds per pretraining step of
  each mixture, timed in turns in one process (`mixture_step_seconds`; fastest step of each).

| budget | code |
|---|---|
| "steps" / "t2v_examples:<match>" / "time:<match>" | `parse_budget(text)` |
| the steps a run gets | `budget_steps(cfg, mix, budget, steps)` |
| seconds per step of each mixture, side by side | `mixture_step_seconds(cfg, mixes)` |
"""

from __future__ import annotations

import dataclasses
import time

import torch

from nuwa_lab.config import Config
from nuwa_lab.device import resolve_device
from nuwa_lab.model.nuwa import Nuwa
from nuwa_lab.recipes.pretrain import PretrainTrainable, TokenData, parse_task_mix, task_counts
from nuwa_lab.train.distributed import agree, group
from nuwa_lab.train.loop import make_adamw

BUDGETS = ("steps", "t2v_examples", "time")


def parse_budget(text: str) -> tuple[str, str | None]:
    """ "steps" -> ("steps", None); "time:t2v+t2i" -> ("time", "t2v+t2i"); errors name the form."""
    kind, _, match = text.partition(":")
    if kind not in BUDGETS or (kind == "steps") != (match == ""):
        raise ValueError(
            f"budget {text!r}: write 'steps', 't2v_examples:<mixture>' or 'time:<mixture>', "
            "e.g. 'time:t2v+t2i'"
        )
    if match:
        parse_task_mix(match)  # a bad mixture is named by its own error
    return kind, match or None


def t2v_items(mix, batch: int) -> int:
    """T2V items per batch of `batch` under mixture `mix`."""
    return task_counts(mix, batch).get("t2v", 0)


def random_tokens(cfg: Config, n: int, text_vocab: int, g: torch.Generator) -> TokenData:
    """`n` random images, videos and captions of `cfg`'s shapes: enough to time a step."""
    side = cfg.world.image_size // cfg.tokenizer.downsample
    k, length = cfg.tokenizer.codebook_size, cfg.text.max_length
    return TokenData(
        images=torch.randint(0, k, (n, side, side), generator=g),
        image_text=torch.randint(1, text_vocab, (n, length), generator=g),
        videos=torch.randint(0, k, (n, cfg.world.frames, side, side), generator=g),
        video_text=torch.randint(1, text_vocab, (n, length), generator=g),
    )


def _with_mix(cfg: Config, mix) -> Config:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, task_mix=mix))


def mixture_step_seconds(
    cfg: Config, mixes: list[str], *, text_vocab: int = 32, repeats: int = 5
) -> dict[str, float]:
    """Seconds per pretraining step (forward, backward, AdamW) of each mixture, on random tokens.

    The mixtures take turns for `repeats` rounds after a warm-up and each keeps its fastest step
    (other programs only ever add time; see `nuwa_lab.lab.bench.costs.pattern_costs`)."""
    g = torch.Generator().manual_seed(0)
    data = random_tokens(cfg, max(64, cfg.train.batch_size), text_vocab, g)
    steps = {}
    for text in mixes:
        arm = _with_mix(cfg, parse_task_mix(text))
        torch.manual_seed(0)
        model = Nuwa.from_config(arm, text_vocab=text_vocab)
        trainable = PretrainTrainable(model, data, arm)
        opt = make_adamw(model, arm.train)

        def step(trainable=trainable, opt=opt):
            batch = trainable.batch(0, 0, 1)
            losses, _ = trainable.losses(batch, 0)
            losses["model"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()  # warm-up
        steps[text] = step
    best = {text: float("inf") for text in mixes}
    for _ in range(repeats):
        for text, step in steps.items():
            start = time.perf_counter()
            step()
            best[text] = min(best[text], time.perf_counter() - start)
    return best


def budget_steps(
    cfg: Config, mix: str, budget: str, steps: int, *, seconds: dict[str, float] | None = None
) -> int:
    """The pretraining steps of mixture `mix` under `budget` (see the module), at least one.

    `seconds`: seconds per step of `mix` and of the matched mixture (measured when not given;
    under torchrun by rank 0 alone, so every rank trains the same number of steps)."""
    kind, match = parse_budget(budget)
    if kind == "steps":
        return steps
    batch = cfg.train.batch_size
    if kind == "t2v_examples":
        mine = t2v_items(parse_task_mix(mix), batch)
        if mine == 0:
            raise ValueError(f"mixture {mix!r} has no T2V items: an equal T2V budget means nothing")
        return max(1, round(steps * t2v_items(parse_task_mix(match), batch) / mine))
    if seconds is None:  # under torchrun rank 0 times the steps and every rank takes its numbers
        device = resolve_device(cfg.device)
        mine = mixture_step_seconds(cfg, [mix, match]) if group(device).is_main else None
        seconds = agree(mine, device)
    return max(1, round(steps * seconds[match] / seconds[mix]))
