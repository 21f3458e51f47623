r"""Per-task measurements on a data folder: no world ground truth, only the folder's own labels.

What a folder can say about a sample: its class (a record field, read back by the label probe,
`nuwa_lab.metrics.label_probe`), its direction of motion (a record field, read back from the
ink's motion, `nuwa_lab.metrics.ink_motion`), and its pixels (the held-out truth of V2V and I2I).
Every number carries its 95% interval: a rate its Wilson interval (`_low`, `_high`, `_n` scored),
a mean over items its bootstrap interval over the items.

| task | function | what is measured |
|---|---|---|
| T2I | `text_to_image_scores` | `acc_class`: the probe reads the asked class; `label_fid` |
| T2V | `text_to_video_scores` | `acc_class`, `acc_direction` (the ink moves the asked way), both |
| V2V | `prediction_scores` | PSNR / SSIM per frame vs the truth and copy-last; direction, class |
| I2I | `completion_scores` | PSNR whole / hidden / visible vs the truth; `acc_class` |
| TI2I, TV2V | `manipulation_scores` | the target's class, TV2V's direction, PSNR of what is kept |

`label_fid` is the Fréchet distance between Gaussians fitted to the label probe's features of the
generated and of the real pictures, $\lVert\mu_g-\mu_r\rVert^2 + \mathrm{Tr}(\Sigma_g + \Sigma_r -
2(\Sigma_g\Sigma_r)^{1/2})$: the folder's analogue of lab-FID (features of a probe trained on the
folder, not of Inception). For videos, `label_fid_frames` uses frame-averaged features: it compares
what the frames show, not how they move (the direction is measured separately).

Axis letters: b items, t frames, H W pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from nuwa_lab.metrics import frechet_distance, psnr, ssim
from nuwa_lab.metrics.frechet import extract_features
from nuwa_lab.metrics.ink_motion import ink_directions
from nuwa_lab.metrics.intervals import bootstrap_interval, wilson_interval
from nuwa_lab.metrics.label_probe import LabelProbe, class_accuracy
from nuwa_lab.tasks.metrics import PSNR_CAP_DB, given_tokens_kept, kept_region, region_psnr

FRECHET_RESAMPLES = 200  # bootstrap draws of a Fréchet distance (each one a matrix square root)


def rate_scores(hits: Sequence[bool | None], key: str) -> dict[str, float]:
    """The share of True among the scored items (None: not scored), with its Wilson interval."""
    scored = [h for h in hits if h is not None]
    n = len(scored)
    if not n:
        nan = math.nan
        return {key: nan, f"{key}_low": nan, f"{key}_high": nan, f"{key}_n": 0}
    low, high = wilson_interval(sum(scored), n)
    return {key: sum(scored) / n, f"{key}_low": low, f"{key}_high": high, f"{key}_n": n}


def agreement(read: Sequence, wanted: Sequence) -> list[bool | None]:
    """Per item: is what was read what was wanted? None where nothing is wanted (no label)."""
    return [None if w is None else r == w for r, w in zip(read, wanted, strict=True)]


def mean_scores(values: Tensor | np.ndarray, key: str) -> dict[str, float]:
    """The mean over items with its bootstrap interval (NaN items left out)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if not len(x):
        return {key: math.nan, f"{key}_low": math.nan, f"{key}_high": math.nan}
    low, high = bootstrap_interval(x) if len(x) >= 2 else (float(x[0]), float(x[0]))
    return {key: float(x.mean()), f"{key}_low": low, f"{key}_high": high}


def capped_psnr(x: Tensor, y: Tensor) -> np.ndarray:
    """PSNR (dB) per item, capped at `PSNR_CAP_DB` (an identical pair is not infinitely good)."""
    return psnr(x, y).double().clamp(max=PSNR_CAP_DB).numpy()


def capped_region_psnr(x: Tensor, y: Tensor, region: Tensor) -> np.ndarray:
    """`region_psnr` per item, capped at `PSNR_CAP_DB` (NaN where the region is empty)."""
    return region_psnr(x, y, region).double().clamp(max=PSNR_CAP_DB).numpy()


