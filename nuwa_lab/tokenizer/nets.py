r"""Convolutional encoder and decoder of the VQ-GAN (NÜWA §3.1; Esser et al. 2021).

The encoder $E$ maps an image $x \in \mathbb{R}^{C \times H \times W}$ to a grid of latent
vectors $z_e = E(x) \in \mathbb{R}^{d_z \times h \times w}$ with $h = H / f$, $w = W / f$; the
decoder $G$ maps a grid of (quantised) vectors back to pixels (as in taming-transformers).

The downsampling factor $f$ (`downsample`) is a power of two, with one stride-2 convolution between
consecutive stages, so there are $\log_2 f + 1$ stages; stage $i$ has `channels * channel_mult[i]`
channels and `res_blocks` residual blocks, and a "middle" residual block sits at the token
resolution. The resampling convolutions change the width, so even `res_blocks=0` is a real
multi-width network. `channel_mult` is read per stage: when it is shorter than the number of stages
its last entry repeats, extra entries are ignored (so one preset can run at `downsample` 4 and 8, as
the compression ablation does).

Axis letters: b batch, d channels / code width, h w the grid (here: pixels or tokens).

| paper | code |
|---|---|
| $E$, $G$ | `Encoder`, `Decoder` |
| $f$ | `downsample` |
| $d_z$ | `code_dim` |
| $G$'s last layer $G_L$ (for the adaptive GAN weight) | `Decoder.last_layer` |

The encoder can be *local* (the tiny preset's default): its normalisation is a LayerNorm over the
channels of each position (`norm="layer"`) instead of GroupNorm, whose statistics run over the
whole image, and it has no residual blocks before the middle one, so a token sees about 12 px
around its 4x4 patch. With GroupNorm every token's vector depends on the whole picture: a flat
background patch is encoded differently next to a red square than next to a blue circle, and the
codebook fills with background "synonyms" that tell the transformer where and what the object is
before it is drawn. Measured at tiny (1,000 steps, 512 validation images, tokens whose 3x3
neighbourhood is background): the most common code at a position covers 30% of its background
tokens with GroupNorm and one residual block, 68% with the local encoder, whose PSNR is higher
(31.6 dB against 30.5). The decoder keeps GroupNorm: it may look as far as it likes.

This module is only the networks; the quantiser, the losses and the model live beside it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def stage_channels(*, channels: int, channel_mult: tuple[int, ...], downsample: int) -> list[int]:
    """Channels of each stage: `log2(downsample) + 1` stages, `channel_mult` padded by its last."""
    if downsample < 1 or downsample & (downsample - 1):
        raise ValueError(
            f"downsample={downsample} must be a power of two (1, 2, 4, 8, 16, ...); "
            "set tokenizer.downsample accordingly"
        )
    if not channel_mult:
        raise ValueError("channel_mult is empty; give at least one multiplier, e.g. (1, 2, 2)")
    stages = int(math.log2(downsample)) + 1
    mult = list(channel_mult[:stages]) + [channel_mult[-1]] * max(0, stages - len(channel_mult))
    return [channels * m for m in mult]


NORMS = ("group", "layer")


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of a (b, d, h, w) map: no spatial statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _norm(ch: int, kind: str = "group") -> nn.Module:
    """GroupNorm with up to 8 groups of at least 4 channels each, or a per-position LayerNorm.

    Several channels per group keep their relative magnitudes (flat colours are ratios of channels).
    """
    if kind == "layer":
        return ChannelLayerNorm(ch)
    if kind != "group":
        raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")
    groups = next(g for g in (8, 4, 2, 1) if ch % g == 0 and (ch // g >= 4 or g == 1))
    return nn.GroupNorm(num_groups=groups, num_channels=ch)


class ResBlock(nn.Module):
    r"""Pre-activation residual block, $\sigma$ = SiLU, GN = GroupNorm:
    $y = s(x) + \mathrm{conv}(\sigma(\mathrm{GN}(\mathrm{conv}(\sigma(\mathrm{GN}(x))))))$,
    with $s$ the identity or a 1x1 convolution when the width changes."""

    def __init__(self, *, in_channels: int, out_channels: int, norm: str = "group"):
        super().__init__()
        self.norm1 = _norm(in_channels, norm)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, norm)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    r"""$z_e = E(x)$: (b, C, H, W) -> (b, d_z, H/f, W/f); `norm` "group" or "layer" (local)."""

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        channel_mult: tuple[int, ...],
        res_blocks: int,
        code_dim: int,
        downsample: int,
        norm: str = "group",
    ):
        super().__init__()
        widths = stage_channels(channels=channels, channel_mult=channel_mult, downsample=downsample)
        self.downsample = downsample
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        blocks: list[nn.Module] = []
        ch = widths[0]
        for i in range(len(widths)):
            blocks += [
                ResBlock(in_channels=ch, out_channels=ch, norm=norm) for _ in range(res_blocks)
            ]
            if i < len(widths) - 1:  # a stride-2 convolution: half the side, the next width
                blocks.append(nn.Conv2d(ch, widths[i + 1], 3, stride=2, padding=1))
                ch = widths[i + 1]
        blocks.append(ResBlock(in_channels=ch, out_channels=ch, norm=norm))  # the "middle" block
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = _norm(ch, norm)
        self.conv_out = nn.Conv2d(ch, code_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(x))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    r"""$\hat x = G(z_q)$: (b, d_z, h, w) -> (b, C_out, h f, w f), the mirror of the encoder."""

    def __init__(
        self,
        *,
        out_channels: int,
        channels: int,
        channel_mult: tuple[int, ...],
        res_blocks: int,
        code_dim: int,
        downsample: int,
    ):
        super().__init__()
        widths = stage_channels(channels=channels, channel_mult=channel_mult, downsample=downsample)
        ch = widths[-1]
        self.conv_in = nn.Conv2d(code_dim, ch, 3, padding=1)
        blocks: list[nn.Module] = [ResBlock(in_channels=ch, out_channels=ch)]
        for i in reversed(range(len(widths))):
            blocks += [ResBlock(in_channels=ch, out_channels=ch) for _ in range(res_blocks)]
            if i > 0:  # nearest-neighbour upsampling and a 3x3 convolution: 2x the side, narrower
                blocks += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(ch, widths[i - 1], 3, padding=1),
                ]
                ch = widths[i - 1]
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """$G_L$'s weight: where the adaptive GAN weight compares gradient norms."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(z))
        return self.conv_out(F.silu(self.norm_out(h)))
