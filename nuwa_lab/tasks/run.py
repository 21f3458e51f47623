r"""Running a task: raw inputs -> condition $C$ and fixed-token grid $F$ -> the sampler -> pixels.

`run_task(name, model, inputs, tokenizers=Tokenizers(vqgan, text, seg))` turns the raw inputs of a
task (a batch of `nuwa_lab.world.TaskDataset` items, see `spec.TaskSpec.inputs`) into tensors,
calls `nuwa_lab.model.sample.sample` and decodes the codes back to pixels.

From pixel regions to the token grid (the rule of I2I's visible region and TI2I's edit region): the
VQ-GAN turns each f x f pixel patch into one token, so token (i, j) *covers* the pixels
[i f, (i + 1) f) x [j f, (j + 1) f). A token is fixed when its whole patch lies in the given region:

$$ F = \{(i, j) : P_{ij} \subseteq R\}, \qquad R = \text{visible (I2I)}, \ \ R = \overline{E}
\text{ (TI2I, outside the edit region } E) $$

so a token is regenerated as soon as one pixel of its patch is hidden or edited. For I2I the hidden
pixels are painted with the background colour *before* encoding, so nothing of the hidden region
leaks into the given tokens through the encoder's receptive field (which is wider than one patch).
For V2V / TV2V every token of the first g frames is fixed; frames are encoded one by one, so later
frames cannot leak either. Fixed codes come back unchanged (the sampler's guarantee); the decoded
pixels of the given region may still differ slightly from the input: the VQ-GAN decoder mixes
neighbouring tokens, and a fixed token is a quantised code, not the pixels.

I2I "context" variant (`context=True`): NÜWA decodes in raster order, so a hidden token can only see
the fixed tokens *before* it (hiding the top half leaves the model blind). The variant also gives
the visible tokens to the encoder, as an image grid (1, h, w) with hidden tokens set to a mask code
K (the codebook size): the decoder's rescaled cross-attention then sees the visible tokens all
around, including those after it in raster order. This needs a model whose encoder reads image
codes: `nuwa_lab.recipes.finetune.finetuned_model("i2i", cfg, context=True)` (a fine-tuned copy
whose sketch embedding table holds the K + 1 image codes; see nuwa_lab.recipes.finetune).

Axis letters: b batch, t h w token grid, H W pixels, f downsampling factor, K codebook size.

| symbol | code |
|---|---|
| $C$ | `TaskOutput.condition` |
| $F$ | `TaskOutput.fixed` bool (b, [t,] h, w) |
| $\bar y_F$ (given codes) | `TaskOutput.given_tokens` (0 where not fixed) |
| $P_{ij} \subseteq R$ | `tokens_inside(R, f)` |
| mask code | `mask_code(model)` = K |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nuwa_lab.model import Condition, Nuwa
from nuwa_lab.model.sample import sample
from nuwa_lab.tasks.spec import TaskSpec, get_task
from nuwa_lab.tokenizer import VQGANSeg, VQModel
from nuwa_lab.world import TextTokenizer, collate
from nuwa_lab.world.render import BACKGROUND


@dataclass(frozen=True)
class Tokenizers:
    """The tokenizers a task reads: the visual codes the model predicts, captions, sketches."""

    visual: VQModel  # VQ-GAN (or VQ-VAE): pixels <-> the model's codes
    text: TextTokenizer | None = None  # caption tasks (T2I, T2V, TI2I, TV2V)
    sketch: VQGANSeg | None = None  # sketch tasks (S2I, S2V)


SAMPLING_KEYS = (
    "temperature",
    "top_k",
    "top_p",
    "generator",
    "use_cache",
    "candidates",
    "score_fn",
    "batch_size",
    "progress",
)

INPUT_DOC = {
    "caption": "caption: list of b strings",
    "new_caption": "new_caption: list of b strings (the caption of the edited scene)",
    "sketch": "sketch: int64 class map (b, H, W) for s2i or (b, t, H, W) for s2v",
    "pixels": "pixels: float in [0, 1], (b, 3, H, W) for images or (b, t, 3, H, W) for videos",
    "target": "target: float in [0, 1], the same shape as pixels",
    "visible": "visible: bool (b, H, W), True where the image is given",
    "edit_region": "edit_region: bool (b, H, W), True where the edit may change pixels",
    "given_frames": "given_frames: int or list of b ints, leading frames given (1..t-1)",
}


@dataclass
class TaskOutput:
    """What `run_task` produced: decoded pixels, the codes, and what was given."""

    task: str
    pixels: Tensor  # (b, 3, H, W) or (b, t, 3, H, W) in [0, 1]
    tokens: Tensor  # (b, h, w) or (b, t, h, w)
    fixed: Tensor  # bool, same shape as tokens: True where the code was given
    given_tokens: Tensor  # the given codes (0 where not fixed)
    condition: Condition
    downsample: int

    @property
    def fixed_pixels(self) -> Tensor:
        """`fixed` upsampled to pixels (b, [t,] H, W): each token covers an f x f patch."""
        f = self.downsample
        return self.fixed.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)


@dataclass
class TaskTensors:
    """A task's model-side tensors: the condition, the fixed grid, and (for training) targets."""

    condition: Condition
    grid: tuple[int, ...]  # (h, w) or (t, h, w)
    fixed: Tensor  # bool (b, *grid)
    given_tokens: Tensor  # long (b, *grid), 0 where not fixed
    target_tokens: Tensor | None = None  # long (b, *grid): given codes where fixed


