"""The config sections: one frozen dataclass per component, composed into one `Config`.

Each field has a default (the tiny preset) and a rule in its section's `RULES` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from nuwa_lab.config.choices import (
    ATTENTION_PATTERNS,
    BORDERS,
    CAUSAL_RULES,
    CODEBOOK_INITS,
    COLOURS,
    DEVICE,
    DIRECTIONS,
    ENCODER_NORMS,
    PRETRAIN_TASKS,
    REC_LOSSES,
    REGIONS,
    SHAPES,
    SIZES,
    TOKENIZER_KINDS,
)
from nuwa_lab.config.rules import (
    ANY,
    NON_NEGATIVE,
    POSITIVE,
    POWER_OF_TWO,
    Rule,
    at_least,
    between,
    names,
    one_of,
    task_rows,
    triple,
)
from nuwa_lab.config.task_sections import PretrainConfig, SampleConfig, TaskConfig
from nuwa_lab.presets import PRESETS


@dataclass(frozen=True)
class WorldConfig:
    """The Shapes World: what scenes contain and how they are split."""

    image_size: int = 32  # pixels per side
    frames: int = 4  # frames per video
    max_objects: int = 1  # objects per scene: 1..max_objects
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan")
    sizes: tuple[str, ...] = ("small", "large")
    directions: tuple[str, ...] = ("left", "right", "up", "down")
    # pixels moved per frame: 4 = one token of the f4 tokenizer, so frame t+1 is frame t shifted
    # by a token (at 2 px, half a token, the fine-tuned T2V and V2V read the direction right 53%
    # and 52% of the time; the probe reads it in true videos 100%)
    speed: float = 4.0
    # (shape, colour) pairs that never appear in the train split: compositional generalisation.
    held_out: tuple[tuple[str, str], ...] = (
        ("circle", "red"),
        ("square", "green"),
        ("triangle", "blue"),
        ("diamond", "yellow"),
    )
    split_sizes: tuple[int, int, int] = (1_000_000, 10_000, 10_000)  # train, val, test seeds
    # what the recipes train on: "shapes" (this world) or "folder:PATH", a folder of captioned
    # images and videos (nuwa_lab.world.source; the fields above then set only image_size, frames)
    source: str = "shapes"
    on_error: str = "raise"  # a folder's bad entries: raise (naming the line) | skip (a warning)

    # what each value may be (the type is the annotation's); checked by make_config
    RULES: ClassVar[dict[str, Rule]] = {
        "image_size": at_least(12),
        "frames": POSITIVE,
        "max_objects": between(1, REGIONS),
        "shapes": names(*SHAPES),
        "colours": names(*COLOURS),
        "sizes": names(*SIZES),
        "directions": names(*DIRECTIONS),
        "speed": NON_NEGATIVE,  # 0: objects stand still
        # pairs of world.shapes x world.colours: see CROSS_RULES
        "held_out": Rule(lambda v: True, "(shape, colour) pairs"),
        "split_sizes": Rule(lambda v: min(v) > 0, "(train, val, test) seed counts, positive ints"),
        "source": Rule(
            lambda v: v == "shapes" or (v.startswith("folder:") and bool(v[7:].strip())),
            '"shapes" or "folder:" followed by a path (e.g. "folder:data/digits")',
        ),
        "on_error": one_of("raise", "skip"),
    }


@dataclass(frozen=True)
class TextConfig:
    """Word-level caption tokenizer."""

    max_length: int = 18  # tokens per caption, <bos> and <eos> included (one object needs 17)

    RULES: ClassVar[dict[str, Rule]] = {"max_length": at_least(3)}  # <bos>, a word, <eos>


@dataclass(frozen=True)
class TokenizerConfig:
    """VQ-GAN / VQ-VAE / VQ-GAN-Seg (NÜWA §3.1, taming-transformers); see nuwa_lab.tokenizer."""

    kind: str = "vqgan"  # the artifact later notebooks load: vqgan | vqvae
    downsample: int = 4  # f, image side / token grid side (a power of two: 4, 8, ...)
    channels: int = 16  # width of the first conv stage
    # one multiplier per stage; stages = log2(downsample) + 1 (a short tuple repeats its last entry)
    channel_mult: tuple[int, ...] = (1, 2, 4)
    res_blocks: int = 1  # residual blocks per decoder stage
    # the encoder is local (nuwa_lab.tokenizer.nets): per-position LayerNorm, no residual blocks
    # before the middle one, so background patches get one code, not one per scene
    encoder_norm: str = "layer"  # layer (local) | group (taming-transformers: whole-image stats)
    encoder_res_blocks: int = 0  # residual blocks per encoder stage (taming: = res_blocks)
    codebook_size: int = 256  # K, the number of codes
    code_dim: int = 32  # d_z, the width of a code
    beta: float = 0.25  # commitment weight (on the encoder term)
    ema: bool = True  # EMA codebook updates instead of the codebook loss
    ema_decay: float = 0.99  # gamma
    init: str = "kmeans++"  # data-dependent codebook init from the first batch: kmeans++ | random
    dead_code_steps: int = 20  # restart a code left unused for this many training steps (0 = off)
    rec_loss: str = "l2"  # l1 | l2 | l1+l2 (L2 learns flat colours and edges fastest)
    perceptual_weight: float = 0.1  # w_P; 0 for VQ-VAE
    # L_P's network (nuwa_lab.recipes.tokenizers.PERCEPTUALS): lpips (the lpips package; a random
    # AlexNet without cached ImageNet weights) | probe (the lab's trained image probe, no download)
    perceptual: str = "lpips"
    gan_weight: float = 0.1  # w_G, times the adaptive weight lambda; 0 for VQ-VAE
    disc_start: int = 500  # step at which the discriminator loss switches on
    disc_channels: int = 32
    disc_layers: int = 2  # stride-2 layers of the PatchGAN discriminator
    seg_codebook_size: int = 64  # VQ-GAN-Seg codebook
    seg_steps: int = 300  # VQ-GAN-Seg training steps (class maps are easier than pixels)
    # VQ-GAN / VQ-VAE training steps and peak lr. Measured at tiny (512 held-out images): the
    # probe reads the shape of 73% of reconstructions right after 1,000 steps at lr 1e-3 (small
    # squares and diamonds come back round), 94% after 2,000, 98% after 2,000 at lr 2e-3 (3e-3: 92%)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 100  # linear warm-up steps, then cosine (nuwa_lab.train.loop)
    seed: int = 0  # training seed: tokenizers are shared instruments, not per-experiment
    eval_samples: int = 512  # validation images scored when an artifact is trained

    RULES: ClassVar[dict[str, Rule]] = {
        "kind": one_of(*TOKENIZER_KINDS),
        "downsample": POWER_OF_TWO,
        "channels": POSITIVE,
        "channel_mult": Rule(
            lambda v: bool(v) and min(v) > 0, "a non-empty list of positive ints (one per stage)"
        ),
        "res_blocks": NON_NEGATIVE,
        "encoder_norm": one_of(*ENCODER_NORMS),
        "encoder_res_blocks": NON_NEGATIVE,
        "codebook_size": POSITIVE,
        "code_dim": POSITIVE,
        "beta": NON_NEGATIVE,
        "ema": ANY,
        "ema_decay": between(0, 1, high_open=True),
        "init": one_of(*CODEBOOK_INITS),
        "dead_code_steps": NON_NEGATIVE,  # 0 = off
        "rec_loss": one_of(*REC_LOSSES),
        "perceptual_weight": NON_NEGATIVE,
        "perceptual": one_of("lpips", "probe"),
        "gan_weight": NON_NEGATIVE,
        "disc_start": NON_NEGATIVE,
        "disc_channels": POSITIVE,
        "disc_layers": POSITIVE,
        "seg_codebook_size": POSITIVE,
        "seg_steps": POSITIVE,
        "steps": POSITIVE,
        "batch_size": POSITIVE,
        "lr": POSITIVE,
        "warmup": NON_NEGATIVE,
        "seed": NON_NEGATIVE,
        "eval_samples": POSITIVE,
    }


@dataclass(frozen=True)
class ProbeConfig:
    """The probe that reads attributes back, and the segmenter (the lab's CLIPSIM / Detected PA)."""

    channels: int = 16  # width of the first conv stage (probe features: 8 * channels)
    steps: int = 1000  # image probe optimizer steps
    video_steps: int = 1500  # video probe optimizer steps (direction needs the longest)
    seg_steps: int = 400  # segmenter optimizer steps
    batch_size: int = 64
    lr: float = 2e-3
    noise: float = 0.05  # augmentation: per-sample Gaussian noise std ~ U(0, noise)
    blur: float = 0.6  # augmentation: 3x3 Gaussian blur sigma ~ U(0, blur) on half the samples
    eval_size: int = 1000  # test / held-out samples scored after training
    seed: int = 0  # the probes are instruments: independent of the experiment seed

    RULES: ClassVar[dict[str, Rule]] = {
        "channels": POSITIVE,
        "steps": POSITIVE,
        "video_steps": POSITIVE,
        "seg_steps": POSITIVE,
        "batch_size": POSITIVE,
        "lr": POSITIVE,
        "noise": NON_NEGATIVE,
        "blur": NON_NEGATIVE,
        "eval_size": POSITIVE,
        "seed": NON_NEGATIVE,
    }


@dataclass(frozen=True)
class ModelConfig:
    """The NÜWA 3D encoder-decoder (NÜWA §3.2)."""

    dim: int = 128  # d, the model width
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    attention: str = "nearby"  # self-attention pattern: full, axial, block, nearby
    cross_attention: str = "nearby"  # to visual conditions; text conditions are always full
    # nearby half-widths (e^t, e^h, e^w): one frame back, and 3 tokens across so that a token of
    # the 8x8 tiny grid can see whether the object has been started (T2I at tiny, fine-tuned,
    # temperature 0.7: 89% of test captions drawn with every attribute right)
    extent: tuple[int, int, int] = (1, 3, 3)
    block: tuple[int, int, int] = (1, 4, 4)  # block sizes (b^t, b^h, b^w)
    causal_rule: str = "raster"  # raster | quadrant
    border: str = "truncate"  # truncate | shift

    RULES: ClassVar[dict[str, Rule]] = {
        "dim": POSITIVE,  # and divisible by heads: see CROSS_RULES
        "heads": POSITIVE,
        "enc_layers": POSITIVE,
        "dec_layers": POSITIVE,
        "mlp_ratio": POSITIVE,
        "dropout": between(0, 1, high_open=True),
        "attention": one_of(*ATTENTION_PATTERNS),
        "cross_attention": one_of(*ATTENTION_PATTERNS),
        "extent": triple(0, "the nearby radii (e^t, e^h, e^w)"),
        "block": triple(1, "the block sizes (b^t, b^h, b^w)"),
        "causal_rule": one_of(*CAUSAL_RULES),
        "border": one_of(*BORDERS),
    }


@dataclass(frozen=True)
class TrainConfig:
    """The shared training loop (nuwa_lab.train.loop): schedule, optimizer defaults, checkpoints."""

    steps: int = 1500  # S, optimizer steps; the cosine schedule spans them
    batch_size: int = 32  # the global batch (split evenly over data-parallel ranks)
    lr: float = 1e-3  # eta_0, peak learning rate (make_adamw's default)
    warmup: int = 100  # W, linear warm-up steps (0 = none)
    min_lr_ratio: float = 0.1  # rho, the cosine ends at rho * eta_0 (1.0 = constant after warm-up)
    weight_decay: float = 0.01  # AdamW decay on matrices (ndim >= 2) only
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW (beta_1, beta_2)
    grad_clip: float = 1.0  # c, max global gradient norm per optimizer (0 = off)
    amp: bool = True  # bf16 autocast on CUDA (always fp32 on the CPU)
    log_every: int = 50  # progress bar refresh
    ckpt_every: int = 500  # checkpoint interval (0 = only at the end)
    task_mix: tuple[tuple[str, float], ...] = (("t2i", 1.0), ("v2v", 1.0), ("t2v", 1.0))

    RULES: ClassVar[dict[str, Rule]] = {
        "steps": POSITIVE,
        "batch_size": POSITIVE,
        "lr": POSITIVE,
        "warmup": NON_NEGATIVE,  # 0 = none
        "min_lr_ratio": between(0, 1),
        "weight_decay": NON_NEGATIVE,
        "betas": Rule(lambda v: all(0 <= b < 1 for b in v), "(beta_1, beta_2), each in [0, 1)"),
        "grad_clip": NON_NEGATIVE,  # 0 = off
        "amp": ANY,
        "log_every": POSITIVE,
        "ckpt_every": NON_NEGATIVE,  # 0 = only at the end
        "task_mix": task_rows(
            PRETRAIN_TASKS,
            "(task, ratio >= 0) with a positive sum",
            lambda row: row[1] >= 0,
            lambda rows: sum(row[1] for row in rows) > 0,
        ),
    }


@dataclass(frozen=True)
class Config:
    preset: str = "tiny"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    world: WorldConfig = field(default_factory=WorldConfig)
    text: TextConfig = field(default_factory=TextConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    tasks: TaskConfig = field(default_factory=TaskConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    RULES: ClassVar[dict[str, Rule]] = {
        "preset": one_of(*PRESETS),
        "seed": NON_NEGATIVE,
        "device": Rule(lambda v: DEVICE.fullmatch(v) is not None, "auto, cpu, cuda or cuda:N"),
    }