def label_frechet(probe: LabelProbe, generated: Tensor, real: Tensor, key: str) -> dict:
    r"""Fréchet distance of the probe's features of `generated` and `real` (item i of each paired,
    b >= 2), with its 95% interval over the items.

    The interval is the bootstrap's (items resampled, generated and real together), moved by the
    bootstrap's bias: a resample repeats some items, which alone raises the distance, so its draws
    $d^*$ sit above the estimate $\hat d$ by $\beta = \overline{d^*} - \hat d$; the interval is
    $[q_{2.5}(d^*) - \beta,\ q_{97.5}(d^*) - \beta]$, clipped at 0."""
    if len(real) < len(generated):
        raise ValueError(
            f"{key}: {len(generated)} generated pictures but {len(real)} real ones; give at "
            f"least as many real pictures (item i of each is paired in the bootstrap)"
        )
    if len(generated) < 2:
        return {key: math.nan, f"{key}_low": math.nan, f"{key}_high": math.nan}
    gen = extract_features(probe.features, generated)
    ref = extract_features(probe.features, real[: len(generated)])
    estimate = frechet_distance(gen, ref)
    pairs = np.stack([gen, ref], axis=1)  # (b, 2, d)
    draws: list[float] = []

    def statistic(p: np.ndarray) -> float:
        draws.append(frechet_distance(p[:, 0], p[:, 1]))
        return draws[-1]

    low, high = bootstrap_interval(pairs, statistic, resamples=FRECHET_RESAMPLES)
    bias = float(np.mean(draws)) - estimate
    return {key: estimate, f"{key}_low": max(0.0, low - bias), f"{key}_high": max(0.0, high - bias)}


def text_to_image_scores(
    probe: LabelProbe, generated: Tensor, labels: Tensor, *, real: Tensor | None = None
) -> dict[str, float]:
    """T2I: the share of samples the probe reads as the asked class; with `real`, `label_fid`."""
    out = class_accuracy(probe, generated, labels, prefix="acc_class")
    if real is not None:
        out |= label_frechet(probe, generated, real, "label_fid")
    return out


def text_to_video_scores(
    probe: LabelProbe,
    generated: Tensor,
    labels: Tensor,
    directions: Sequence[str | None],
    *,
    real: Tensor | None = None,
) -> dict[str, float]:
    """T2V: class read right (`acc_class`), ink moving the asked way over the whole video
    (`acc_direction`), both (`acc_all`, items with both labels); with `real`, the direction
    measure on the true videos (`acc_direction_real`: the instrument's own accuracy) and
    `label_fid_frames`."""
    asked = [None if y < 0 else y for y in labels.tolist()]
    class_ok = agreement(probe.predict(generated).tolist(), asked)
    way_ok = agreement(ink_directions(generated), directions)
    both = [
        None if c is None or w is None else c and w for c, w in zip(class_ok, way_ok, strict=True)
    ]
    out = rate_scores(class_ok, "acc_class") | rate_scores(way_ok, "acc_direction")
    out |= rate_scores(both, "acc_all")
    if real is not None:
        out |= rate_scores(agreement(ink_directions(real), directions), "acc_direction_real")
        out |= label_frechet(probe, generated, real, "label_fid_frames")
    return out