def tokens_inside(region: Tensor, downsample: int) -> Tensor:
    """bool (b, H, W) pixels -> bool (b, H/f, W/f): True where the token's whole patch is inside."""
    if region.dtype != torch.bool or region.dim() != 3:
        raise ValueError(
            f"a region must be bool (b, H, W), got {region.dtype} {tuple(region.shape)}"
        )
    f = downsample
    if region.shape[-1] % f or region.shape[-2] % f:
        raise ValueError(f"region {tuple(region.shape[-2:])} does not split into {f}x{f} patches")
    # min-pool = -max_pool(-x): 1 only when every pixel of the patch is in the region
    inside = -F.max_pool2d(-region.float()[:, None], kernel_size=f, stride=f)
    return inside[:, 0] > 0.5


def mask_code(model: Nuwa) -> int:
    """The code of a hidden token in the I2I context variant's encoder input (= K)."""
    return int(model.codebook_size)


def has_visible_context(model: Nuwa) -> bool:
    """Whether `model`'s encoder reads image codes plus the mask code (the I2I context variant)."""
    table = model.condition_embedding.sketch.num_embeddings
    return table == model.codebook_size + 1


def _batch_of(inputs: Mapping[str, Any], spec: TaskSpec) -> int:
    first = inputs[spec.inputs[0]]
    if isinstance(first, str):
        raise ValueError(f"{spec.inputs[0]} must be a list of strings (one per sample), got a str")
    return len(first)


def check_inputs(spec: TaskSpec, inputs: Any) -> dict[str, Any]:
    """The inputs as a dict, validated against what `spec` needs (clear errors otherwise)."""
    if isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], Mapping):
        inputs = collate(list(inputs))
    expected = "; ".join(INPUT_DOC[k] for k in spec.inputs)
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"task {spec.name!r} takes a dict of inputs ({expected}); got {type(inputs).__name__}"
        )
    missing = [k for k in spec.inputs if k not in inputs]
    if missing:
        raise ValueError(
            f"task {spec.name!r} ({spec.title}) needs inputs {', '.join(spec.inputs)} "
            f"({expected}); missing: {', '.join(missing)}"
        )
    inputs = dict(inputs)
    b = _batch_of(inputs, spec)
    for key in spec.inputs:
        inputs[key] = _check(spec, key, inputs[key], b)
    return inputs


