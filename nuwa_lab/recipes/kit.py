"""The kit a task needs besides its model: tokenizers and probes, loaded from the artifact cache.

    kit = load_kit(cfg, "t2i")   # VQ-GAN, caption tokenizer, image probe (trained on first use)
    evaluate_task("t2i", model, kit, split="test")

`TaskKit` (the type) lives with the tasks (`nuwa_lab.tasks.evaluation`); loading it trains or loads
cached artifacts, so it lives here, with the recipes.

On a data folder (`world.source = "folder:PATH"`) the kit holds the folder and, when its records
carry a class, the label probe of its own classes (`nuwa_lab.recipes.label_probe`) instead of
the Shapes World's probes, which read shapes and colours a folder does not have.
"""

from __future__ import annotations

from typing import Any

from nuwa_lab.config import Config
from nuwa_lab.recipes.cache import get_or_train
from nuwa_lab.recipes.label_probe import KIND as LABEL_PROBE
from nuwa_lab.tasks.evaluation import TaskKit
from nuwa_lab.tasks.spec import TASK_SPECS, get_task
from nuwa_lab.world import ShapesWorld
from nuwa_lab.world.labels import class_names
from nuwa_lab.world.source import check_task, folder_path, load_folder, text_tokenizer


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

    if folder_path(cfg.world) is not None:
        for spec in specs if tasks else ():  # what a named task needs and the folder lacks
            check_task(cfg.world, cfg.text, spec.name)
        source = load_folder(cfg.world, cfg.text)
        return TaskKit(
            cfg=cfg,
            world=ShapesWorld(cfg.world),
            tokenizer=get(tokenizer_kind(cfg)),
            text_tokenizer=text_tokenizer(cfg.world, cfg.text),
            folder=source,
            label_probe=get(LABEL_PROBE, probes and len(class_names(source)) >= 2),
        )
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
