"""The kit a task needs besides its model: tokenizers and probes, loaded from the artifact cache.

    kit = load_kit(cfg, "t2i")   # VQ-GAN, caption tokenizer, image probe (trained on first use)
    evaluate_task("t2i", model, kit, split="test")

`TaskKit` (the type) lives with the tasks (`nuwa_lab.tasks.evaluate`); loading it trains or loads
cached artifacts, so it lives here, with the recipes.
"""

from __future__ import annotations

from typing import Any

from nuwa_lab.config import Config
from nuwa_lab.recipes.cache import get_or_train
from nuwa_lab.tasks.evaluate import TaskKit
from nuwa_lab.tasks.spec import TASK_SPECS, get_task
from nuwa_lab.world import ShapesWorld
from nuwa_lab.world.source import text_tokenizer


def tokenizer_kind(cfg: Config) -> str:
    """The tokenizer whose codes the model predicts (`cfg.tokenizer.kind`: vqgan | vqvae)."""
    return cfg.tokenizer.kind


def load_kit(
    cfg: Config, *tasks: str, progress: bool = True, root: Any = None, probes: bool = True
) -> TaskKit:
    """The tokenizers and probes the given tasks need (all of them when no task is named).

    root: the artifact root (default `nuwa_lab.recipes.cache.default_root()`); probes=False loads
    the tokenizers only (what fine-tuning needs)."""
    specs = [get_task(t) for t in tasks] if tasks else [get_task(t) for t in TASK_SPECS]
    need_video = any(s.video for s in specs)
    need_image = any(not s.video for s in specs)
    sketch = any(s.condition == "sketch" for s in specs)

    def get(kind: str, needed: bool = True) -> Any:
        return get_or_train(kind, cfg, progress=progress, root=root) if needed else None

    return TaskKit(
        cfg=cfg,
        world=ShapesWorld(cfg.world),
        tokenizer=get(tokenizer_kind(cfg)),
        text_tokenizer=text_tokenizer(cfg.world, cfg.text),  # the grammar's or a data folder's
        seg_tokenizer=get("vqgan_seg", sketch),
        probe=get("probe", probes and need_image),
        video_probe=get("video_probe", probes and need_video),
        segmenter=get("segmenter", probes and sketch),
    )