def _check(spec: TaskSpec, key: str, value: Any, b: int) -> Any:
    hint = f"task {spec.name!r} ({spec.title}) expects {INPUT_DOC[key]}"
    if key in ("caption", "new_caption"):
        if isinstance(value, str) or not all(isinstance(c, str) for c in value):
            raise ValueError(f"{hint}; got {type(value).__name__}")
        value = list(value)
    elif key == "given_frames":
        value = [int(value)] * b if isinstance(value, int) else [int(v) for v in value]
    elif not isinstance(value, Tensor):
        raise ValueError(f"{hint}; got {type(value).__name__}")
    else:
        image_dims = {"sketch": 3, "pixels": 4, "target": 4, "visible": 3, "edit_region": 3}[key]
        dims = image_dims + int(spec.video and key in ("sketch", "pixels", "target"))
        dtype_ok = {
            "sketch": not value.is_floating_point() and value.dtype != torch.bool,
            "pixels": value.is_floating_point(),
            "target": value.is_floating_point(),
            "visible": value.dtype == torch.bool,
            "edit_region": value.dtype == torch.bool,
        }[key]
        if value.dim() != dims or not dtype_ok:
            other = f"; for {'images' if spec.video else 'videos'} use {spec.pair}"
            shape_note = other if value.dim() in (dims - 1, dims + 1) else ""
            raise ValueError(f"{hint}; got {value.dtype} {tuple(value.shape)}{shape_note}")
        if key in ("pixels", "target") and value.shape[-3] != 3:
            raise ValueError(f"{hint}; got {tuple(value.shape)} (3 colour channels expected)")
    if len(value) != b:
        raise ValueError(f"{key} holds {len(value)} samples but the batch has {b}; {hint}")
    return value


def task_tensors(
    name: str | TaskSpec,
    model: Nuwa,
    inputs: Any,
    *,
    tokenizers: Tokenizers,
    context: bool = False,
    with_target: bool = False,
    grid: tuple[int, ...] | None = None,
) -> TaskTensors:
    """Condition, fixed grid and given codes of a batch of raw inputs (and targets when asked)."""
    spec = get_task(name)
    inputs = check_inputs(spec, inputs)
    if context and spec.name != "i2i":
        raise ValueError(
            f"context=True is the image completion variant; task {spec.name!r} has none"
        )
    if context and not has_visible_context(model):
        raise ValueError(
            "context=True needs a model whose encoder reads image codes + a mask code; get it with "
            "nuwa_lab.recipes.finetune.finetuned_model('i2i', cfg, context=True)"
        )
    device = next(model.parameters()).device
    b = _batch_of(inputs, spec)
    tokenizer = tokenizers.visual
    f = tokenizer.downsample
    grid = tuple(grid) if grid is not None else _default_grid(spec, model, inputs, f)
    # everything is built on the model's device, whatever device the raw inputs are on
    fixed = torch.zeros((b, *grid), dtype=torch.bool, device=device)
    given = torch.zeros((b, *grid), dtype=torch.long, device=device)
    if spec.fixed == "visible":
        visible, pixels = inputs["visible"], inputs["pixels"]
        painted = torch.where(visible.to(pixels.device)[:, None], pixels, _background(pixels))
        fixed = tokens_inside(visible.to(device), f)
        given = _encode(tokenizer, painted, device)
    elif spec.fixed == "outside_edit":
        fixed = tokens_inside(~inputs["edit_region"].to(device), f)
        given = _encode(tokenizer, inputs["pixels"], device)
    elif spec.fixed == "first_frames":
        frames, counts = inputs["pixels"].shape[1], inputs["given_frames"]
        for i, g in enumerate(counts):
            if not 1 <= g < frames:
                raise ValueError(f"given_frames={g} must be in 1..{frames - 1} for {frames} frames")
            fixed[i, :g] = True
        # frames are encoded one by one, so later frames never leak into the given codes
        given[:, : max(counts)] = _encode(tokenizer, inputs["pixels"][:, : max(counts)], device)
    if tuple(fixed.shape[1:]) != grid:
        raise ValueError(f"the inputs give a token grid {tuple(fixed.shape[1:])}, not {grid}")
    given = torch.where(fixed, given, 0)
    condition = _condition(spec, inputs, b, tokenizers, context, given, fixed, model)
    target = None
    if with_target:
        target = torch.where(fixed, given, _encode(tokenizer, inputs[spec.target], device))
    return TaskTensors(condition.to(device), grid, fixed, given, target)


