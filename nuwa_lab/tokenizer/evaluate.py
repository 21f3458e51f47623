r"""Scoring a tokenizer (NÜWA §4.1: the VQ-VAE / VQ-GAN comparison, VQ-GAN-Seg's accuracy).

A tokenizer is good when $\hat x = G(Q(E(x)))$ is close to $x$ (PSNR, SSIM, LPIPS), when the set
of reconstructions is distributed like the originals (lab-FID: the Fréchet distance of probe
features), when the probe still reads the same objects from $\hat x$ as from $x$, and when it
spreads its tokens over the codebook (usage, perplexity). Token round trip: $E(G(e_i))$ should
quantise back to $i$.

Axis letters: b images, t frames, h w the token grid (H W pixels).

| quantity | code |
|---|---|
| PSNR, SSIM, LPIPS of $(\hat x, x)$ | `psnr_db`, `ssim`, `lpips` (`nuwa_lab.metrics`) |
| lab-FID$(\{\hat x\}, \{x\})$ | `lab_fid` |
| $P[\mathrm{probe}(\hat x) = \mathrm{probe}(x)]$ | `probe_agreement` |
| used codes / K, $\exp H(p)$ | `codebook_usage`, `perplexity` |
| $P[\arg\max G(Q(E(\mathrm{onehot}(s)))) = s]$ per pixel | `pixel_accuracy` (VQ-GAN-Seg) |
"""

from __future__ import annotations

from typing import Any

import torch

from nuwa_lab.config import Config
from nuwa_lab.metrics import (
    ImageProbe,
    attribute_accuracy,
    codebook_usage,
    lab_fid,
    lpips_backbone,
    lpips_distance,
    pixel_accuracy,
    psnr,
    ssim,
)
from nuwa_lab.tokenizer.seg import VQGANSeg
from nuwa_lab.tokenizer.vqgan import VQGAN, VQModel
from nuwa_lab.world import Batch, ShapesWorld
from nuwa_lab.world.source import FolderSource, data_source


def _device(model: VQModel) -> torch.device:
    return model.quantizer.codebook.device


def eval_batch(world: ShapesWorld, split: str, n: int, *, kind: str = "image") -> Batch:
    """The first `n` samples of a split (deterministic): a `Batch` of images or videos."""
    seeds = world.seeds(split)
    if n > len(seeds):
        raise ValueError(f"asked for {n} {split} samples but the split has {len(seeds)}")
    seeds = [int(s) for s in seeds[:n]]
    return world.images(seeds) if kind == "image" else world.videos(seeds)


@torch.no_grad()
def token_roundtrip(model: VQModel, indices: torch.Tensor) -> float:
    """Fraction of tokens i with encode(decode(i)) == i (decoded outputs re-encoded)."""
    indices = indices.to(_device(model))
    again = model.encode(model.decode(indices))
    return float((again == indices).float().mean())


@torch.no_grad()
def reconstruction_metrics(
    model: VQGAN,
    pixels: torch.Tensor,
    *,
    probe: ImageProbe | None = None,
    objects: list | None = None,
    lpips: bool = True,
) -> tuple[dict[str, float], torch.Tensor]:
    """Scores of the round trip of `pixels` (b, 3, H, W) and the reconstructions (on the CPU).

    With a probe: lab-FID between reconstructions and originals, the agreement of its readings, and
    (given the true `objects`) its attribute accuracy on originals and on reconstructions.
    """

    model.eval()
    x = pixels.to(_device(model))
    idx = model.encode(x)
    recon = model.decode(idx)
    usage = codebook_usage(idx, model.codebook_size)
    out = {
        "psnr_db": float(psnr(recon, x).mean()),
        "ssim": float(ssim(recon, x).mean()),
        "codebook_usage": usage["usage"],
        "perplexity": usage["perplexity"],
        "token_roundtrip": token_roundtrip(model, idx),
    }
    if lpips:
        out["lpips"] = float(lpips_distance(recon, x).mean())
        out["lpips_backbone"] = lpips_backbone()
    if probe is not None:
        out["lab_fid"] = lab_fid(probe, x, recon)
        out["probe_agreement"] = attribute_accuracy(probe, recon, probe.read(x))["all"]
        if objects is not None:
            out["probe_accuracy_originals"] = attribute_accuracy(probe, x, objects)["all"]
            out["probe_accuracy_recon"] = attribute_accuracy(probe, recon, objects)["all"]
    return out, recon.cpu()


