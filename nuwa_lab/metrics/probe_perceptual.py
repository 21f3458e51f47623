r"""A perceptual distance on the lab's own probe: LPIPS's recipe with a backbone trained here.

LPIPS (Zhang et al. 2018; `perceptual.py`) compares two images through the activations of a
trained CNN, layer by layer, after scaling the feature vector at every position to unit length.
Its usual backbone holds ImageNet weights, which nuwa_lab never downloads, so there it runs on a
randomly initialised AlexNet. The image probe (`probe.py`) is a CNN trained here on the Shapes
World's ground truth (shape, colour, size, position of every object): its activations carry what
the world's pictures are about. This distance is LPIPS with that probe as the backbone, frozen and
in eval mode, and without LPIPS's learned per-channel weights (its "baseline" form, $w_l = 1$):

$$d(x, x_0) = \sum_l \frac{1}{H_l W_l} \sum_{h,w}
\lVert \hat y^l_{hw}(x) - \hat y^l_{hw}(x_0) \rVert_2^2, \qquad
\hat y^l_{hw} = \frac{y^l_{hw}}{\lVert y^l_{hw} \rVert_2},$$

with $y^l(x) \in \mathbb{R}^{C_l \times H_l \times W_l}$ the activations of the probe's last
block at each resolution (full, 1/2, 1/4, 1/8: four layers at the lab's presets). What follows
from the equation (and `tests/unit/test_probe_perceptual.py` checks): $d(x, x) = 0$;
$d(x, x_0) = d(x_0, x)$; each term lies in [0, 4] (two unit vectors are at most 2 apart), so
$0 \le d \le 4L$; and $d$ is unchanged when the activations of one image at one position are
multiplied by any positive number (the unit scaling removes it), but not when channels are scaled
by different factors.

Not comparable with published LPIPS values (another backbone, no learned weights, other data),
and a tokenizer trained with it is partly trained on the instrument that scores lab-FID and probe
agreement: the notebooks say so where it matters.

Axes: `b` batch, `t` frames, `c` channels, `h w` pixels (or a layer's grid).

| symbol | code | meaning |
|---|---|---|
| $y^l(x)$ | `probe_activations(probe, x)[l]` (b, c_l, h_l, w_l) | the probe's activations |
| $\hat y^l_{hw}$ | `F.normalize(y, dim=1)` | unit length along the channels |
| $d(x, x_0)$ | `ProbePerceptual(probe)(x, x0)`, `feature_distance(ys, y0s)` | per sample (b,) |
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nuwa_lab.metrics.probe import AttributeReader


def probe_activations(probe: AttributeReader, pixels: torch.Tensor) -> list[torch.Tensor]:
    """The activations $y^l$ (b, c_l, h_l, w_l) of images (b, 3, h, w) in [0, 1]: the output of
    the probe's last block before each max-pool, and of its last block."""
    if probe.in_frames != 1:
        raise ValueError(
            f"the probe perceptual distance needs an image probe (in_frames = 1), got one that "
            f"reads {probe.in_frames} frames; pass get_or_train('probe', cfg)"
        )
    if pixels.dim() != 4 or pixels.shape[1] != 3:
        raise ValueError(f"expected images (b, 3, h, w), got {tuple(pixels.shape)}")
    layers = list(probe.body)
    y = 2 * pixels - 1  # the probe reads [-1, 1], as AttributeReader.features does
    out = []
    for i, layer in enumerate(layers):
        y = layer(y)
        if i == len(layers) - 1 or isinstance(layers[i + 1], nn.MaxPool2d):
            out.append(y)
    return out


def feature_distance(ys: list[torch.Tensor], y0s: list[torch.Tensor]) -> torch.Tensor:
    r"""$\sum_l \mathrm{mean}_{hw} \lVert \hat y^l_{hw} - \hat y^l_{0,hw} \rVert_2^2$ per sample
    (b,), from the activations `ys` and `y0s` of two images (lists of (b, c_l, h_l, w_l))."""
    if len(ys) != len(y0s):
        raise ValueError(f"{len(ys)} layers against {len(y0s)}; give the same layers of both")
    total = 0.0
    for y, y0 in zip(ys, y0s, strict=True):
        if y.shape != y0.shape:
            raise ValueError(f"layer shapes differ: {tuple(y.shape)} vs {tuple(y0.shape)}")
        # F.normalize divides by max(norm, 1e-12): an all-zero vector stays zero, with a finite
        # gradient (LPIPS's normalize_tensor adds 1e-10 to the norm instead)
        diff = F.normalize(y, dim=1) - F.normalize(y0, dim=1)
        total = total + diff.pow(2).sum(dim=1).mean(dim=(1, 2))
    return total


class ProbePerceptual(nn.Module):
    r"""$d(x, x_0) = \sum_l \mathrm{mean}_{hw} \lVert \hat y^l_{hw}(x) - \hat y^l_{hw}(x_0)
    \rVert_2^2$ on a frozen image probe: images (b, 3, h, w) or videos (b, t, 3, h, w, the mean
    over frames) in [0, 1] -> (b,).

    The probe is put in eval mode and its parameters stop requiring gradients (it stays in eval
    mode whatever `train()` is called with); gradients flow to both images, so it serves as a
    perceptual loss. It reads images at the size it was trained on (the world's image size).
    """

    def __init__(self, probe: AttributeReader):
        super().__init__()
        if probe.in_frames != 1:
            raise ValueError(
                f"ProbePerceptual needs an image probe (in_frames = 1), got in_frames = "
                f"{probe.in_frames}; pass get_or_train('probe', cfg)"
            )
        self.probe = probe.eval()
        for p in self.probe.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> ProbePerceptual:
        return super().train(False)  # a measuring instrument: always in eval mode

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        if x.shape != x0.shape:
            raise ValueError(f"x has shape {tuple(x.shape)} but x0 has {tuple(x0.shape)}")
        if x.dim() not in (4, 5):
            raise ValueError(f"expected (b, 3, h, w) or (b, t, 3, h, w), got {tuple(x.shape)}")
        b = x.shape[0]
        if x.dim() == 5:
            x = rearrange(x, "b t c h w -> (b t) c h w")
            x0 = rearrange(x0, "b t c h w -> (b t) c h w")
        self.probe.to(x.device)  # a no-op once it is there
        # two passes, not one over the pair: only the images that need a gradient record a graph
        d = feature_distance(
            probe_activations(self.probe, x.float()), probe_activations(self.probe, x0.float())
        )
        return rearrange(d, "(b t) -> b t", b=b).mean(dim=1)
