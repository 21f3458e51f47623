"""The presets: the dotted-key overrides that turn the config defaults (= tiny) into each preset.

`nuwa_lab.config.make_config(preset)` applies them; the table of what each preset is for is in
`nuwa_lab.config`'s docstring and the README.
"""

from __future__ import annotations

from typing import Any

PRESETS = ("smoke", "tiny", "base", "paper")


def preset_overrides(preset: str) -> dict[str, Any]:
    """Dotted-key overrides that turn the defaults (= tiny) into each preset."""
    if preset == "tiny":
        return {}
    if preset == "smoke":
        return {
            "world.image_size": 16,
            "world.frames": 2,
            "world.split_sizes": (1000, 64, 64),
            "tokenizer.channels": 16,
            "tokenizer.channel_mult": (1, 1, 1),
            "tokenizer.codebook_size": 32,
            "tokenizer.code_dim": 8,
            "tokenizer.disc_channels": 8,
            "tokenizer.disc_start": 2,
            "tokenizer.seg_codebook_size": 16,
            "tokenizer.steps": 4,
            "tokenizer.seg_steps": 4,
            "tokenizer.batch_size": 4,
            "tokenizer.warmup": 1,
            "tokenizer.eval_samples": 16,
            "probe.channels": 8,
            "probe.steps": 4,
            "probe.video_steps": 4,
            "probe.seg_steps": 4,
            "probe.eval_size": 16,
            "probe.batch_size": 8,
            "model.dim": 32,
            "model.heads": 2,
            "model.enc_layers": 1,
            "model.dec_layers": 1,
            "model.block": (1, 2, 2),
            "model.extent": (1, 1, 1),  # 4x4 token grids
            "train.steps": 4,
            "train.batch_size": 4,
            "train.warmup": 1,
            "train.log_every": 1,
            "train.ckpt_every": 2,
            "sample.batch_size": 2,
            "sample.num_eval": 2,
            "pretrain.pool": 16,
            "pretrain.val_size": 8,
            "tasks.finetune_steps": 2,
            "tasks.finetune_batch_size": 2,
            "tasks.finetune_warmup": 1,
            "tasks.finetune_pool": 8,
            "tasks.finetune_budgets": (),
            "tasks.given_frames": 1,  # 2-frame videos
        }
    if preset == "base":
        return {
            "world.image_size": 64,
            "world.frames": 8,
            "world.max_objects": 2,
            "world.split_sizes": (10_000_000, 20_000, 20_000),
            "text.max_length": 34,  # two objects: up to 33 tokens
            "tokenizer.downsample": 8,
            "tokenizer.channels": 128,
            "tokenizer.channel_mult": (1, 2, 2, 4),
            "tokenizer.res_blocks": 2,
            "tokenizer.codebook_size": 1024,
            "tokenizer.code_dim": 64,
            "tokenizer.disc_start": 10_000,
            "tokenizer.disc_channels": 64,
            "tokenizer.steps": 40_000,
            "tokenizer.seg_steps": 10_000,
            "tokenizer.batch_size": 32,
            "tokenizer.lr": 4.5e-4,
            "probe.channels": 64,
            "probe.steps": 8000,
            "probe.video_steps": 8000,
            "probe.seg_steps": 4000,
            "model.dim": 512,
            "model.heads": 8,
            "model.enc_layers": 6,
            "model.dec_layers": 12,
            "model.extent": (2, 2, 2),
            "train.steps": 100_000,
            "train.batch_size": 64,
            "train.lr": 5e-4,
            "train.warmup": 2000,
        }
    if preset == "paper":
        # NÜWA: 1280 wide, 20 heads, 12 encoder + 24 decoder layers, 336x336 images at 16x
        # compression = 21x21 tokens, 10 frames, codebook 12,288, extents (3,3,3) for video.
        return {
            "world.image_size": 336,
            "world.frames": 10,
            "world.max_objects": 3,
            "text.max_length": 77,
            "tokenizer.downsample": 16,
            "tokenizer.channels": 128,
            "tokenizer.channel_mult": (1, 1, 2, 2, 4),
            "tokenizer.res_blocks": 2,
            "tokenizer.encoder_res_blocks": 2,  # taming-transformers' encoder
            "tokenizer.encoder_norm": "group",
            "tokenizer.codebook_size": 12_288,
            "tokenizer.code_dim": 256,
            "model.dim": 1280,
            "model.heads": 20,
            "model.enc_layers": 12,
            "model.dec_layers": 24,
            "model.extent": (3, 3, 3),
            "train.batch_size": 128,
        }
    raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
