r"""Training the label probe on a data folder's own classes; the artifact kind that caches it.

    probe = get_or_train("label_probe", cfg)   # cfg.world.source = "folder:PATH"

The probe (`nuwa_lab.metrics.label_probe.LabelProbe`) learns the class field of the folder's
records (`nuwa_lab.world.labels`: "label", "class" or "digit") from the folder's real train
pictures: its images, and every frame of its videos labelled with the video's class (a moving
digit is smaller than a still one: the probe sees both). Each batch is a pure function of
(cfg.probe.seed, step), augmented as the world's probes are (`nuwa_lab.recipes.probes.augment`:
noise, blur, colour offset), so it keeps reading tokenizer reconstructions and generated samples.

The cache key holds the world section, so the folder's content hash
(`nuwa_lab.world.source.source_fingerprint`): a changed folder trains a new probe. After training,
its accuracy on the folder's clean test (and val) images and videos is stored in `meta.json`, each
with its 95% Wilson interval.

| symbol | code | meaning |
|---|---|---|
| S | `cfg.probe.steps` | optimizer steps (the world's image probe's setting) |
| b | `cfg.probe.batch_size` | pictures per step |
| noise, blur | `cfg.probe.noise`, `cfg.probe.blur` | augmentation strengths |
"""

from __future__ import annotations

import torch
from torch import nn

from nuwa_lab.config import Config, TrainConfig
from nuwa_lab.metrics.label_probe import LabelProbe, class_accuracy
from nuwa_lab.recipes.cache import WORLD_AND_LOOP, register_artifact
from nuwa_lab.recipes.probes import SHARED, augment, fit_probe, train_config
from nuwa_lab.train.loop import make_adamw, rank_slice, step_generator
from nuwa_lab.world.labels import class_indices, require_classes
from nuwa_lab.world.source import FolderSource, folder_path, load_folder

KIND = "label_probe"
VERSION = "1"
CODE = (
    "nuwa_lab.metrics.label_probe",
    "nuwa_lab.recipes.label_probe",
    "nuwa_lab.recipes.probes",
    *WORLD_AND_LOOP,
)
SECTIONS = (
    *SHARED,  # what the Shapes World's probes depend on
    "text.max_length",  # which captions are too long, so which entries a skipping load keeps
    "probe.steps",
)


def folder_of(cfg: Config) -> FolderSource:
    """The data folder of `cfg.world.source`, or an error saying the probe needs one."""
    if folder_path(cfg.world) is None:
        raise ValueError(
            'the label probe reads a data folder\'s own classes: set world.source = "folder:PATH" '
            '(the Shapes World has its own probes, "probe" and "video_probe")'
        )
    return load_folder(cfg.world, cfg.text)


def labelled_pixels(source: FolderSource, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 pictures (n, 3, H, W) and class indices (n,) of `split`: its labelled images, then
    every frame of its labelled videos (each frame with its video's class)."""
    pictures, labels = [], []
    for kind in ("image", "video"):
        y = class_indices(source, kind, split)
        keep = y >= 0
        pixels = source.pixels[kind, split][keep]
        if kind == "video":
            frames = pixels.shape[1]
            pixels, y = pixels.flatten(0, 1), y[keep].repeat_interleave(frames)
        else:
            y = y[keep]
        pictures.append(pixels)
        labels.append(y)
    return torch.cat(pictures), torch.cat(labels)


def build_label_probe(cfg: Config) -> LabelProbe:
    """An untrained probe over the folder's classes."""
    classes = require_classes(folder_of(cfg), "the label probe")
    return LabelProbe(classes=classes, channels=cfg.probe.channels)


class LabelProbeTrainable:
    """The `nuwa_lab.train.loop.Trainable` of the label probe (one model, one AdamW)."""

    def __init__(self, model: LabelProbe, cfg: Config, train_cfg: TrainConfig):
        self.model, self.cfg, self.train_cfg = model, cfg, train_cfg
        source = folder_of(cfg)
        self.pixels, self.labels = labelled_pixels(source, "train")
        if not len(self.labels):
            raise ValueError(
                f"the label probe needs labelled train pictures: {source.summary()}, none of the "
                f"train ones with a class"
            )

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": make_adamw(self.model, self.train_cfg)}

    def batch(self, step: int, rank: int, world_size: int) -> dict[str, torch.Tensor]:
        pc, n = self.cfg.probe, self.train_cfg.batch_size
        g = step_generator(pc.seed, step)
        rows = torch.randint(len(self.labels), (n,), generator=g)
        pixels = augment(self.pixels[rows].float() / 255, g, noise=pc.noise, blur=pc.blur)
        shard = rank_slice(n, rank, world_size)
        return {"pixels": pixels[shard], "labels": self.labels[rows][shard]}

    def losses(self, batch: dict[str, torch.Tensor], step: int):
        loss, logs = self.model.loss(batch["pixels"], batch["labels"])
        return {"model": loss}, logs


def probe_scores(probe: LabelProbe, source: FolderSource, split: str) -> dict[str, float]:
    """The probe's accuracy on the clean labelled images and videos of `split`, with intervals:
    keys `<split>_acc_images`, `<split>_acc_videos` (and their `_low`, `_high`, `_n`)."""
    out: dict[str, float] = {}
    for kind in ("image", "video"):
        if source.count(kind, split):
            pixels = source.pixels[kind, split].float() / 255
            labels = class_indices(source, kind, split)
            out |= class_accuracy(probe, pixels, labels, prefix=f"{split}_acc_{kind}s")
    return out


def train_label_probe(cfg: Config, *, workdir=None, progress: bool = True):
    """Train the label probe with `nuwa_lab.train.loop` (checkpoints in `workdir`, resumable);
    returns it with its test and val scores."""
    train_cfg = train_config("probe", cfg.probe)
    model, metrics = fit_probe(
        lambda: build_label_probe(cfg),
        lambda model: LabelProbeTrainable(model, cfg, train_cfg),
        train_cfg,
        cfg,
        workdir=workdir,
        progress=progress,
        desc=KIND,
    )
    source = folder_of(cfg)
    metrics["chance"] = 1.0 / len(model.classes)
    for split in ("test", "val"):
        metrics |= probe_scores(model, source, split)
    return model, metrics


register_artifact(
    KIND,
    train_label_probe,
    SECTIONS,
    build_fn=build_label_probe,
    version=VERSION,
    code=CODE,
)
