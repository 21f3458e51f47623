r"""Training and evaluating the probes with `nuwa_lab.train.loop`; the artifact kinds that cache
them.

    probe = get_or_train("probe", cfg)            # ImageProbe
    video_probe = get_or_train("video_probe", cfg)
    segmenter = get_or_train("segmenter", cfg)

Each batch is a pure function of (cfg.probe.seed, step): seeds drawn from the train range of a world
without held-out pairs (`probe_world`), rendered, then augmented so the probe keeps reading pictures
that are a little noisy or blurred (tokenizer reconstructions, generated samples):

$\tilde x = \mathrm{clip}(G_{\sigma_b} * x + \delta_b + \sigma^n_b \epsilon, 0, 1)$, with per-sample
$\sigma^n_b \sim U(0, \text{noise})$, a 3x3 Gaussian blur $\sigma_b \sim U(0, \text{blur})$ on half
of the samples, and a per-channel colour offset $\delta_b \sim U(-0.03, 0.03)$.

The probes depend only on the `world` section and their own `probe` fields (not on `cfg.seed` or
`cfg.train`): they are instruments, the same for every experiment that shares a world.

| symbol | code | meaning |
|---|---|---|
| S | `cfg.probe.steps` / `video_steps` / `seg_steps` | optimizer steps |
| b | `cfg.probe.batch_size` | samples per step |
| noise, blur | `cfg.probe.noise`, `cfg.probe.blur` | augmentation strengths |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from nuwa_lab.config import Config, ProbeConfig, TrainConfig
from nuwa_lab.device import resolve_device
from nuwa_lab.metrics.accuracy import attribute_accuracy, segmentation_accuracy
from nuwa_lab.metrics.probe import build, probe_world
from nuwa_lab.recipes.cache import WORLD_AND_LOOP, register_artifact
from nuwa_lab.train.loop import make_adamw, rank_slice, step_generator, train
from nuwa_lab.world import ShapesWorld, attribute_classes

PROBE_KINDS = ("probe", "video_probe", "segmenter")
VERSION = "2"  # the code below is hashed into it too (nuwa_lab.recipes.cache.code_version)
CODE = ("nuwa_lab.metrics.probe", "nuwa_lab.recipes.probes", *WORLD_AND_LOOP)
# What each kind depends on: the world, the shared probe settings and its own number of steps
# (so a longer video probe does not retrain the image probe).
SHARED = (
    "world",
    "probe.channels",
    "probe.batch_size",
    "probe.lr",
    "probe.noise",
    "probe.blur",
    "probe.seed",
)
STEPS_FIELD = {
    "probe": "probe.steps",
    "video_probe": "probe.video_steps",
    "segmenter": "probe.seg_steps",
}


def augment(pixels: torch.Tensor, generator: torch.Generator, *, noise: float, blur: float):
    """Noise, blur and colour offset per sample of (b, [t,] 3, h, w), drawn from `generator`."""
    b = pixels.shape[0]
    frames = pixels.shape[1] if pixels.dim() == 5 else 1
    x = pixels.reshape(b, frames, 3, *pixels.shape[-2:])
    sigma_n = torch.rand(b, generator=generator) * noise
    sigma_b = torch.rand(b, generator=generator) * blur
    sigma_b = sigma_b * (torch.rand(b, generator=generator) < 0.5)
    offset = (torch.rand(b, 3, generator=generator) * 2 - 1) * 0.03
    eps = torch.randn(x.shape, generator=generator)
    coords = torch.tensor([-1.0, 0.0, 1.0])
    g = torch.exp(-(coords**2)[None] / (2 * sigma_b.clamp_min(1e-3)[:, None] ** 2))
    g = g / g.sum(dim=1, keepdim=True)  # (b, 3); sigma -> 0 is the identity filter
    kernel = torch.einsum("bi,bj->bij", g, g)  # (b, 3, 3)
    kernel = repeat(kernel, "b i j -> (b t c) 1 i j", t=frames, c=3)
    flat = rearrange(x, "b t c h w -> 1 (b t c) h w")
    blurred = F.conv2d(F.pad(flat, (1, 1, 1, 1), mode="replicate"), kernel, groups=kernel.shape[0])
    x = rearrange(blurred, "1 (b t c) h w -> b t c h w", b=b, t=frames)
    x = x + offset[:, None, :, None, None] + sigma_n[:, None, None, None, None] * eps
    return x.clamp(0, 1).reshape(pixels.shape)


class ProbeTrainable:
    """The `nuwa_lab.train.loop.Trainable` of one probe kind (one model, one AdamW)."""

    def __init__(self, kind: str, model: nn.Module, cfg: Config, train_cfg: TrainConfig):

        self.kind, self.model, self.cfg, self.train_cfg = kind, model, cfg, train_cfg
        self.world = ShapesWorld(probe_world(cfg.world))
        self.train_seeds = self.world.seeds("train")
        self._adamw = make_adamw

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self._adamw(self.model, self.train_cfg)}

    def batch(self, step: int, rank: int, world_size: int) -> dict[str, torch.Tensor]:

        pc, n = self.cfg.probe, self.train_cfg.batch_size
        g = step_generator(pc.seed, step)
        picks = torch.randint(len(self.train_seeds), (n,), generator=g).tolist()
        seeds = [self.train_seeds[i] for i in picks]
        shard = rank_slice(n, rank, world_size)
        render = self.world.videos if self.kind == "video_probe" else self.world.images
        data = render(seeds)  # the global batch, so its augmentation is the same on every rank
        pixels = augment(data.pixels, g, noise=pc.noise, blur=pc.blur)[shard]
        if self.kind == "segmenter":
            return {"pixels": pixels, "sketch": data.sketch[shard]}
        return {"pixels": pixels, "targets": self.model.targets(data.objects[shard])}

    def losses(self, batch: dict[str, torch.Tensor], step: int):
        if self.kind == "segmenter":
            logits = self.model(batch["pixels"])
            loss = F.cross_entropy(logits, batch["sketch"])
            acc = (logits.argmax(1) == batch["sketch"]).float().mean()
            return {"model": loss}, {"pixel_acc": float(acc)}
        loss, logs = self.model.loss(batch["pixels"], batch["targets"])
        return {"model": loss}, logs


def train_config(kind: str, probe_cfg: ProbeConfig) -> TrainConfig:
    """The loop settings of a probe kind, from `cfg.probe` alone."""
    steps = {
        "probe": probe_cfg.steps,
        "video_probe": probe_cfg.video_steps,
        "segmenter": probe_cfg.seg_steps,
    }[kind]
    return TrainConfig(
        steps=steps,
        batch_size=probe_cfg.batch_size,
        lr=probe_cfg.lr,
        warmup=max(1, steps // 20),
        log_every=max(1, steps // 100),
        ckpt_every=max(1, steps // 4),
    )


def evaluate(kind: str, model: nn.Module, cfg: Config, *, n: int | None = None) -> dict[str, float]:
    """Accuracies on clean test samples, held-out-pair samples and uniform noise (probes), or the
    pixel / foreground accuracy of the segmenter on clean images. Keys `<split>/<attribute>`."""
    world = ShapesWorld(cfg.world)
    n = n or cfg.probe.eval_size
    out: dict[str, float] = {}
    if kind == "segmenter":
        for split in ("test", "held_out"):
            data = world.images(world.seeds(split)[:n])
            for key, value in segmentation_accuracy(model, data.pixels, data.sketch).items():
                out[f"{split}/{key}"] = value
        return out
    render = world.videos if kind == "video_probe" else world.images
    splits = {split: render(world.seeds(split)[:n]) for split in ("test", "held_out")}
    for split, data in splits.items():
        for key, value in attribute_accuracy(model, data.pixels, data.objects).items():
            out[f"{split}/{key}"] = value
    test = splits["test"]  # noise pictures scored against the test samples' attributes
    noise = torch.rand(test.pixels.shape, generator=torch.Generator().manual_seed(12345))
    for key, value in attribute_accuracy(model, noise, test.objects).items():
        out[f"noise/{key}"] = value
    classes = attribute_classes(cfg.world)
    for a in model.classes:
        out[f"chance/{a}"] = 1.0 / len(classes[a])
    return out


def train_probe(
    kind: str, cfg: Config, *, workdir=None, progress: bool = True
) -> tuple[nn.Module, dict[str, float]]:
    """Train a probe of `kind` with `nuwa_lab.train.loop` (checkpoints in `workdir`, resumable)."""

    if kind not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; choose one of {PROBE_KINDS}")
    train_cfg = train_config(kind, cfg.probe)
    model, metrics = fit_probe(
        lambda: build(kind, cfg),
        lambda model: ProbeTrainable(kind, model, cfg, train_cfg),
        train_cfg,
        cfg,
        workdir=workdir,
        progress=progress,
        desc=kind,
    )
    metrics.update(evaluate(kind, model, cfg))
    return model, metrics


def fit_probe(
    build_model: Callable[[], nn.Module],
    trainable: Callable[[nn.Module], Any],
    train_cfg: TrainConfig,
    cfg: Config,
    *,
    workdir=None,
    progress: bool = True,
    desc: str,
) -> tuple[nn.Module, dict[str, float]]:
    """Build a probe whose initial weights follow `cfg.probe.seed` alone (not whatever the global
    generator holds when it is built), train it with `nuwa_lab.train.loop` (checkpoints in
    `workdir`, resumable) and return it in eval mode with its training time."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.probe.seed)
        model = build_model()
    result = train(
        trainable(model),
        train_cfg,
        run_dir=workdir,
        device=resolve_device(cfg.device),
        seed=cfg.probe.seed,
        progress=progress,
        desc=desc,
    )
    model.eval()
    return model, {"train_seconds": result.seconds, "sec_per_step": result.sec_per_step}


def _register() -> None:
    for kind in PROBE_KINDS:
        register_artifact(
            kind,
            lambda cfg, *, workdir, progress, kind=kind: train_probe(
                kind, cfg, workdir=workdir, progress=progress
            ),
            (*SHARED, STEPS_FIELD[kind]),
            build_fn=lambda cfg, kind=kind: build(kind, cfg),
            version=VERSION,
            code=CODE,
        )


_register()
