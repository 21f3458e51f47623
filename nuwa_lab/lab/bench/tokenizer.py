"""`python -m nuwa_lab bench tokenizer [--json OUT] [--quick]`: tokenizer training and coding speed.

Measured in this one process at the tiny preset (`--quick`: smoke), all on the CPU threads torch
uses here:

| quantity | how |
|---|---|
| training images/s | `nuwa_lab.train.loop` steps, data included: VQ-VAE, VQ-GAN (all losses), Seg |
| encode / decode images/s | `VQGAN.encode`, `VQGAN.decode` on one batch of images |
| ratios | VQ-GAN / VQ-VAE step time; coding / training rate; conv FLOP/s / matmul FLOP/s |

The FLOP utilisation counts the network's FLOPs of a VQ-VAE step (torch's FLOP counter: forward and
backward) against the best fp32 matmul rate; work the implementation spends beyond that (norms, the
quantiser, the optimizer, data) lowers it. Weights are untrained: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import torch

from nuwa_lab.config import Config, make_config
from nuwa_lab.lab.bench.model import matmul_rate
from nuwa_lab.recipes.tokenizers import TokenizerTrainable, build, train_config
from nuwa_lab.tokenizer import VQGAN
from nuwa_lab.train.loop import train
from nuwa_lab.world import ShapesWorld


def _train_rate(kind: str, cfg: Config, steps: int) -> float:
    """Images per second of `steps` training steps (after one warm-up call of 2 steps)."""

    tok = replace(cfg.tokenizer, disc_start=0)  # the full VQ-GAN objective from step 0
    cfg = replace(cfg, tokenizer=tok)
    seconds = 0.0
    for n in (2, steps):
        train_cfg = replace(train_config(tok), steps=n, warmup=1)
        model = build(kind, cfg)
        result = train(
            TokenizerTrainable(kind, model, cfg, train_cfg),
            train_cfg,
            device="cpu",
            progress=False,
            desc=kind,
        )
        seconds = result.seconds
    return steps * tok.batch_size / seconds


def _coding_rates(cfg: Config, repeats: int = 3) -> tuple[float, float]:
    """(encode, decode) images per second of one batch, best of `repeats`."""

    model = VQGAN(cfg.tokenizer).eval()
    world = ShapesWorld(cfg.world)
    pixels = world.images(list(world.seeds("val")[: 4 * cfg.tokenizer.batch_size])).pixels
    best_e = best_d = float("inf")
    idx = model.encode(pixels)
    for _ in range(repeats):
        start = time.perf_counter()
        idx = model.encode(pixels)
        best_e = min(best_e, time.perf_counter() - start)
        start = time.perf_counter()
        model.decode(idx)
        best_d = min(best_d, time.perf_counter() - start)
    return len(pixels) / best_e, len(pixels) / best_d


def _step_flops(cfg: Config) -> float:
    """FLOPs of one VQ-VAE training step's network (forward + backward), batch included."""
    from torch.utils.flop_counter import FlopCounterMode

    model = VQGAN(cfg.tokenizer)
    size = cfg.world.image_size
    x = torch.rand(cfg.tokenizer.batch_size, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        ((out.recon - x).pow(2).mean() + out.quant.loss).backward()
    return float(counter.get_total_flops())


def run(args: argparse.Namespace) -> dict[str, Any]:

    preset = "smoke" if getattr(args, "quick", False) else "tiny"
    cfg = make_config(preset, device="cpu")
    steps = 3 if preset == "smoke" else 20
    rates = {kind: _train_rate(kind, cfg, steps) for kind in ("vqvae", "vqgan", "vqgan_seg")}
    encode, decode = _coding_rates(cfg)
    vqvae_step = cfg.tokenizer.batch_size / rates["vqvae"]
    utilisation = _step_flops(cfg) / vqvae_step / matmul_rate()
    results = {
        "preset": preset,
        "threads": torch.get_num_threads(),
        "batch_size": cfg.tokenizer.batch_size,
        "image_size": cfg.world.image_size,
        "train_images_per_sec_vqvae": rates["vqvae"],
        "train_images_per_sec_vqgan": rates["vqgan"],
        "train_images_per_sec_vqgan_seg": rates["vqgan_seg"],
        "encode_images_per_sec": encode,
        "decode_images_per_sec": decode,
        "ratio_vqgan_step_over_vqvae_step": rates["vqvae"] / rates["vqgan"],
        "ratio_encode_decode_over_training": (1 / (1 / encode + 1 / decode)) / rates["vqgan"],
        "ratio_flops_over_matmul": utilisation,
    }
    print(
        f"tokenizer bench, preset {preset}, {results['threads']} threads, "
        f"batch {cfg.tokenizer.batch_size} of {cfg.world.image_size}px images"
    )
    for key, value in results.items():
        if key.startswith(("train_", "encode_", "decode_", "ratio_")):
            print(f"  {key:<36} {value:10.2f}")
    return results
