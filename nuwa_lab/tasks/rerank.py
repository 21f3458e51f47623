r"""Re-ranking an edit's candidates: first what was asked, then how much of the source is kept.

    score = candidate_score("ti2i", caption_score, kit.tokenizer, inputs, 4)  # any task's
    run_task("ti2i", model, inputs, candidates=4, score_fn=score, ...)

A score of pixels (`caption_score`, `edit_score_fn`) becomes the sampler's score of tokens through
`decoded_score`, so the candidates are decoded once however many things rank them.

NÜWA re-ranks its samples with CLIP (§4.1). Here the probe does that part (`probe_pixel_score`,
`label_pixel_score`): it scores how many of the asked attributes a candidate shows. An edit (TI2I)
has a second thing to rank by, which needs nothing but the edit's own inputs. TI2I keeps the
tokens whose patch lies outside the edit region and redraws the rest (`run.task_tensors`), in
raster order. A redrawn token cannot see the kept tokens that come after it, so one sample often
redraws the background band around the edit a little off. The decoder's overlap then carries that
into the kept pixels beside it. How closely a candidate agrees with the source there is

$$\mathrm{agreement}_i = \min\big(\mathrm{PSNR}(\hat x_i,\ x_{\mathrm{source}} \mid
\text{outside the edit region}),\ \mathrm{PSNR\_CAP\_DB}\big)\ \text{dB}.$$

The caption score ranks first and the agreement breaks its ties:
score = caption score × 1000 + agreement. The agreement is at most `PSNR_CAP_DB` (48.1 dB), so it
outweighs a caption score difference of 0.05 at most. The attribute probe's score moves in steps of
1/5 (four attributes and "all"), so there no agreement outweighs an attribute read right.

What this costs a measurement: the preservation gap the TI2I target reads is the same PSNR against
the source, so a re-ranked gap says how well the model edits *when it may pick among candidates*.
Notebook 09 shows the gap of single samples beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nuwa_lab.tasks.metrics import PSNR_CAP_DB, region_psnr
from nuwa_lab.tasks.spec import get_task
from nuwa_lab.tokenizer import VQModel

CAPTION_WEIGHT = 1000.0  # a caption score step of 0.05 outweighs any agreement (<= 48.1 dB)


def decoded_score(
    tokenizer: VQModel, pixel_score: Callable[[Tensor], Tensor]
) -> Callable[[Tensor], Tensor]:
    """The sampler's `score_fn` (tokens -> scores) of a score of pixels: decode once, then score."""

    @torch.no_grad()
    def score(tokens: Tensor) -> Tensor:
        pixels = tokenizer.decode(tokens.to(next(tokenizer.parameters()).device)).cpu()
        return pixel_score(pixels)

    return score


def edit_score_fn(
    caption_score: Callable[[Tensor], Tensor],
    source: Tensor,
    edit_region: Tensor,
    candidates: int,
) -> Callable[[Tensor], Tensor]:
    """Re-ranking score of `candidates` edits per source (pixels (b * candidates, 3, H, W) ->
    scores): `caption_score` (of the same pixels) first, then the candidate's PSNR against `source`
    (b, 3, H, W) where `edit_region` (bool (b, H, W)) is False, capped at `PSNR_CAP_DB`; see the
    module docstring."""
    if source.dim() != 4 or edit_region.shape != (source.shape[0], *source.shape[-2:]):
        raise ValueError(
            f"edit_score_fn: source {tuple(source.shape)} must be (b, 3, H, W) and edit_region "
            f"{tuple(edit_region.shape)} (b, H, W), one region per source"
        )
    kept = (~edit_region.bool()).repeat_interleave(candidates, dim=0)
    sources = source.cpu().repeat_interleave(candidates, dim=0)

    def score(pixels: Tensor) -> Tensor:
        agreement = region_psnr(pixels, sources, kept).clamp(max=PSNR_CAP_DB)
        agreement = torch.nan_to_num(agreement, nan=PSNR_CAP_DB)  # nothing kept: nothing to lose
        return caption_score(pixels).float().cpu() * CAPTION_WEIGHT + agreement

    return score


def candidate_score(
    task: str,
    caption_score: Callable[[Tensor], Tensor],
    tokenizer: VQModel,
    inputs: dict[str, Any],
    candidates: int,
) -> Callable[[Tensor], Tensor]:
    """The score of tokens `task`'s candidates are ranked by: `caption_score` of their pixels, and
    for an edit that keeps the source outside its region (TI2I) `edit_score_fn` of it on the
    batch's `inputs`; the candidates are decoded once."""
    if get_task(task).fixed != "outside_edit":
        return decoded_score(tokenizer, caption_score)
    source, region = inputs["pixels"], inputs["edit_region"]
    return decoded_score(tokenizer, edit_score_fn(caption_score, source, region, candidates))
