r"""The whole pipeline, stage by stage, and a short run of it: a preset checked in minutes.

    cfg = short_config(make_config("base"), max_steps=2, batch=2)   # 2 steps a stage, small pools
    summary = run_pipeline(cfg, tasks=("t2i",))   # tokenizer, probe, pretraining, T2I, a sample

A preset's sizes (`base`: 64 x 64 pixels, 8 frames, a 70M-parameter model) show their config and
shape errors only when every stage has run once on them; at the preset's own step counts that
takes hours. `short_config` keeps every size and caps what only costs time:

| what | capped to |
|---|---|
| every stage's optimizer steps (tokenizers, probes, pretraining, fine-tuning budgets) | S |
| warm-ups; `tokenizer.disc_start` (the GAN and its adaptive weight run) | within S; S - 1 |
| batch sizes (tokenizer, probe, train, fine-tuning, sampling), if asked | `batch` |
| `train.batch_size` | a multiple of `batch` holding every task of the mixture |
| pretraining and fine-tuning pools, every evaluation set | `items` |

(S = `max_steps`; `short_config`'s code names each field.)
These are config fields, so every artifact of a short run has its own hash (the cache's key): a
model trained for 2 steps is never loaded in place of the real one.

`run_pipeline` trains (or loads) the artifacts in the order they depend on each other
(`pipeline_artifacts`), then samples each task on `sample.num_eval` test items with the model it
runs with (`task_model`) and measures it (`evaluate_task`). Under torchrun every rank trains
together (the cache has rank 0 write each artifact) and rank 0 alone samples.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from nuwa_lab.config import Config, check_config
from nuwa_lab.device import resolve_device
from nuwa_lab.recipes.cache import artifact_dir, get_or_train
from nuwa_lab.recipes.finetune import ZERO_SHOT_BASE, artifact_kind, start_chain, task_model
from nuwa_lab.recipes.kit import load_kit
from nuwa_lab.tasks import evaluate_task
from nuwa_lab.tasks.spec import TASK_SPECS, get_task
from nuwa_lab.train.distributed import group

ITEMS = 4  # pool and evaluation sizes of a short run


def short_config(
    cfg: Config, max_steps: int, *, batch: int | None = None, items: int = ITEMS
) -> Config:
    """`cfg` with every stage's steps capped at `max_steps`, pools and evaluation sets at `items`
    and, when given, every batch size at `batch` (see the module's table). Sizes are kept."""
    if max_steps < 1 or items < 1 or (batch is not None and batch < 1):
        raise ValueError(
            f"max_steps, items and batch must be positive, got {max_steps}, {items}, {batch}"
        )
    n = max_steps

    def cap(value: int) -> int:
        return value if batch is None else min(value, batch)

    tok, probe, train, tasks = cfg.tokenizer, cfg.probe, cfg.train, cfg.tasks
    mix_batch = cap(train.batch_size)
    if mix_batch < len(train.task_mix):  # every task of the mixture in every step
        mix_batch *= math.ceil(len(train.task_mix) / mix_batch)
    budgets = tuple((t, min(s, n), cap(b), lr) for t, s, b, lr in tasks.finetune_budgets)
    replace = dataclasses.replace
    short = replace(
        cfg,
        tokenizer=replace(
            tok,
            steps=min(tok.steps, n),
            seg_steps=min(tok.seg_steps, n),
            warmup=min(tok.warmup, n),
            disc_start=min(tok.disc_start, n - 1),
            eval_samples=min(tok.eval_samples, items),
            batch_size=cap(tok.batch_size),
        ),
        probe=replace(
            probe,
            steps=min(probe.steps, n),
            video_steps=min(probe.video_steps, n),
            seg_steps=min(probe.seg_steps, n),
            eval_size=min(probe.eval_size, items),
            batch_size=cap(probe.batch_size),
        ),
        train=replace(
            train,
            steps=min(train.steps, n),
            warmup=min(train.warmup, n),
            ckpt_every=min(train.ckpt_every, n),
            log_every=min(train.log_every, n),
            batch_size=mix_batch,
        ),
        tasks=replace(
            tasks,
            finetune_steps=min(tasks.finetune_steps, n),
            finetune_warmup=min(tasks.finetune_warmup, n),
            finetune_batch_size=cap(tasks.finetune_batch_size),
            finetune_pool=min(tasks.finetune_pool, items),
            finetune_budgets=budgets,
        ),
        pretrain=replace(
            cfg.pretrain,
            pool=min(cfg.pretrain.pool, items),
            val_size=min(cfg.pretrain.val_size, items),
        ),
        sample=replace(
            cfg.sample,
            num_eval=min(cfg.sample.num_eval, items),
            batch_size=cap(cfg.sample.batch_size),
        ),
    )
    return check_config(short)


def task_artifacts(task: str) -> list[str]:
    """The fine-tuned models task `task` runs with by default (`task_model`), each after the
    model its fine-tuning starts from: T2V -> [nuwa_finetuned_t2i, nuwa_finetuned_t2v]."""
    spec = get_task(task)
    base = spec.name if spec.training == "finetuned" else ZERO_SHOT_BASE.get(spec.name)
    if base is None:  # I2I: the pretrained model itself
        return []
    return [artifact_kind(t) for t in reversed(start_chain(base))]


def pipeline_artifacts(cfg: Config, tasks: Sequence[str] = tuple(TASK_SPECS)) -> list[str]:
    """Every artifact the tasks need, in training order: tokenizers, probes (the ones `load_kit`
    loads), the pretrained model, the fine-tuned models."""
    specs = [get_task(t) for t in tasks]
    sketch = any(s.condition == "sketch" for s in specs)
    kinds = [cfg.tokenizer.kind, *(["vqgan_seg"] if sketch else [])]
    kinds += ["probe"] if any(not s.video for s in specs) else []
    kinds += ["video_probe"] if any(s.video for s in specs) else []
    kinds += ["segmenter"] if sketch else []
    kinds.append("nuwa")
    for spec in specs:
        kinds += [k for k in task_artifacts(spec.name) if k not in kinds]
    return kinds


def run_pipeline(
    cfg: Config,
    tasks: Sequence[str] = tuple(TASK_SPECS),
    *,
    sample: bool = True,
    progress: bool = True,
    retrain: bool = False,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Train (or load) every artifact `tasks` need, then sample and measure each task once.

    Returns {"artifacts": {kind: {"folder", "seconds"}}, "tasks": {task: metrics}} (tasks only
    on rank 0 under torchrun; `echo` is called there only). The artifacts live under the cache's
    root (`$NUWA_LAB_ARTIFACTS`, else data/artifacts)."""
    main = group(resolve_device(cfg.device)).is_main
    say = echo if main else (lambda _: None)
    out: dict[str, Any] = {"artifacts": {}, "tasks": {}}
    for kind in pipeline_artifacts(cfg, tasks):
        start = time.perf_counter()
        get_or_train(kind, cfg, progress=progress and main, retrain=retrain)
        seconds = time.perf_counter() - start
        folder = artifact_dir(kind, cfg)
        out["artifacts"][kind] = {"folder": str(folder), "seconds": seconds}
        say(f"{kind}: {folder} ({seconds:.0f} s)")
    if not sample:
        return out
    for task in tasks:
        name = get_task(task).name
        # every rank loads (under torchrun a cache lookup is collective), rank 0 samples
        kit, model = load_kit(cfg, name, progress=False), task_model(name, cfg, progress=False)
        if not main:
            continue
        start = time.perf_counter()
        ev = evaluate_task(name, model, kit, split="test")
        out["tasks"][name] = ev.metrics
        seconds = time.perf_counter() - start
        shown = [
            f"{k} {v:.3g}"
            for k, v in ev.metrics.items()
            if isinstance(v, float) and not k.endswith(("_low", "_high", "seconds"))
        ]
        n = ev.metrics["n_items"]
        say(f"{name}: {n} test items in {seconds:.0f} s; {', '.join(shown[:5])}")
    return out
