r"""`python -m nuwa_lab plan --preset base`: what one pretraining step costs, computed, not run.

For the user who has the hardware: the model's parameters, the FLOPs of one step of the
pretraining mixture, the activation memory of one sample with and without activation
checkpointing, and the expected step time on one A100 and one H100. Everything comes from the
config and the layer shapes; nothing is built (the `paper` model has ~0.9B parameters), so it runs
in seconds for every preset.

    python -m nuwa_lab plan --preset base
    python -m nuwa_lab plan --preset paper --batch 8 --utilisation 0.3

FLOPs: `nuwa_lab.model.counting.training_flops` per item of each task of `cfg.train.task_mix`
(3x the forward; the forward counts matmuls, 2 per multiply-add, and attention over the (query,
key) pairs the pattern needs). A step of batch B has the mixture's item counts
(`nuwa_lab.recipes.pretrain.task_counts`).

Activation memory of one item, in values saved for the backward pass (times `--bytes`, 2 for bf16
autocast), with n target tokens, m condition tokens, width d, MLP ratio r, codebook K:

| saved for the backward pass | values                     |
|-----------------------------|----------------------------|
| encoder layer               | $(8 + 2r)\,m d$            |
| decoder layer               | $(12 + 2r)\,n d + 2 m d$   |
| head                        | $2 n d + n K$              |

An encoder layer keeps the input and output of its two LayerNorms ($4 m d$), q, k, v and the
attention's output ($4 m d$) and the MLP's hidden layer before and after the GELU ($2 r m d$); a
decoder layer the same over n tokens, plus its cross-attention's LayerNorm input and output, q and
output ($4 n d$) and the k, v it projects from the encoder output ($2 m d$); the head its
LayerNorm's input and output and the logits.

Without checkpointing: $L^{enc}(8 + 2r)md + L^{dec}((12 + 2r)nd + 2md) + 2nd + nK$.
With checkpointing of every block (`torch.utils.checkpoint` per block): the blocks' inputs
$L^{enc} m d + L^{dec} n d$, the encoder output $m d$ (every decoder layer reads it), the head's
$2 n d + n K$, plus one block's activations recomputed during its backward pass,
$\max((8 + 2r) m d, (12 + 2r) n d + 2 m d)$. Assumed: fused attention kernels (SDPA's flash /
memory-efficient, compiled FlexAttention), which keep q, k, v, the output and a log-sum-exp per
query but not the attention weights; a path that stores the weights (the dense oracle, the CPU
paths of this library) adds heads x (pairs of the pattern) values per layer, shown apart.
Not counted: dropout masks (dropout is 0), LayerNorm statistics and the log-sum-exps (per token,
not per channel), the embeddings' inputs (ids), the allocator's slack.

Step time: FLOPs per step / (peak x utilisation), at the dense bf16 peak of an A100 (312 TFLOP/s)
and an H100 SXM (989 TFLOP/s) and a model-FLOP utilisation of 40% by default (large dense
transformers reach 40-55% on these GPUs; small grids and the gathers of sparse patterns less).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from nuwa_lab.attention import AttentionPattern
from nuwa_lab.config import Config, make_config
from nuwa_lab.model.counting import (
    attention_pairs,
    count_parameters,
    paper_parameter_count,
    training_flops,
)
from nuwa_lab.model.sizes import model_sizes
from nuwa_lab.presets import PRESETS, preset_overrides
from nuwa_lab.recipes.pretrain import task_counts

# (name, dense bf16 peak in FLOP/s)
GPUS = (("A100", 312e12), ("H100 SXM", 989e12))
UTILISATION = 0.4  # model FLOPs / peak FLOPs, assumed
OPTIMIZER_BYTES_PER_PARAMETER = 16  # fp32 weights, gradients and AdamW's two moments


@dataclass(frozen=True)
class TaskCost:
    """One item of one pretraining task."""

    task: str
    condition_kind: str
    condition_grid: tuple[int, int, int]
    target_grid: tuple[int, int, int]
    train_flops: int  # forward + backward
    activations: int  # values saved for the backward pass, no checkpointing
    activations_checkpointed: int  # with every block checkpointed
    attention_weights: int  # what storing the attention weights would add


@dataclass(frozen=True)
class Plan:
    preset: str
    parameters: int
    batch: int
    counts: dict[str, int]  # items per task in a step
    tasks: dict[str, TaskCost]
    bytes_per_value: int
    utilisation: float
    steps: int  # the training steps of the preset (0 when it names none, as `paper`)

    @property
    def step_flops(self) -> int:
        return sum(n * self.tasks[t].train_flops for t, n in self.counts.items())

    def step_seconds(self, peak: float) -> float:
        return self.step_flops / (peak * self.utilisation)


def task_grids(cfg: Config) -> dict[str, tuple[str, tuple[int, int, int], tuple[int, int, int]]]:
    """task -> (condition kind, condition grid, target grid) of the pretraining tasks."""
    side = cfg.world.image_size // cfg.tokenizer.downsample
    text, image, video = (
        (1, 1, cfg.text.max_length),
        (1, side, side),
        (cfg.world.frames, side, side),
    )
    return {
        "t2i": ("text", text, image),
        "t2v": ("text", text, video),
        "v2v": ("none", (1, 1, 1), video),
    }


def activation_values(cfg: Config, n: int, m: int, codebook: int, *, checkpointed: bool) -> int:
    """Values one item saves for the backward pass (the table in the module docstring)."""
    c = cfg.model
    d, r = c.dim, c.mlp_ratio
    encoder_layer = (8 + 2 * r) * m * d
    decoder_layer = (12 + 2 * r) * n * d + 2 * m * d
    head = 2 * n * d + n * codebook
    if not checkpointed:
        return c.enc_layers * encoder_layer + c.dec_layers * decoder_layer + head
    inputs = c.enc_layers * m * d + c.dec_layers * n * d + m * d
    return inputs + head + max(encoder_layer if c.enc_layers else 0, decoder_layer)


def stored_weights(cfg: Config, kind: str, condition_grid, target_grid) -> int:
    """heads x (query, key) pairs of every attention layer: the weights, were they stored."""
    c = cfg.model
    common = dict(extent=c.extent, block=c.block, causal_rule=c.causal_rule, border=c.border)
    visual = kind in ("image_sketch", "video_sketch")
    enc = AttentionPattern(pattern=c.attention if visual else "full", **common)
    dec = AttentionPattern(pattern=c.attention, causal=True, **common)
    cross = AttentionPattern(pattern=c.cross_attention if visual else "full", **common)
    pairs = c.enc_layers * attention_pairs(enc, condition_grid, condition_grid) + c.dec_layers * (
        attention_pairs(dec, target_grid, target_grid)
        + attention_pairs(cross, target_grid, condition_grid)
    )
    return c.heads * pairs


def task_cost(cfg: Config, task: str, codebook: int) -> TaskCost:
    kind, cond, target = task_grids(cfg)[task]
    n, m = target[0] * target[1] * target[2], cond[0] * cond[1] * cond[2]
    flops = training_flops(
        cfg,
        condition_kind=kind,
        condition_grid=cond,
        target_grid=target,
        codebook_size=codebook,
    )
    return TaskCost(
        task=task,
        condition_kind=kind,
        condition_grid=cond,
        target_grid=target,
        train_flops=flops,
        activations=activation_values(cfg, n, m, codebook, checkpointed=False),
        activations_checkpointed=activation_values(cfg, n, m, codebook, checkpointed=True),
        attention_weights=stored_weights(cfg, kind, cond, target),
    )


def make_plan(
    preset: str,
    *,
    batch: int | None = None,
    utilisation: float = UTILISATION,
    bytes_per_value: int = 2,
    **overrides,
) -> Plan:
    """The plan of `preset` (config `overrides` as in `make_config`); nothing is built."""
    cfg = make_config(preset, **overrides)
    if preset == "paper" and not overrides:  # a CLIP-sized caption vocabulary, as the paper's
        parameters = paper_parameter_count()["total"]
    else:
        parameters = count_parameters(cfg.model, **model_sizes(cfg))["total"]
    batch = cfg.train.batch_size if batch is None else batch
    counts = task_counts(cfg.train.task_mix, batch)
    codebook = cfg.tokenizer.codebook_size
    return Plan(
        preset=preset,
        parameters=parameters,
        batch=batch,
        counts=counts,
        tasks={t: task_cost(cfg, t, codebook) for t in counts},
        bytes_per_value=bytes_per_value,
        utilisation=utilisation,
        steps=cfg.train.steps if "train.steps" in preset_overrides(preset) | overrides else 0,
    )


# ---- printing ----------------------------------------------------------------------------------

GPU_MEMORY_BYTES = 80e9  # an A100 80GB or an H100: how many items fit beside the weights


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def _time(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"


def format_plan(plan: Plan) -> str:
    """The plan as the text `python -m nuwa_lab plan` prints."""
    b, mix = plan.bytes_per_value, ", ".join(f"{t} {n}" for t, n in plan.counts.items())
    state = plan.parameters * OPTIMIZER_BYTES_PER_PARAMETER
    lines = [
        f"plan for preset {plan.preset!r} (computed from the config; nothing is built or run)",
        f"parameters      {plan.parameters:,} ({plan.parameters / 1e6:.1f}M)",
        f"  + training    {_size(state)} of fp32 weights, gradients and AdamW moments (16 B each)",
        f"training step   batch {plan.batch} ({mix}): {plan.step_flops:.3e} FLOPs",
        "",
        f"per item   condition -> target             train FLOPs  activations ({b} B per value)",
        "                                                       no ckpt    ckpt     +weights",
    ]
    for t in plan.tasks.values():
        grids = f"{t.condition_kind} {t.condition_grid} -> {t.target_grid}"
        lines.append(
            f"  {t.task:<8} {grids:<31} {t.train_flops:.3e}    "
            f"{_size(t.activations * b):<10} {_size(t.activations_checkpointed * b):<8} "
            f"{_size(t.attention_weights * b)}"
        )
    per_step = sum(n * plan.tasks[t].activations for t, n in plan.counts.items())
    ckpt_step = sum(n * plan.tasks[t].activations_checkpointed for t, n in plan.counts.items())
    largest = max(plan.tasks.values(), key=lambda t: t.activations)
    room = GPU_MEMORY_BYTES - state
    fit = [int(room // (v * b)) if room > 0 else 0 for v in
           (largest.activations, largest.activations_checkpointed)]  # fmt: skip
    lines += [
        f"  {'the step':<40} {'':<11}  {_size(per_step * b):<10} {_size(ckpt_step * b)}",
        "  (+weights: what storing the attention weights adds; fused kernels do not)",
        f"  {largest.task} items that fit on an 80 GB GPU beside the training state: "
        f"{fit[0]}, {fit[1]} with checkpointing",
        "",
        f"step time at {plan.utilisation:.0%} of the dense bf16 peak, the whole batch on one GPU",
    ]
    for name, peak in GPUS:
        seconds = plan.step_seconds(peak)
        total = f", {plan.steps:,} steps {seconds * plan.steps / 3600:.1f} h" if plan.steps else ""
        lines.append(
            f"  {name:<9} {peak / 1e12:>4.0f} TFLOP/s  {_time(seconds):>9} per step, "
            f"1,000 steps {seconds * 1000 / 3600:.2f} h{total}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="base", choices=PRESETS, help="(default: base)")
    parser.add_argument("--batch", type=int, help="items per step (default: train.batch_size)")
    parser.add_argument(
        "--utilisation",
        type=float,
        default=UTILISATION,
        help=f"model FLOPs / peak FLOPs assumed for the step time (default: {UTILISATION})",
    )
    parser.add_argument(
        "--bytes", type=int, default=2, help="bytes per saved activation (default: 2, bf16)"
    )


def run(args: argparse.Namespace) -> int:
    if args.batch is not None and args.batch < 1:
        raise SystemExit(f"--batch must be >= 1, got {args.batch}")
    if not 0 < args.utilisation <= 1:
        raise SystemExit(f"--utilisation must be in (0, 1], got {args.utilisation}")
    plan = make_plan(
        args.preset, batch=args.batch, utilisation=args.utilisation, bytes_per_value=args.bytes
    )
    print(format_plan(plan))
    return 0
