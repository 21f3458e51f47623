"""Configuration: one frozen dataclass per component, composed into one `Config`, with presets.

Sizes are first-class (nanoGPT's habit): a preset names a whole, consistent set of sizes.

| preset | where | budget |
|---|---|---|
| smoke | CI and tests | every notebook in seconds; numbers meaningless, code paths all real |
| tiny  | a laptop CPU (the default) | the whole pipeline within 45 min on 2 cores |
| base  | a workstation or one GPU | hours on CPU, minutes on a GPU |
| paper | documented only | the paper's sizes (1280 wide, 12+24 layers, 21x21 tokens, 10 frames) |

    cfg = make_config("tiny", **{"model.dim": 128, "train.steps": 500})
    cfg = make_config("smoke", model__dim=32)  # "__" works where a dot cannot be typed

An unknown preset or key raises a ValueError listing the valid ones. Each component reads only its
own section (`cfg.world`, `cfg.tokenizer`, ...); `cfg.device` and `cfg.seed` are shared.

Every value is checked by `make_config` (`check_config`): its type comes from the field's annotation
(an int is fine where a float is expected, a bool is not an int, floats must be finite) and its
range from the `RULES` table at the end of each section; rules between fields (`model.dim`
divisible by `model.heads`, ...) are in `CROSS_RULES`. The error names the key, the value and what
is allowed:

    ValueError: model.dim = 0: must be a positive int
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, ClassVar, get_args, get_origin, get_type_hints

# `cfg.device` becomes a torch.device in the device policy; re-exported to sit beside make_config
from nuwa_lab.device import resolve_device as resolve_device
from nuwa_lab.presets import PRESETS, preset_overrides

# ------------------------------------------------------------------ the names the code knows
# Kept here, at the bottom layer, so that make_config can check them before anything runs. The
# attention patterns, causal rules and borders are defined here only (nuwa_lab.attention imports
# them); tests/unit/test_bad_inputs.py checks that each other list equals the registry of the
# module named beside it.
ATTENTION_PATTERNS = ("full", "axial", "block", "nearby")  # nuwa_lab.attention.PATTERNS
CAUSAL_RULES = ("raster", "quadrant")  # nuwa_lab.attention.CAUSAL_RULES
BORDERS = ("truncate", "shift")  # nuwa_lab.attention.BORDERS
TOKENIZER_KINDS = ("vqgan", "vqvae")  # the tokenizers whose codes the model predicts
ENCODER_NORMS = ("layer", "group")  # nuwa_lab.tokenizer.nets.NORMS
CODEBOOK_INITS = ("kmeans++", "random")  # nuwa_lab.tokenizer.quantizer.INITS
REC_LOSSES = ("l1", "l2", "l1+l2")  # nuwa_lab.tokenizer.losses.REC_LOSSES
TASKS = ("t2i", "s2i", "i2i", "ti2i", "t2v", "s2v", "v2v", "tv2v")  # nuwa_lab.world.TASKS
PRETRAIN_TASKS = ("t2i", "v2v", "t2v")  # nuwa_lab.recipes.pretrain.PRETRAIN_TASKS
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")  # world.render.SHAPE_NAMES
COLOURS = (  # nuwa_lab.world.render.PALETTE
    "red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white", "purple", "grey",
)  # fmt: skip
SIZES = ("small", "large")  # nuwa_lab.world.captions.SIZE_WORDS
DIRECTIONS = ("left", "right", "up", "down")  # nuwa_lab.world.motion.DIRECTION_VECTORS
REGIONS = 9  # a scene's 3x3 regions, one object each at most (nuwa_lab.world.sample.REGIONS)
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


# ------------------------------------------------------------------ rules: what a value may be
@dataclass(frozen=True)
class Rule:
    """What a config value may be besides its annotated type: a test and the words for it.

    `words` completes "must be ..."; in it `{a}` stands for the type with its article ("an int",
    "a number") and `{type}` for the type alone. `explain(value)`, when given, says which part of a
    failing value is wrong (e.g. the unknown name in a list).
    """

    test: Callable[[Any], bool]
    words: str
    explain: Callable[[Any], str] | None = None

    def describe(self, hint: Any) -> str:
        noun = {int: "int", float: "number", str: "string", bool: "bool"}.get(hint, "value")
        article = "an" if noun[0] in "aeiou" else "a"
        return self.words.format(type=noun, a=f"{article} {noun}")


POSITIVE = Rule(lambda v: v > 0, "a positive {type}")
NON_NEGATIVE = Rule(lambda v: v >= 0, "a non-negative {type}")
ANY = Rule(lambda v: True, "{a}")  # the annotated type is all there is to check


def at_least(low: int) -> Rule:
    return Rule(lambda v: v >= low, f"{{a}} >= {low}")


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """`low <= v <= high`, with either end excluded when open: "a number in (0, 1]"."""

    def test(v: Any) -> bool:
        return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)

    brackets = ("(" if low_open else "[", ")" if high_open else "]")
    return Rule(test, f"{{a}} in {brackets[0]}{low}, {high}{brackets[1]}")


def one_of(*valid: str) -> Rule:
    return Rule(lambda v: v in valid, "one of " + ", ".join(valid))


def names(*valid: str) -> Rule:
    """A non-empty tuple of distinct names from `valid`."""

    def bad(v: tuple[str, ...]) -> list[str]:
        return [n for n in v if n not in valid] + [n for i, n in enumerate(v) if n in v[:i]]

    return Rule(
        lambda v: bool(v) and not bad(v),
        "a non-empty list of distinct names; choose from " + ", ".join(valid),
        lambda v: f" (unknown or repeated: {_cut(', '.join(map(repr, bad(v))))})" if bad(v) else "",
    )


def triple(low: int, what: str) -> Rule:
    return Rule(lambda v: min(v) >= low, f"{what}, a (t, h, w) triple of ints >= {low}")


def task_rows(
    valid: tuple[str, ...],
    columns: str,
    test: Callable[[tuple], bool],
    whole: Callable[[tuple], bool] = lambda rows: True,
) -> Rule:
    """Rows (task, ...): distinct tasks from `valid`, each row passing `test`, all rows `whole`."""

    def bad(rows: tuple[tuple, ...]) -> list[Any]:
        tasks = [row[0] for row in rows]
        return [
            row
            for i, row in enumerate(rows)
            if row[0] not in valid or row[0] in tasks[:i] or not test(row)
        ]

    return Rule(
        lambda v: not bad(v) and whole(v),
        f"rows {columns}, one per task, tasks from {', '.join(valid)}",
        lambda v: f" (bad rows: {_cut(', '.join(map(repr, bad(v))))})" if bad(v) else "",
    )


POWER_OF_TWO = Rule(lambda v: v >= 1 and v & (v - 1) == 0, "a power of two (1, 2, 4, 8, 16, ...)")


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
class SampleConfig:
    """Sampling: raster order, temperature, top-k, top-p."""

    # tau below the model's own 1.0: on this world the model's spread is mostly error, not
    # variety, so colder samples were measured both more often right and closer to the real ones
    # by lab-FID / FVD at tiny (docs/lab-notes.md has the numbers)
    temperature: float = 0.3
    # (task, tau): tasks sampled at their own temperature instead of `temperature`
    task_temperatures: tuple[tuple[str, float], ...] = ()
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    candidates: int = 1  # samples drawn per condition; > 1 keeps the one the probe ranks first
    batch_size: int = 16
    num_eval: int = 64  # samples generated per evaluation

    RULES: ClassVar[dict[str, Rule]] = {
        "temperature": NON_NEGATIVE,  # 0 = greedy
        "task_temperatures": task_rows(TASKS, "(task, temperature >= 0)", lambda r: r[1] >= 0),
        "top_k": NON_NEGATIVE,  # 0 = off
        "top_p": between(0, 1, low_open=True),  # 1 = off
        "candidates": POSITIVE,
        "batch_size": POSITIVE,
        "num_eval": POSITIVE,
    }

    def temperature_for(self, task: str) -> float:
        """tau of `task`: its row of `task_temperatures`, else `temperature`."""
        return float(dict(self.task_temperatures).get(task, self.temperature))


@dataclass(frozen=True)
class TaskConfig:
    """The eight tasks (nuwa_lab.tasks) and fine-tuning on one (nuwa_lab.recipes.finetune)."""

    # V2V: leading frames given as fixed tokens (1..frames-1). Two, because one frame shows where
    # the object is but not where it goes: from one frame each of the four directions is as likely
    given_frames: int = 2
    edit_given_frames: int = 1  # TV2V: leading frames kept; the new caption steers the rest
    finetune_steps: int = 300  # optimizer steps of one task's fine-tuning from the pretrained model
    finetune_batch_size: int = 16
    finetune_lr: float = 3e-4  # peak lr (a third of pretraining's)
    finetune_warmup: int = 30
    # (task, steps, batch, peak lr): tasks whose fine-tuning replaces the three budgets above,
    # each the smallest budget measured to reach its task's target at tiny (docs/lab-notes.md).
    # T2V and S2V start from the T2I / S2I models and V2V from the T2V model
    # (`nuwa_lab.recipes.finetune.FINETUNE_START`); V2V's misses are videos that turn at a wall in
    # the predicted frames, and training time is what teaches the turn.
    finetune_budgets: tuple[tuple[str, int, int, float], ...] = (
        ("t2i", 1500, 32, 1e-3),
        ("t2v", 2000, 16, 1e-3),
        ("v2v", 4000, 8, 1e-3),
        ("s2i", 1000, 32, 1e-3),
        ("s2v", 400, 16, 1e-3),
    )

    def finetune_budget(self, task: str) -> tuple[int, int, float]:
        """(steps, batch size, peak lr) of fine-tuning `task`."""
        for name, steps, batch, lr in self.finetune_budgets:
            if name == task:
                return int(steps), int(batch), float(lr)
        return self.finetune_steps, self.finetune_batch_size, self.finetune_lr

    finetune_pool: int = 2048  # train items tokenized once and cached; batches are drawn from it
    # V2V batches draw a training video whose object turns at a wall after the given frames this
    # many times as often as one that moves straight (18% of the videos turn; weight 2: 30% of a
    # batch): a small gain on the test split at tiny, none on held-out (docs/lab-notes.md)
    v2v_turning_weight: float = 2.0

    RULES: ClassVar[dict[str, Rule]] = {
        "given_frames": POSITIVE,  # and fewer than world.frames: see CROSS_RULES
        "edit_given_frames": POSITIVE,
        "finetune_steps": POSITIVE,
        "finetune_batch_size": POSITIVE,
        "finetune_lr": POSITIVE,
        "finetune_warmup": NON_NEGATIVE,
        "finetune_budgets": task_rows(
            TASKS,
            "(task, steps > 0, batch size > 0, peak lr > 0)",
            lambda row: min(row[1:]) > 0,
        ),
        "finetune_pool": POSITIVE,
        "v2v_turning_weight": NON_NEGATIVE,
    }


@dataclass(frozen=True)
class PretrainConfig:
    """Multi-task pretraining data (nuwa_lab.recipes.pretrain); the mix is cfg.train.task_mix."""

    pool: int = 8192  # train images and videos tokenized once (cached); batches drawn from them
    val_size: int = 256  # validation images and videos for the per-task validation loss

    RULES: ClassVar[dict[str, Rule]] = {"pool": POSITIVE, "val_size": POSITIVE}


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


def _valid_keys(obj: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            keys += _valid_keys(value, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _coerce(old: Any, new: Any, key: str) -> Any:
    """Lists from YAML / papermill become tuples where the default is a tuple."""
    if isinstance(old, tuple) and isinstance(new, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in new)
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return float(new) if abs(new) < 2**1000 else new  # too large: check_config reports it
    return new


def _set(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    name = parts[0]
    current = getattr(obj, name)
    if len(parts) == 1:
        return replace(obj, **{name: _coerce(current, value, key)})
    return replace(obj, **{name: _set(current, parts[1:], value, key)})


def make_config(preset: str = "tiny", **overrides: Any) -> Config:
    """The config of `preset` with `overrides` applied ("model.dim" or "model__dim" keys).

    Every value is checked (`check_config`): a wrong type or a value out of range is a ValueError
    naming the key, the value and what is allowed.
    """
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    cfg = Config(preset=preset)
    valid = set(_valid_keys(cfg))
    dotted = {k.replace("__", "."): v for k, v in overrides.items()}
    merged = {**preset_overrides(preset), **dotted}
    for key, value in merged.items():
        if key not in valid:
            raise ValueError(
                f"unknown config key {key!r}; valid keys: {', '.join(sorted(valid - {'preset'}))}"
            )
        cfg = _set(cfg, key.split("."), value, key)
    return check_config(cfg)


# Rules between fields: (the key reported, the test, what the key's value must be). Checked once
# every field has passed its own rule; `{model.heads}` in the words is the value of that key.
CROSS_RULES: tuple[tuple[str, Callable[[Config], bool], str], ...] = (
    (
        "model.dim",
        lambda c: c.model.dim % c.model.heads == 0,
        "divisible by model.heads = {model.heads} (each head gets dim / heads channels)",
    ),
    (
        "world.image_size",
        lambda c: c.world.image_size % c.tokenizer.downsample == 0,
        "divisible by tokenizer.downsample = {tokenizer.downsample} (whole tokens per side)",
    ),
    (
        "world.held_out",
        lambda c: all(s in c.world.shapes and k in c.world.colours for s, k in c.world.held_out),
        "held-out pairs (shape, colour) with the shape in world.shapes and the colour in "
        "world.colours",
    ),
    (
        "world.held_out",
        lambda c: all(
            any((s, k) not in c.world.held_out for k in c.world.colours) for s in c.world.shapes
        ),
        "held-out pairs that leave every shape at least one colour in the train split",
    ),
    (
        "tasks.given_frames",
        lambda c: c.tasks.given_frames < c.world.frames,
        "less than world.frames = {world.frames} (V2V generates the frames after the given ones)",
    ),
    (
        "tasks.edit_given_frames",
        lambda c: c.tasks.edit_given_frames < c.world.frames,
        "less than world.frames = {world.frames} (TV2V generates the frames after the kept ones)",
    ),
)


def check_config(cfg: Config) -> Config:
    """`cfg` unchanged when every value is valid, else one ValueError listing each bad key.

    Types come from the annotations (an int is fine for a float; a bool is not an int; floats
    must be finite), ranges from each section's `RULES`, then `CROSS_RULES`.
    """
    problems = list(_field_problems(cfg))
    if not problems:
        sections = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        for key, test, words in CROSS_RULES:
            if not test(cfg):
                value = _lookup(cfg, key)
                problems.append(f"{key} = {_short(value)}: must be {words.format(**sections)}")
    if len(problems) == 1:
        raise ValueError(problems[0])
    if problems:
        raise ValueError(f"{len(problems)} invalid config values:\n  " + "\n  ".join(problems))
    return cfg


def _field_problems(section: Any, prefix: str = "") -> Iterator[str]:
    hints = _type_hints(type(section))
    for f in fields(section):
        key, value = prefix + f.name, getattr(section, f.name)
        if is_dataclass(value):
            yield from _field_problems(value, key + ".")
            continue
        rule, hint = type(section).RULES[f.name], hints[f.name]
        if not has_type(value, hint):
            finite = isinstance(value, float) and not math.isfinite(value)
            yield f"{key} = {_short(value)}: must be {rule.describe(hint)}" + (
                " (nan and inf are not allowed)" if finite else ""
            )
        elif not rule.test(value):
            detail = rule.explain(value) if rule.explain else ""
            yield f"{key} = {_short(value)}: must be {rule.describe(hint)}{detail}"


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def has_type(value: Any, hint: Any) -> bool:
    """Whether `value` is of the annotated type `hint` (int, float, bool, str, tuple[...])."""
    if get_origin(hint) is tuple:
        args = get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(has_type(v, args[0]) for v in value)
        if len(value) != len(args):
            return False
        return all(has_type(v, a) for v, a in zip(value, args, strict=True))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return abs(value) < 2**1000 if isinstance(value, int) else math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _lookup(cfg: Config, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _short(value: Any) -> str:
    """repr(value), cut short: a long value is reported by its length, not echoed."""
    return _cut(repr(value))


def _cut(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def config_hash(*parts: Any, length: int = 12) -> str:
    """A stable short hash of dataclasses / plain values (used to key cached artifacts)."""

    def plain(x: Any) -> Any:
        if is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in fields(x)}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in sorted(x.items())}
        return x

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def as_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config (for metrics.json and run folders)."""
    return dataclasses.asdict(cfg)
