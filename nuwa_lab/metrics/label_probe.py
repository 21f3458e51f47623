r"""The label probe: a small CNN that reads a data folder's own classes back from pixels.

A folder of your own pictures has no world ground truth, but its records may carry a class (the
digits: which digit; `nuwa_lab.world.labels`). A classifier trained on the folder's real train
pictures then measures generated ones the way the lab's attribute probe measures the Shapes World:
does a sample for "a handwritten seven" read as a seven? Its penultimate features give a Fréchet
distance between generated and real pictures of the folder (`label_fid`), the folder's analogue of
lab-FID. Training is a recipe: `nuwa_lab.recipes.label_probe`.

The probe reads position-free evidence only (global max and mean pooling), so a digit reads the
same wherever it stands: in the middle of an image or small and moving on a video's canvas. A video
is read frame by frame; its logits are the mean over frames.

Axes: `b` batch, `t` frames, `h w` pixels, `d` feature width, `n` classes.

| symbol | code | meaning |
|---|---|---|
| $f(x)$ | `probe.features(x)` (b, d) | $\mathrm{SiLU}(W_f[\max_{hw} F; \mathrm{mean}_{hw} F])$ |
| $p(y \mid x)$ | `probe(x).softmax(-1)` (b, n) | $\mathrm{softmax}(W f(x))$ (video: frames' mean) |
| $\mathcal{L}$ | `probe.loss(x, y)` | $\mathrm{CE}(p(\cdot \mid x), y)$ |
| $\hat y$ | `probe.predict(x)` (b,) | $\arg\max_y p(y \mid x)$ |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nuwa_lab.metrics.intervals import wilson_interval


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, group norm, SiLU: the probe's unit."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(math.gcd(8, c_out), c_out), nn.SiLU()
    )


class LabelProbe(nn.Module):
    r"""Class logits of images (b, 3, h, w) or videos (b, t, 3, h, w) in [0, 1].

    $F = \mathrm{CNN}(2x - 1)$ (b, 4c, h/4, w/4), $f = \mathrm{SiLU}(W_f[\max_{hw} F;
    \mathrm{mean}_{hw} F])$, logits $= W f$.
    """

    def __init__(self, *, classes: Sequence[str], channels: int = 16):
        super().__init__()
        if len(classes) < 2:
            raise ValueError(f"a label probe needs at least two classes, got {list(classes)}")
        c = channels
        self.classes = tuple(classes)
        self.feature_dim = 8 * c
        # one convolution a scale: a class needs less than the Shapes World probe's outlines, and
        # the probe trains on every picture and frame of a folder (a third of the two-a-scale cost)
        self.body = nn.Sequential(
            conv_block(3, c),
            nn.MaxPool2d(2),  # h/2
            conv_block(c, 2 * c),
            nn.MaxPool2d(2),  # h/4
            conv_block(2 * c, 4 * c),
        )
        self.mix = nn.Linear(8 * c, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, len(self.classes))

    def frame_features(self, images: torch.Tensor) -> torch.Tensor:
        """Features (b, d) of images (b, 3, h, w)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"LabelProbe reads images (b, 3, h, w) or videos (b, t, 3, h, w), got "
                f"{tuple(images.shape)}"
            )
        f = self.body(2 * images - 1)  # (b, 4c, h/4, w/4)
        pooled = torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)  # (b, 8c)
        return F.silu(self.mix(pooled))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Features (b, d); a video's are the mean of its frames' (they do not see motion)."""
        if pixels.dim() == 5:
            b = pixels.shape[0]
            frames = self.frame_features(rearrange(pixels, "b t c h w -> (b t) c h w"))
            return rearrange(frames, "(b t) d -> b t d", b=b).mean(dim=1)
        return self.frame_features(pixels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits (b, n); a video's are the mean of its frames' logits."""
        if pixels.dim() == 5:
            b = pixels.shape[0]
            logits = self.head(self.frame_features(rearrange(pixels, "b t c h w -> (b t) c h w")))
            return rearrange(logits, "(b t) n -> b t n", b=b).mean(dim=1)
        return self.head(self.frame_features(pixels))

    def loss(self, pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Cross-entropy against class indices (b,), and the batch accuracy."""
        logits = self(pixels)
        accuracy = float((logits.argmax(-1) == labels).float().mean())
        return F.cross_entropy(logits, labels), {"acc": accuracy}

    @torch.no_grad()
    def probabilities(self, pixels: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        r"""$p(y \mid x)$ (b, n) on the CPU, computed in eval mode batch by batch."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        chunks = [
            self(pixels[i : i + batch_size].to(device)).softmax(-1).cpu()
            for i in range(0, len(pixels), batch_size)
        ]
        self.train(was_training)
        return torch.cat(chunks) if chunks else torch.zeros(0, len(self.classes))

    def predict(self, pixels: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """The class index each sample reads as, (b,) int64."""
        return self.probabilities(pixels, batch_size=batch_size).argmax(-1)


def class_accuracy(
    probe: LabelProbe, pixels: torch.Tensor, labels: torch.Tensor, *, prefix: str = "acc"
) -> dict[str, float]:
    r"""The share of samples the probe reads as their label, with its 95% Wilson interval.

    `labels` (b,): class indices, -1 for a sample without a class (left out). Keys `<prefix>`,
    `<prefix>_low`, `<prefix>_high` and `<prefix>_n` (samples scored); NaN when none has a class.
    $\mathrm{acc} = \frac{1}{n}\sum_i [\hat y(x_i) = y_i]$ over the n labelled samples."""
    if len(labels) != len(pixels):
        raise ValueError(f"{len(pixels)} samples but {len(labels)} labels; give one per sample")
    keep = labels >= 0
    n = int(keep.sum())
    if n == 0:
        nan = float("nan")
        return {prefix: nan, f"{prefix}_low": nan, f"{prefix}_high": nan, f"{prefix}_n": 0}
    right = int((probe.predict(pixels[keep]) == labels[keep].cpu()).sum())
    low, high = wilson_interval(right, n)
    return {prefix: right / n, f"{prefix}_low": low, f"{prefix}_high": high, f"{prefix}_n": n}