@torch.no_grad()
def segmentation_metrics(model: VQGANSeg, sketch: torch.Tensor) -> tuple[dict[str, float], Any]:
    """VQ-GAN-Seg scores of class maps (b, H, W): pixel accuracy (all and foreground), usage."""

    model.eval()
    s = sketch.to(_device(model))
    idx = model.encode(s)
    pred = model.decode(idx)
    usage = codebook_usage(idx, model.codebook_size)
    out = {
        "pixel_accuracy": pixel_accuracy(pred, s),
        "foreground_accuracy": pixel_accuracy(pred, s, ignore_background=True),
        "codebook_usage": usage["usage"],
        "perplexity": usage["perplexity"],
    }
    return out, pred.cpu()


def quick_metrics(kind: str, model: VQModel, cfg: Config) -> dict[str, float]:
    """The validation scores stored with a trained artifact (no probe, no LPIPS: cheap); on a
    data folder (`world.source`), its val images (or video frames when it has no images)."""

    source = data_source(cfg.world, cfg.text)
    if isinstance(source, FolderSource):
        scores, _ = reconstruction_metrics(
            model, folder_pixels(source, "val", cfg.tokenizer.eval_samples), lpips=False
        )
        return {f"val_{k}": v for k, v in scores.items()}
    batch = eval_batch(source, "val", cfg.tokenizer.eval_samples)
    if kind == "vqgan_seg":
        scores, _ = segmentation_metrics(model, batch.sketch)
    else:
        scores, _ = reconstruction_metrics(model, batch.pixels, lpips=False)
    return {f"val_{k}": v for k, v in scores.items()}


def folder_pixels(source: FolderSource, split: str, n: int) -> torch.Tensor:
    """Up to `n` images (b, 3, H, W) of a folder's split: its images, else its videos' frames."""
    kind = "image" if source.count("image", split) else "video"
    pixels = source.batch(kind, split, list(range(min(n, source.count(kind, split))))).pixels
    if not len(pixels):
        raise ValueError(f"no {split} images or videos to score a tokenizer on: {source.summary()}")
    return pixels if kind == "image" else pixels.flatten(0, 1)[:n]  # (b * t, 3, H, W)


def compression_configs(cfg: Config, *, min_size: int = 12) -> dict[str, Config]:
    """The compression ablation's configs: the given one, twice its factor at the same image size
    (4x fewer tokens), and the same token count at another compression factor.

    Equal tokens uses half the factor at half the image size when the world allows images that
    small (>= `min_size` px), else twice the factor at twice the size. Keys: "base",
    "equal_size", "equal_tokens"; each config's tokenizer and world sections differ, so each is its
    own cached artifact.
    """
    from dataclasses import replace

    f, size = cfg.tokenizer.downsample, cfg.world.image_size
    if f < 2:
        raise ValueError(f"downsample={f}: the compression ablation needs a factor of at least 2")

    def variant(factor: int, image_size: int) -> Config:
        return replace(
            cfg,
            tokenizer=replace(cfg.tokenizer, downsample=factor),
            world=replace(cfg.world, image_size=image_size),
        )

    small = size // 2 >= min_size
    return {
        "base": cfg,
        "equal_size": variant(2 * f, size),
        "equal_tokens": variant(f // 2, size // 2) if small else variant(2 * f, 2 * size),
    }


def describe(cfg: Config) -> str:
    """'f=4, 32 px -> 8x8 tokens' for a config."""
    f, size = cfg.tokenizer.downsample, cfg.world.image_size
    return f"f={f}, {size} px -> {size // f}x{size // f} tokens"