def prediction_scores(
    probe: LabelProbe | None,
    generated: Tensor,
    truth: Tensor,
    given_frames: int,
    labels: Tensor,
    *,
    tokens: Tensor | None = None,
    fixed: Tensor | None = None,
    given: Tensor | None = None,
) -> dict[str, float]:
    """V2V: PSNR / SSIM of each predicted frame k against the truth beside copy-the-last-given-
    frame; `psnr_db` (mean over predicted frames, per item) and `psnr_gain_db` (ours − copy-last)
    with intervals; `acc_direction`: the ink moves from the last given frame to the last frame the
    way it does in the truth; `acc_class`: the probe reads the truth's class."""
    if generated.shape != truth.shape or generated.dim() != 5:
        raise ValueError(
            f"videos (b, t, 3, H, W) expected, got {tuple(generated.shape)} and "
            f"{tuple(truth.shape)}"
        )
    frames = truth.shape[1]
    if not 1 <= given_frames < frames:
        raise ValueError(f"given_frames={given_frames} must be in 1..{frames - 1}")
    last = truth[:, given_frames - 1]
    window = min(11, truth.shape[-1] // 2 * 2 - 1)
    ours, copy = [], []
    out: dict[str, float] = {}
    for k, t in enumerate(range(given_frames, frames), start=1):
        ours.append(capped_psnr(generated[:, t], truth[:, t]))
        copy.append(capped_psnr(last, truth[:, t]))
        out[f"psnr_frame{k}_db"] = float(ours[-1].mean())
        out[f"psnr_copy_last_frame{k}_db"] = float(copy[-1].mean())
        out[f"ssim_frame{k}"] = float(ssim(generated[:, t], truth[:, t], window=window).mean())
    ours_item, copy_item = np.mean(ours, axis=0), np.mean(copy, axis=0)  # (b,)
    out |= mean_scores(ours_item, "psnr_db") | mean_scores(copy_item, "psnr_copy_last_db")
    out |= mean_scores(ours_item - copy_item, "psnr_gain_db")
    start = given_frames - 1
    moved = ink_directions(generated, start=start)
    wanted = ink_directions(truth, start=start)
    wanted = [None if w == "none" else w for w in wanted]  # a truth without ink: not scored
    out |= rate_scores(agreement(moved, wanted), "acc_direction")
    if probe is not None:
        out |= class_accuracy(probe, generated, labels, prefix="acc_class")
    if tokens is not None:
        out["given_tokens_kept"] = given_tokens_kept(tokens, fixed, given)
    return out


def completion_scores(
    probe: LabelProbe | None,
    generated: Tensor,
    truth: Tensor,
    visible: Tensor,
    labels: Tensor,
    *,
    tokens: Tensor | None = None,
    fixed: Tensor | None = None,
    given: Tensor | None = None,
) -> dict[str, float]:
    """I2I: PSNR of the whole picture, of the hidden part (the completion) and of the visible
    part (kept) against the truth, with intervals; `acc_class`: the probe reads the truth's class
    in the completed picture."""
    out = mean_scores(capped_psnr(generated, truth), "psnr_db")
    out |= mean_scores(capped_region_psnr(generated, truth, ~visible), "psnr_hidden_db")
    out |= mean_scores(capped_region_psnr(generated, truth, visible), "psnr_visible_db")
    if probe is not None:
        out |= class_accuracy(probe, generated, labels, prefix="acc_class")
    if tokens is not None:
        out["given_tokens_kept"] = given_tokens_kept(tokens, fixed, given)
    return out


def manipulation_scores(
    probe: LabelProbe | None,
    generated: Tensor,
    source: Tensor,
    target: Tensor,
    labels: Tensor,
    *,
    edit_region: Tensor | None = None,
    given_frames: Sequence[int] | None = None,
    directions: Sequence[str | None] | None = None,
    reconstruction: Tensor | None = None,
    tokens: Tensor | None = None,
    fixed: Tensor | None = None,
    given: Tensor | None = None,
) -> dict[str, float]:
    """TI2I / TV2V on a folder's edit pairs (`nuwa_lab.world.edits`): the edit, and what it kept.

    - `acc_class`: the probe reads the target's class (pairs with one);
    - TV2V `acc_direction`: the ink moves from the last given frame to the last frame the way the
      target's "direction" says (or, without one, the way the target's own ink moves);
    - `psnr_kept_db`: PSNR against the source of what the model was to keep (outside the edit
      region; the given frames), beside `psnr_kept_tokenizer_db`, the same of the tokenizer's
      round trip of the source (the best a tokenized output can do), and `kept_gap_db`, their
      difference per pair; `psnr_edit_db`: the rest against the folder's own target.
    All with 95% intervals (Wilson for rates, bootstrap over pairs for means)."""
    if (edit_region is None) == (given_frames is None):
        raise ValueError("pass edit_region (TI2I) or given_frames (TV2V), exactly one")
    keep = kept_region(source, edit_region, given_frames)
    ours = capped_region_psnr(generated, source, keep)
    out = mean_scores(ours, "psnr_kept_db")
    out |= mean_scores(capped_region_psnr(generated, target, ~keep), "psnr_edit_db")
    if reconstruction is not None:
        best = capped_region_psnr(reconstruction, source, keep)
        out |= mean_scores(best, "psnr_kept_tokenizer_db")
        out |= mean_scores(best - ours, "kept_gap_db")
    if probe is not None:
        out |= class_accuracy(probe, generated, labels, prefix="acc_class")
    if given_frames is not None:
        moved, wanted = [], []
        for i, g in enumerate(given_frames):
            moved += ink_directions(generated[i : i + 1], start=g - 1)
            own = ink_directions(target[i : i + 1], start=g - 1)[0]
            asked = directions[i] if directions is not None else None
            wanted.append(asked or (None if own in ("none", "still") else own))
        out |= rate_scores(agreement(moved, wanted), "acc_direction")
    if tokens is not None:
        out["given_tokens_kept"] = given_tokens_kept(tokens, fixed, given)
    return out


def reconstruction_scores(
    probe: LabelProbe | None, recon: Tensor, originals: Tensor, labels: Tensor
) -> dict[str, float]:
    """A tokenizer on a folder's pictures: PSNR and SSIM per picture with intervals; with the
    probe, its accuracy on the originals and on the reconstructions and `label_fid` between them."""
    window = min(11, originals.shape[-1] // 2 * 2 - 1)
    out = mean_scores(capped_psnr(recon, originals), "psnr_db")
    out |= mean_scores(ssim(recon, originals, window=window).double().numpy(), "ssim")
    if probe is not None:
        out |= class_accuracy(probe, originals, labels, prefix="acc_class_originals")
        out |= class_accuracy(probe, recon, labels, prefix="acc_class_recon")
        out |= label_frechet(probe, recon, originals, "label_fid")
    return out
