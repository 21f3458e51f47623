r"""Training the tokenizers with `nuwa_lab.train.loop`; the artifact kinds "vqgan", "vqvae",
"vqgan_seg".

    vqgan = get_or_train("vqgan", cfg)       # VQ-GAN: pixel + L_P + PatchGAN (after disc_start)
    vqvae = get_or_train("vqvae", cfg)       # the same network, perceptual and GAN terms off
    seg = get_or_train("vqgan_seg", cfg)     # VQ-GAN-Seg on sketches (cross-entropy)

Each step's global batch is a pure function of (cfg.tokenizer.seed, step): seeds drawn from the
train split (which never shows a held-out shape-colour pair), three quarters rendered as images and
one quarter as one random frame of a video (frames are tokenized by the same tokenizer, and a moving
object may touch a wall where an image's never does). Two optimizers: "gen" (encoder, quantizer,
decoder) and "disc" (the PatchGAN, stepped only from `disc_start` on). Adam with
$(\beta_1, \beta_2) = (0.5, 0.9)$ and no weight decay, as in taming-transformers.

The perceptual term $L_P$ is chosen by `tokenizer.perceptual`: "lpips" (`lpips_distance`, on a
randomly initialised AlexNet unless torchvision's ImageNet weights are cached) or "probe"
(`ProbePerceptual`: the same recipe on the lab's trained image probe, loaded with
`get_or_train("probe", cfg)`, trained first if needed).

The artifacts depend on the `world` and `tokenizer` config sections only (not on `cfg.seed` or
`cfg.train`): a tokenizer is an instrument shared by every experiment on the same world. A VQ-GAN
trained with the probe's distance also depends on the probe artifact: its key then holds the
probe's folder name (`probe_dependency`), which hashes the probe's config fields and code, so a
changed probe retrains the tokenizer.

| symbol | code | meaning |
|---|---|---|
| S, b, $\eta$ | `tokenizer.steps` (`.seg_steps`), `.batch_size`, `.lr` | steps, batch, peak lr |
| $w_P$, $w_G$ | `perceptual_weight`, `gan_weight` | 0 for "vqvae" and "vqgan_seg" |
| $L_P$ | `tokenizer.perceptual`, `perceptual_distance(cfg)` | "lpips" or "probe" |
| $s_D$ | `disc_start` | first step of the discriminator |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nuwa_lab.config import Config, TokenizerConfig, TrainConfig
from nuwa_lab.device import resolve_device
from nuwa_lab.metrics.perceptual import lpips_distance
from nuwa_lab.metrics.probe_perceptual import ProbePerceptual
from nuwa_lab.recipes.cache import WORLD_AND_LOOP, artifact_dir, get_or_train, register_artifact
from nuwa_lab.recipes.probes import PROBE_KINDS  # importing it registers the "probe" artifact
from nuwa_lab.tokenizer.evaluate import quick_metrics
from nuwa_lab.tokenizer.losses import VQGANLoss
from nuwa_lab.tokenizer.seg import VQGANSeg, segmentation_loss
from nuwa_lab.tokenizer.vqgan import VQGAN, VQModel
from nuwa_lab.train.loop import rank_slice, step_generator, train
from nuwa_lab.world import ShapesWorld
from nuwa_lab.world.source import FolderSource, data_source, no_segmentation

KINDS = ("vqgan", "vqvae", "vqgan_seg")
PERCEPTUALS = ("lpips", "probe")  # tokenizer.perceptual: the network of L_P
VERSION = "1"  # the code below is hashed into it too (nuwa_lab.recipes.cache.code_version)
# the code that decides what a trained tokenizer is: this package, its perceptual losses, data and
# loop (the probe's own code enters through probe_dependency)
CODE = (
    "nuwa_lab.tokenizer",
    "nuwa_lab.recipes.tokenizers",
    "nuwa_lab.metrics.perceptual",
    "nuwa_lab.metrics.probe_perceptual",
    *WORLD_AND_LOOP,
)
PROBE_KIND = PROBE_KINDS[0]  # "probe": the image probe
VIDEO_FRACTION = 4  # one sample in VIDEO_FRACTION is a random video frame


def build(kind: str, cfg: Config) -> VQModel:
    """An untrained tokenizer of `kind` for `cfg` (the artifact cache's build_fn)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "vqgan_seg":
        return VQGANSeg(
            cfg.tokenizer, num_classes=1 + len(cfg.world.shapes), init=cfg.tokenizer.init
        )
    return VQGAN(cfg.tokenizer, init=cfg.tokenizer.init)


def train_config(tok: TokenizerConfig, *, seg: bool = False) -> TrainConfig:
    """The loop's settings, from the tokenizer section alone (so the artifact hash covers them)."""
    steps = tok.seg_steps if seg else tok.steps
    return TrainConfig(
        steps=steps,
        batch_size=tok.batch_size,
        lr=tok.lr,
        warmup=min(tok.warmup, steps),
        weight_decay=0.0,
        betas=(0.5, 0.9),
        log_every=max(1, min(50, steps // 20)),
        ckpt_every=max(1, min(500, steps // 4)),
    )


def uses_probe(kind: str, tok: TokenizerConfig) -> bool:
    """Whether a tokenizer of `kind` trains with the probe's perceptual distance."""
    return kind == "vqgan" and tok.perceptual_weight > 0 and tok.perceptual == "probe"


def probe_dependency(kind: str, cfg: Config) -> dict[str, str]:
    """What the artifact of `kind` depends on beyond its config sections (the cache's `derived`):
    the probe artifact's folder name, `probe-<hash of its fields and code>`, when it trains with
    the probe's distance; nothing otherwise."""
    if not uses_probe(kind, cfg.tokenizer):
        return {}
    return {"perceptual_probe": artifact_dir(PROBE_KIND, cfg).name}


def perceptual_distance(
    cfg: Config, *, progress: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """$L_P$'s distance for `cfg.tokenizer.perceptual`: `lpips_distance`, or `ProbePerceptual` on
    the cached image probe (trained first if missing, without touching the global RNG, so a
    tokenizer trains the same whether the probe was cached or not)."""
    name = cfg.tokenizer.perceptual
    if name not in PERCEPTUALS:
        raise ValueError(f"unknown tokenizer.perceptual {name!r}; valid: {', '.join(PERCEPTUALS)}")
    if name == "lpips":
        return lpips_distance
    with torch.random.fork_rng(devices=[]):
        probe = get_or_train(PROBE_KIND, cfg, progress=progress)
    return ProbePerceptual(probe)


def make_loss(
    kind: str,
    tok: TokenizerConfig,
    *,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> VQGANLoss:
    """The objective of `kind`: VQ-GAN's full loss, or VQ-VAE's (perceptual and GAN off).

    `perceptual`: VQ-GAN's $L_P$ distance; by default `lpips_distance`. With
    `tok.perceptual = "probe"` it must be given (`perceptual_distance(cfg)`: the probe is an
    artifact, loaded through the cache)."""
    gan = kind == "vqgan"
    if gan and tok.perceptual_weight > 0:
        if perceptual is None and tok.perceptual == "probe":
            raise ValueError(
                "tokenizer.perceptual = 'probe' needs the trained probe: pass "
                "perceptual=perceptual_distance(cfg) (it loads get_or_train('probe', cfg))"
            )
        if perceptual is None:
            perceptual = lpips_distance
    else:
        perceptual = None
    return VQGANLoss(
        rec_loss=tok.rec_loss,
        perceptual_weight=tok.perceptual_weight if gan else 0.0,
        perceptual=perceptual,
        gan_weight=tok.gan_weight if gan else 0.0,
        disc_start=tok.disc_start,
        disc_channels=tok.disc_channels,
        disc_layers=tok.disc_layers,
    )


def training_batch(
    world: ShapesWorld | FolderSource,
    seed: int,
    step: int,
    batch_size: int,
    *,
    sketch: bool = False,
) -> torch.Tensor:
    """The global batch of `step`: pixels (b, 3, H, W), or class maps (b, H, W) with `sketch`;
    from a data folder (`world.source`) its train images and video frames, in the same shares."""

    g = step_generator(seed, step)
    if isinstance(world, FolderSource):
        if sketch:
            raise ValueError(no_segmentation("VQ-GAN-Seg", world.root))
        return world.training_pixels(
            g, batch_size - batch_size // VIDEO_FRACTION, batch_size // VIDEO_FRACTION
        )
    train_seeds = world.seeds("train")
    picks = torch.randint(0, len(train_seeds), (batch_size,), generator=g).tolist()
    seeds = [int(train_seeds[i]) for i in picks]
    n_video = batch_size // VIDEO_FRACTION
    n_image = batch_size - n_video
    images = world.images(seeds[:n_image])
    parts = [images.sketch if sketch else images.pixels]
    if n_video:
        videos = world.videos(seeds[n_image:])
        frame = torch.randint(0, world.cfg.frames, (n_video,), generator=g)
        rows = torch.arange(n_video)
        parts.append((videos.sketch if sketch else videos.pixels)[rows, frame])
    return torch.cat(parts)


def _adam(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (no weight decay) over the trainable parameters, never the fused kernel.

    Not `nuwa_lab.train.loop.make_adamw`: it picks torch's fused CPU AdamW, which (torch 2.14)
    reads a gradient in channels-last layout, as convolution backward returns it through
    `torch.autograd.grad`, in raw memory order, scrambling the update of the decoder's conv
    weights (a tokenizer then plateaus several dB lower). The for-each kernel is correct.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=False
    )


class TokenizerTrainable:
    """The `nuwa_lab.train.loop.Trainable` of a tokenizer: optimizers "gen" and (VQ-GAN) "disc"."""

    def __init__(
        self,
        kind: str,
        model: VQModel,
        cfg: Config,
        train_cfg: TrainConfig,
        *,
        progress: bool = False,
    ):

        self.kind, self.model, self.cfg, self.train_cfg = kind, model, cfg, train_cfg
        self.world = data_source(cfg.world, cfg.text)  # the Shapes World or a data folder
        perceptual = None
        if uses_probe(kind, cfg.tokenizer):
            perceptual = perceptual_distance(cfg, progress=progress)
        with torch.random.fork_rng(devices=[]):  # the discriminator's init follows the seed too
            torch.manual_seed(cfg.tokenizer.seed + 1)
            self.loss = (
                None
                if kind == "vqgan_seg"
                else make_loss(kind, cfg.tokenizer, perceptual=perceptual)
            )

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"model": self.model}
        if self.loss is not None and self.loss.uses_gan:
            mods["disc"] = self.loss
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"gen": _adam(self.model, self.train_cfg)}
        if self.loss is not None and self.loss.uses_gan:
            opts["disc"] = _adam(self.loss, self.train_cfg)
        return opts

    def batch(self, step: int, rank: int, world_size: int) -> torch.Tensor:

        full = training_batch(
            self.world,
            self.cfg.tokenizer.seed,
            step,
            self.train_cfg.batch_size,
            sketch=self.kind == "vqgan_seg",
        )
        return full[rank_slice(len(full), rank, world_size)]

    def losses(self, batch: torch.Tensor, step: int):
        out = self.model(batch)
        q = out.quant
        logs = {
            "commitment": float(q.commitment.detach()),
            "perplexity": float(q.perplexity),
            "usage": float(q.usage),
            "restarted": float(q.restarted),
        }
        if self.loss is None:  # VQ-GAN-Seg: cross-entropy reconstruction
            ce = segmentation_loss(out.recon, batch)
            logs["ce"] = float(ce.detach())
            return {"gen": ce + q.loss}, logs
        gen, gen_logs = self.loss.generator_loss(
            out.recon, batch, q.loss, step=step, last_layer=self.model.last_layer
        )
        disc, disc_logs = self.loss.discriminator_loss(out.recon, batch, step=step)
        losses = {"gen": gen}
        if self.loss.gan_active(step):
            losses["disc"] = disc
        return losses, logs | gen_logs | disc_logs


def train_tokenizer(
    kind: str,
    cfg: Config,
    *,
    workdir: Any = None,
    progress: bool = True,
    max_steps: int | None = None,
) -> tuple[VQModel, dict[str, float]]:
    """Train a tokenizer of `kind` (checkpoints in `workdir`, resumable); returns (model, metrics).

    The metrics are the training time and a validation score on `tokenizer.eval_samples` images:
    PSNR and codebook usage, or VQ-GAN-Seg's pixel accuracy.
    """

    with torch.random.fork_rng(devices=[]):  # the initial weights follow tokenizer.seed alone
        torch.manual_seed(cfg.tokenizer.seed)
        model = build(kind, cfg)
    train_cfg = train_config(cfg.tokenizer, seg=kind == "vqgan_seg")
    trainable = TokenizerTrainable(kind, model, cfg, train_cfg, progress=progress)
    result = train(
        trainable,
        train_cfg,
        run_dir=workdir,
        device=resolve_device(cfg.device),
        seed=cfg.tokenizer.seed,
        progress=progress,
        max_steps=max_steps,
        desc=kind,
    )
    model.eval()
    metrics = {
        "train_seconds": result.seconds,
        "sec_per_step": result.sec_per_step,
        "train_images_per_sec": train_cfg.batch_size / max(result.sec_per_step, 1e-9),
        "steps": result.step,
    }
    every = max(1, len(result.history["step"]) // 200)  # a thinned curve for the notebook's plots
    for key in ("step", "rec", "perceptual", "ce", "g_loss", "d_loss", "perplexity"):
        if key in result.history:
            metrics[f"history_{key}"] = result.history[key][::every]
    metrics.update(quick_metrics(kind, model, cfg))
    return model, metrics


def _register() -> None:
    for kind in KINDS:
        register_artifact(
            kind,
            lambda cfg, *, workdir, progress, kind=kind: train_tokenizer(
                kind, cfg, workdir=workdir, progress=progress
            ),
            ("world", "tokenizer"),
            build_fn=lambda cfg, kind=kind: build(kind, cfg),
            version=VERSION,
            code=CODE,
            derived=lambda cfg, kind=kind: probe_dependency(kind, cfg),
        )


_register()
