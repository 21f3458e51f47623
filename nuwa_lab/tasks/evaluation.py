"""The types of task evaluation: the kit a task runs with, one evaluation, the sampling options.

`TaskKit` holds what running and measuring the tasks needs besides the model (tokenizers, probes,
and on a data folder the folder and its label probe); `TaskEvaluation` the items, outputs and
metrics of one task on one split. `evaluate.py` (the Shapes World) and `folder_evaluate.py` (a
data folder) both fill them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from nuwa_lab.config import Config, SampleConfig
from nuwa_lab.metrics import ImageProbe, Segmenter, VideoProbe
from nuwa_lab.metrics.label_probe import LabelProbe
from nuwa_lab.tasks.run import TaskOutput, Tokenizers
from nuwa_lab.tasks.spec import TASK_SPECS
from nuwa_lab.tokenizer import VQGANSeg, VQModel
from nuwa_lab.world import ShapesWorld, TextTokenizer
from nuwa_lab.world.source import FolderSource


def sampling_options(cfg: SampleConfig, task: str | None = None) -> dict:
    """The keyword arguments of `sample` that come from the config's sample section; with a
    `task`, its own temperature and number of candidates (`cfg.task_temperatures`,
    `cfg.task_candidates`) where it has them."""
    for key in ("task_temperatures", "task_candidates"):
        unknown = sorted({name for name, _ in getattr(cfg, key)} - set(TASK_SPECS))
        if unknown:
            raise ValueError(
                f"sample.{key} names unknown tasks {unknown}; valid: {', '.join(TASK_SPECS)}"
            )
    options = dict(
        temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, candidates=cfg.candidates
    )
    if task is not None:
        options.update(temperature=cfg.temperature_for(task), candidates=cfg.candidates_for(task))
    return options


def evaluation_options(cfg: Config, task: str, seed: int | None, sampling: dict) -> dict:
    """The sampler's options of one evaluation of `task`: `sampling_options`, the config's batch
    size, the caller's overrides, and a generator seeded with `seed` (default `cfg.seed`)."""
    options = {
        **sampling_options(cfg.sample, task),
        "batch_size": cfg.sample.batch_size,
        **sampling,
    }
    options.setdefault(
        "generator", torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    )
    return options


@dataclass
class TaskKit:
    """What running and measuring the tasks needs besides the model (all cached artifacts)."""

    cfg: Config
    world: ShapesWorld
    tokenizer: VQModel  # VQ-GAN (the codes of the model)
    text_tokenizer: TextTokenizer
    seg_tokenizer: VQGANSeg | None = None  # VQ-GAN-Seg, for s2i / s2v
    probe: ImageProbe | None = None
    video_probe: VideoProbe | None = None
    segmenter: Segmenter | None = None
    # a data folder (world.source = "folder:PATH"): its samples and the probe of its own classes
    folder: FolderSource | None = None
    label_probe: LabelProbe | None = None

    @property
    def tokenizers(self) -> Tokenizers:
        """The three tokenizers as `run_task` takes them."""
        return Tokenizers(self.tokenizer, self.text_tokenizer, self.seg_tokenizer)

    def probe_for(self, video: bool) -> ImageProbe | VideoProbe | None:
        return self.video_probe if video else self.probe


@dataclass
class TaskEvaluation:
    """The items, the outputs and the metrics of one task on one split."""

    task: str
    split: str
    inputs: dict[str, Any]
    output: TaskOutput
    metrics: dict[str, float]
    seconds: float
    sampling: dict[str, Any] = field(default_factory=dict)
    segmentation: torch.Tensor | None = None  # S2I / S2V: the segmenter's class maps of the output

    def prefixed(self, prefix: str | None = None) -> dict[str, float]:
        """Metrics keyed `<prefix>_<name>` (default prefix: the split), for `log_metrics`."""
        prefix = self.split if prefix is None else prefix
        return {f"{prefix}_{k}": v for k, v in self.metrics.items()}


def reconstruction(kit: TaskKit, inputs: dict) -> torch.Tensor:
    """The tokenizer's round trip of the items' pixels: the best a tokenized output can do."""
    with torch.no_grad():
        device = next(kit.tokenizer.parameters()).device
        return kit.tokenizer.reconstruct(inputs["pixels"].to(device)).cpu()