def _default_grid(spec: TaskSpec, model: Nuwa, inputs: dict, f: int) -> tuple[int, ...]:
    for key in ("pixels", "sketch"):
        if key in inputs:
            h, w = inputs[key].shape[-2:]
            frames = (inputs[key].shape[1],) if spec.video else ()
            return (*frames, h // f, w // f)
    t, h, w = model.max_grid  # text conditions: the model's own grid (world frames, side, side)
    return (t, h, w) if spec.video else (h, w)


def _background(pixels: Tensor) -> Tensor:
    colour = torch.tensor(BACKGROUND, dtype=pixels.dtype, device=pixels.device)
    return colour.view(1, 3, 1, 1).expand_as(pixels)


@torch.no_grad()
def _encode(tokenizer: VQModel | VQGANSeg, pixels: Tensor, device: torch.device) -> Tensor:
    """Codes of `pixels` (or class maps), encoded on the tokenizer's device, put on `device`."""
    return tokenizer.encode(pixels.to(next(tokenizer.parameters()).device)).to(device)


def _condition(spec, inputs, b, tokenizers: Tokenizers, context, given, fixed, model):
    if spec.condition in ("text", "new_caption"):
        if tokenizers.text is None:
            raise ValueError(
                f"task {spec.name!r} reads a caption: pass Tokenizers(..., text=TextTokenizer)"
            )
        key = "caption" if spec.condition == "text" else "new_caption"
        return Condition.text(tokenizers.text.encode_batch(inputs[key]))
    if spec.condition == "sketch":
        if tokenizers.sketch is None:
            raise ValueError(
                f"task {spec.name!r} reads a sketch: pass Tokenizers(..., sketch=VQGANSeg)"
            )
        codes = _encode(tokenizers.sketch, inputs["sketch"], given.device)
        return Condition.video_sketch(codes) if spec.video else Condition.image_sketch(codes)
    if context:
        return Condition.image_sketch(torch.where(fixed, given, mask_code(model)))
    return Condition.none(b, device=given.device)


def run_task(
    name: str | TaskSpec,
    model: Nuwa,
    inputs: Any,
    *,
    tokenizers: Tokenizers,
    context: bool = False,
    grid: tuple[int, ...] | None = None,
    **sampling: Any,
) -> TaskOutput:
    """Run task `name` on a batch of raw `inputs` with `model`; see the module docstring.

    inputs: a dict of batched inputs (`collate` of `TaskDataset` items) or a list of items.
    tokenizers: the VQ-GAN of the model's codes, and the caption tokenizer / VQ-GAN-Seg for the
        caption / sketch tasks (`TaskKit.tokenizers`). context: the I2I variant whose encoder sees
        the visible part.
    sampling: keyword arguments of `nuwa_lab.model.sample.sample` (temperature, top_k, top_p,
    generator,     use_cache, candidates, score_fn, batch_size, progress).
    """
    spec = get_task(name)
    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise TypeError(f"unknown sampling options {unknown}; valid: {', '.join(SAMPLING_KEYS)}")
    t = task_tensors(
        spec,
        model,
        inputs,
        tokenizers=tokenizers,
        context=context,
        grid=grid,
    )
    tokenizer = tokenizers.visual
    tokens = sample(model, t.condition, t.grid, t.fixed, t.given_tokens, **sampling)
    with torch.no_grad():
        pixels = tokenizer.decode(tokens.to(next(tokenizer.parameters()).device)).cpu()
    return TaskOutput(
        spec.name,
        pixels,
        tokens.cpu(),
        t.fixed.cpu(),
        t.given_tokens.cpu(),
        t.condition,
        tokenizer.downsample,
    )
