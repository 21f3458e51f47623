r"""Per-task measurements against the Shapes World's ground truth (NÜWA §4's metrics, lab versions).

Each function takes generated pixels and the truth and returns a flat dict of floats (snake_case,
units in the name), so a "perfect model" (outputs = truth) scores accuracy 1 and the PSNR ceiling.

| task | function | what is measured |
|---|---|---|
| T2I / T2V | `text_to_visual_metrics` | probe accuracy vs the caption, lab-FID / lab-FVD |
| S2I / S2V | `sketch_metrics` | segmenter pixel accuracy vs the sketch (Detected PA) |
| I2I | `completion_metrics` | given tokens kept; PSNR whole / hidden / visible; probe |
| V2V | `prediction_metrics` | PSNR / SSIM per predicted frame vs copy-last-frame; motion |
| TI2I / TV2V | `manipulation_metrics` | edit success (the probe reads the new value); kept part |

Accuracies are `acc_all` (every asked attribute right) and `acc_<attribute>` (direction for video).
PSNR of a region $R$ (a pixel mask) is $10 \log_{10}(1 / \mathrm{MSE}_R)$ with the MSE over the
pixels (and channels) in $R$ only, per sample; a table reports the mean over samples in dB, each
sample capped at `PSNR_CAP_DB` = $20 \log_{10} 255 \approx 48.1$ dB, the PSNR of an error of one
8-bit level everywhere. Without the cap one identical pair (a video whose object does not move
between two frames, a perfect prediction) makes the whole mean infinite.

Axis letters: b samples, t frames, H W pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nuwa_lab.metrics import attribute_accuracy, lab_fid, lab_fvd, psnr, segmentation_accuracy, ssim
from nuwa_lab.metrics.probe import AttributeReader, ImageProbe, Segmenter, VideoProbe
from nuwa_lab.world.render import BACKGROUND

PSNR_CAP_DB = 20.0 * math.log10(255.0)  # an error of one 8-bit level: invisible in a picture


def _mean(values: Tensor) -> float:
    return float(values.double().mean())


def mean_psnr_db(values: Tensor) -> float:
    """The mean of per-sample PSNRs, each capped at PSNR_CAP_DB (NaNs, empty regions, skipped)."""
    values = values.double().clamp(max=PSNR_CAP_DB)
    values = values[~values.isnan()]
    return float(values.mean()) if len(values) else math.nan


def region_psnr(x: Tensor, y: Tensor, region: Tensor) -> Tensor:
    r"""PSNR (dB) per sample over the pixels where `region` (b, [t,] H, W) is True; NaN if empty."""
    if x.shape != y.shape or x.dim() not in (4, 5):
        raise ValueError(
            f"region_psnr: x {tuple(x.shape)} and y {tuple(y.shape)} must be equal "
            "(b, 3, H, W) or (b, t, 3, H, W)"
        )
    weight = region.to(x.device, torch.float64).unsqueeze(-3)  # (b, [t,] 1, H, W)
    weight = weight.expand_as(x)
    sq = (x.detach().double() - y.detach().double()).pow(2) * weight
    count = weight.flatten(1).sum(dim=1)
    mse = sq.flatten(1).sum(dim=1) / count
    out = 10.0 * torch.log10(1.0 / mse)
    return torch.where(count > 0, out, torch.full_like(out, math.nan)).float()


def _accuracy(
    prefix: str, probe: AttributeReader, pixels: Tensor, objects: Sequence[Any]
) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in attribute_accuracy(probe, pixels, objects).items()}


def text_to_visual_metrics(
    probe: AttributeReader, generated: Tensor, asked: Sequence[Any], *, real: Tensor | None = None
) -> dict[str, float]:
    """T2I / T2V: probe accuracy of `generated` against the `asked` objects (e.g. parsed captions).

    `probe` is the image probe for images, the video probe (direction included) for videos; with
    `real` samples (the same number or more) it adds lab-FID (images) or lab-FVD (videos)."""
    out = _accuracy("acc_", probe, generated, asked)
    if real is not None:
        video = generated.dim() == 5
        fd = (lab_fvd if video else lab_fid)(probe, generated, real)
        out["lab_fvd" if video else "lab_fid"] = fd
    return out


def sketch_metrics(segmenter: Segmenter, generated: Tensor, sketch: Tensor) -> dict[str, float]:
    """S2I / S2V: the segmenter's class map of `generated` against the input `sketch`.

    Most pixels are background, so `pixel_accuracy_blank` says what an output without any object
    would score (the sketch's background share); `foreground_accuracy` counts the shape's pixels
    only (a blank output scores 0 there)."""
    out = segmentation_accuracy(segmenter, generated, sketch)
    out["pixel_accuracy_blank"] = float((sketch == 0).double().mean())
    return out


def given_tokens_kept(tokens: Tensor, fixed: Tensor, given: Tensor) -> float:
    """Fraction of fixed positions whose output code equals the given code (1.0 = all kept)."""
    if not bool(fixed.any()):
        return math.nan
    return float((tokens[fixed] == given[fixed]).double().mean())


def completion_metrics(
    probe: ImageProbe,
    generated: Tensor,
    truth: Tensor,
    visible: Tensor,
    objects: Sequence[Any],
    *,
    tokens: Tensor | None = None,
    fixed: Tensor | None = None,
    given: Tensor | None = None,
) -> dict[str, float]:
    """I2I: is the visible part kept, and is the hidden part completed like the truth?"""
    out = {
        "psnr_db": mean_psnr_db(psnr(generated, truth)),
        "psnr_hidden_db": mean_psnr_db(region_psnr(generated, truth, ~visible)),
        "psnr_visible_db": mean_psnr_db(region_psnr(generated, truth, visible)),
    }
    if tokens is not None:
        out["given_tokens_kept"] = given_tokens_kept(tokens, fixed, given)
    out.update(_accuracy("acc_", probe, generated, objects))
    return out


FOREGROUND_THRESHOLD = 0.25  # object pixels: a channel this far from the background colour
STILL_PX = 0.5  # a centroid moving less than this (pixels) has not moved


def object_centroids(pixels: Tensor) -> Tensor:
    r"""The centre of the non-background pixels of every frame, (b, t, 2) as (x, y) in pixels; NaN
    where a frame shows no object. A pixel is foreground when some channel differs from the world's
    background colour by more than `FOREGROUND_THRESHOLD` (the shapes' colours are saturated)."""

    background = torch.tensor(BACKGROUND, dtype=pixels.dtype, device=pixels.device)[:, None, None]
    foreground = ((pixels - background).abs().amax(dim=-3) > FOREGROUND_THRESHOLD).double()
    ys, xs = (torch.arange(n, dtype=torch.float64, device=pixels.device) for n in pixels.shape[-2:])
    mass = foreground.sum(dim=(-2, -1))
    cx = (foreground * xs).sum(dim=(-2, -1)) / mass
    cy = (foreground * ys[:, None]).sum(dim=(-2, -1)) / mass
    return torch.stack([cx, cy], dim=-1).float()  # 0 / 0 = NaN where nothing is seen


def motion_directions(displacement: Tensor) -> list[str]:
    """The direction of each (dx, dy) displacement (n, 2): "left", "right", "up", "down" by its
    larger component (image y grows downwards), "still" below `STILL_PX`, "none" when NaN."""
    out = []
    for dx, dy in displacement.tolist():
        if math.isnan(dx) or math.isnan(dy):
            out.append("none")
        elif max(abs(dx), abs(dy)) < STILL_PX:
            out.append("still")
        elif abs(dx) >= abs(dy):
            out.append("right" if dx > 0 else "left")
        else:
            out.append("down" if dy > 0 else "up")
    return out


def _predicted_directions(centroids: Tensor, given_frames: int) -> list[str]:
    """The direction of $c_{T-1} - c_{g-1}$: where the predicted frames carry the object."""
    return motion_directions(centroids[:, -1] - centroids[:, given_frames - 1])


def motion_matches(generated: Tensor, truth: Tensor, given_frames: int) -> list[bool]:
    """Per video: the object's displacement over the predicted frames, $c_{T-1} - c_{g-1}$,
    points the same way in `generated` as in `truth` (see `predicted_motion_accuracy`)."""
    moved = _predicted_directions(object_centroids(generated), given_frames)
    wanted = _predicted_directions(object_centroids(truth), given_frames)
    return [m == w and m != "none" for m, w in zip(moved, wanted, strict=True)]


def turns_at_a_wall(truth: Tensor, given_frames: int) -> list[bool]:
    """Per video: the truth's displacement over the predicted frames points another way than its
    last given move $c_{g-1} - c_{g-2}$ (the object bounced, or came back to a stop), so a model
    that carries the given motion on is wrong there. Needs at least two given frames."""
    if given_frames < 2:
        raise ValueError(f"a given move needs two given frames, got given_frames={given_frames}")
    c = object_centroids(truth)
    given = motion_directions(c[:, given_frames - 1] - c[:, given_frames - 2])
    later = _predicted_directions(c, given_frames)
    return [g != w for g, w in zip(given, later, strict=True)]


def predicted_motion_accuracy(generated: Tensor, truth: Tensor, given_frames: int) -> float:
    r"""V2V: the share of videos whose *predicted* frames carry the object the way the truth does.

    The object's displacement $c_{T-1} - c_{g-1}$ from the last given frame to the last frame
    (centroids of its pixels) must point the same way in the prediction as in the truth (both
    "still" counts too, e.g. a bounce that returns the object). The given frames are excluded: they
    are the truth, so a probe reading the whole video could read their motion whatever followed."""
    matches = motion_matches(generated, truth, given_frames)
    return sum(matches) / len(matches)


def prediction_metrics(
    video_probe: VideoProbe,
    generated: Tensor,
    truth: Tensor,
    given_frames: int,
    objects: Sequence[Any],
    *,
    tokens: Tensor | None = None,
    fixed: Tensor | None = None,
    given: Tensor | None = None,
) -> dict[str, float]:
    """V2V: PSNR / SSIM of each predicted frame k = 1, 2, ... against the truth, beside the
    copy-the-last-given-frame baseline; `direction_accuracy`: the predicted frames move the object
    the way the truth does (`predicted_motion_accuracy`), and with two or more given frames split
    into `direction_accuracy_straight` / `_turning` by `turns_at_a_wall` (`turning_share` of the
    videos turn); `direction_accuracy_whole_video`: the video probe's reading of the whole video,
    given frames included (an upper bound)."""
    if generated.shape != truth.shape or generated.dim() != 5:
        raise ValueError(
            f"videos (b, t, 3, H, W) expected, got {tuple(generated.shape)} "
            f"and {tuple(truth.shape)}"
        )
    frames = truth.shape[1]
    if not 1 <= given_frames < frames:
        raise ValueError(f"given_frames={given_frames} must be in 1..{frames - 1}")
    last = truth[:, given_frames - 1]
    out: dict[str, float] = {}
    window = min(11, truth.shape[-1] // 2 * 2 - 1)
    for k, t in enumerate(range(given_frames, frames), start=1):
        out[f"psnr_frame{k}_db"] = mean_psnr_db(psnr(generated[:, t], truth[:, t]))
        out[f"psnr_copy_last_frame{k}_db"] = mean_psnr_db(psnr(last, truth[:, t]))
        out[f"ssim_frame{k}"] = _mean(ssim(generated[:, t], truth[:, t], window=window))
        out[f"ssim_copy_last_frame{k}"] = _mean(ssim(last, truth[:, t], window=window))
    later = range(2, frames - given_frames + 1)
    out["beats_copy_last_from_frame2"] = (
        float(all(out[f"psnr_frame{k}_db"] > out[f"psnr_copy_last_frame{k}_db"] for k in later))
        if len(later)
        else math.nan
    )
    asked = [[{"direction": o.direction} for o in objs] for objs in objects]
    matches = motion_matches(generated, truth, given_frames)
    out["direction_accuracy"] = sum(matches) / len(matches)  # = predicted_motion_accuracy
    if given_frames >= 2:  # split by whether the object keeps its given motion or turns
        turns = turns_at_a_wall(truth, given_frames)
        out["turning_share"] = sum(turns) / len(turns)
        for name, group in (("straight", False), ("turning", True)):
            hits = [m for m, t in zip(matches, turns, strict=True) if t == group]
            out[f"direction_accuracy_{name}"] = sum(hits) / len(hits) if hits else math.nan
    out["direction_accuracy_whole_video"] = attribute_accuracy(video_probe, generated, asked)["all"]
    out.update(_accuracy("acc_", video_probe, generated, objects))
    if tokens is not None:
        out["given_tokens_kept"] = given_tokens_kept(tokens, fixed, given)
    return out


def token_pixels(tokens: Tensor, size: Sequence[int]) -> Tensor:
    """bool (b, h, w) tokens -> bool (b, H, W) pixels: each token's whole f x f patch."""
    f = size[-1] // tokens.shape[-1]
    if tokens.shape[-2] * f != size[-2] or tokens.shape[-1] * f != size[-1]:
        raise ValueError(f"a {tuple(tokens.shape[-2:])} token grid does not tile {tuple(size)}")
    return tokens.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)


def outside_edit_parts(edit_region: Tensor, fixed: Tensor) -> dict[str, Tensor]:
    r"""TI2I: the outside of the edit region $\bar E$ in two parts. "given": the pixels of the
    tokens the model was given (wholly outside $E$), which it keeps as codes; "redrawn": the rest
    of $\bar E$, pixels that share a token with $E$, which the model draws anew with the edit."""
    given = token_pixels(fixed.to(edit_region.device), edit_region.shape[-2:])
    return {"given": given & ~edit_region, "redrawn": ~edit_region & ~given}


def kept_region(source: Tensor, edit_region: Tensor | None, given_frames) -> Tensor:
    """bool (b, [t,] H, W): what an edit keeps of `source` (b, [t,] 3, H, W), outside
    `edit_region` (TI2I) or the first `given_frames[i]` frames of item i (TV2V)."""
    if edit_region is not None:
        return ~edit_region
    frames = torch.arange(source.shape[1], device=source.device)
    first = torch.tensor(list(given_frames), device=source.device)
    return (frames[None] < first[:, None])[:, :, None, None].expand(
        *source.shape[:2], *source.shape[-2:]
    )


def manipulation_metrics(
    probe: AttributeReader,
    generated: Tensor,
    source: Tensor,
    target_objects: Sequence[Sequence[Any]],
    changed: Sequence[str],
    *,
    edit_region: Tensor | None = None,
    given_frames: Sequence[int] | None = None,
    reconstruction: Tensor | None = None,
    tokens: Tensor | None = None,
    fixed: Tensor | None = None,
    given: Tensor | None = None,
) -> dict[str, float]:
    """TI2I / TV2V: edit success and preservation.

    edit success: the probe reads the changed attribute of the target (the new colour / shape /
    position, or the new direction). preservation: PSNR outside the edit region against the source
    (TI2I) or of the given frames against the source (TV2V); `reconstruction` (the tokenizer's
    round trip of the source) gives the same PSNR of the best a tokenized output can do. TI2I with
    `fixed` also splits the outside of the edit (`outside_edit_parts`): `psnr_given_db` over the
    given tokens' pixels, `psnr_redrawn_db` over the pixels redrawn beside the edit.
    """
    if (edit_region is None) == (given_frames is None):
        raise ValueError("pass edit_region (TI2I) or given_frames (TV2V), exactly one")
    asked = [
        [{c: getattr(o, c)} for o in objs] for objs, c in zip(target_objects, changed, strict=True)
    ]
    out = {
        "edit_success": attribute_accuracy(probe, generated, asked)["all"],
        **_accuracy("acc_", probe, generated, target_objects),
    }
    for attribute in sorted(set(changed)):  # success per kind of edit
        rows = [i for i, c in enumerate(changed) if c == attribute]
        sub = attribute_accuracy(probe, generated[rows], [asked[i] for i in rows])["all"]
        out[f"edit_success_{attribute}"] = sub
    keep = kept_region(source, edit_region, given_frames)
    out["psnr_preserved_db"] = mean_psnr_db(region_psnr(generated, source, keep))
    if reconstruction is not None:
        out["psnr_preserved_tokenizer_db"] = mean_psnr_db(region_psnr(reconstruction, source, keep))
    if edit_region is not None and fixed is not None:  # where the preserved part's error comes from
        for part, region in outside_edit_parts(edit_region, fixed).items():
            out[f"psnr_{part}_db"] = mean_psnr_db(region_psnr(generated, source, region))
            if reconstruction is not None:
                theirs = region_psnr(reconstruction, source, region)
                out[f"psnr_{part}_tokenizer_db"] = mean_psnr_db(theirs)
    if tokens is not None:
        out["given_tokens_kept"] = given_tokens_kept(tokens, fixed, given)
    return out
