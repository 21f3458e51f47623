r"""The VQ-GAN image tokenizer (NÜWA §3.1): images and video frames <-> grids of discrete tokens.

$x \in [0,1]^{3 \times H \times W} \xrightarrow{E} z_e \in \mathbb{R}^{d_z \times h \times w}
\xrightarrow{Q} (z_q, \text{indices} \in \{0..K-1\}^{h \times w}) \xrightarrow{G} \hat x$, with
$h = H / f$, $w = W / f$. NÜWA tokenizes a video frame by frame with the same image tokenizer,
so images ($1 \times h \times w$ tokens) and videos ($T \times h \times w$) share one codebook and
one 3D token space: an image is a one-frame video. `encode` and `decode` accept both.

VQ-VAE and VQ-GAN are the same network; they differ only in the training objective (`losses.py`).

Axis letters: b batch, t frames, c channels, d code width, h w the token grid (H W pixels).

| paper | code |
|---|---|
| $E$, $G$, $Q$ | `encoder`, `decoder`, `quantizer` |
| $z_e$, $z_q$ | `encode_latent(x)`, `VQOutput.quant.z_q` |
| $f$, $K$ | `downsample`, `codebook_size` |
| $\hat x$ | `VQOutput.recon` (unclamped, for the loss), `decode(indices)` (in [0, 1]) |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from nuwa_lab.config import TokenizerConfig
from nuwa_lab.tokenizer.nets import Decoder, Encoder
from nuwa_lab.tokenizer.quantizer import QuantizerOutput, VectorQuantizer


@dataclass
class VQOutput:
    recon: (
        torch.Tensor
    )  # images: pixels (b, 3, H, W), unclamped; VQGANSeg: logits (b, classes, H, W)
    indices: torch.Tensor  # (b, h, w)
    quant: QuantizerOutput


class VQModel(nn.Module):
    """Encoder -> quantizer -> decoder, shared by `VQGAN` (pixels) and `VQGANSeg` (class maps)."""

    def __init__(
        self,
        cfg: TokenizerConfig,
        *,
        in_channels: int,
        out_channels: int,
        codebook_size: int,
        init: str = "kmeans++",
    ):
        super().__init__()
        self.cfg = cfg
        net = dict(
            channels=cfg.channels,
            channel_mult=tuple(cfg.channel_mult),
            res_blocks=cfg.res_blocks,
            code_dim=cfg.code_dim,
            downsample=cfg.downsample,
        )
        self.encoder = Encoder(
            in_channels=in_channels,
            **(net | {"res_blocks": cfg.encoder_res_blocks}),
            norm=cfg.encoder_norm,
        )
        self.decoder = Decoder(out_channels=out_channels, **net)
        self.quantizer = VectorQuantizer(
            codebook_size=codebook_size,
            code_dim=cfg.code_dim,
            beta=cfg.beta,
            ema=cfg.ema,
            ema_decay=cfg.ema_decay,
            dead_code_steps=cfg.dead_code_steps,
            init=init,
        )
        self.in_channels, self.out_channels = in_channels, out_channels

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def downsample(self) -> int:
        return self.encoder.downsample

    def token_grid(self, height: int, width: int | None = None) -> tuple[int, int]:
        """(h, w) of the token grid of an image of height x width pixels."""
        width = height if width is None else width
        f = self.downsample
        if height % f or width % f:
            raise ValueError(
                f"an image of {height}x{width} pixels does not split into {f}x{f} patches; use a "
                f"size divisible by tokenizer.downsample={f} (e.g. {height // f * f or f})"
            )
        return height // f, width // f

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.last_layer

    # ---- the network, on (b, c, H, W) --------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (b, in_channels, H, W) from the user's input; overridden per modality."""
        raise NotImplementedError

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """$z_e = E(x)$: (b, c, H, W) input -> (b, d, h, w)."""
        inp = self._prepare(x)
        self.token_grid(*inp.shape[-2:])
        return self.encoder(inp)

    def decode_latent(self, z_q: torch.Tensor) -> torch.Tensor:
        """$G(z_q)$: (b, d, h, w) -> raw outputs (b, out_channels, H, W)."""
        return self.decoder(z_q)

    def forward(self, x: torch.Tensor) -> VQOutput:
        """Training pass on a batch of images (b, c, H, W): reconstruction, indices, VQ loss."""
        quant = self.quantizer(self.encode_latent(x))
        return VQOutput(recon=self.decode_latent(quant.z_q), indices=quant.indices, quant=quant)

    # ---- tokens <-> inputs, images and videos --------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
        """Token indices (b, h, w) of images, or (b, t, h, w) of videos (frame by frame)."""
        frames, video = self._frames(x)
        out = [self.quantizer.nearest(self.encode_latent(f)) for f in frames.split(chunk)]
        idx = torch.cat(out)
        return rearrange(idx, "(b t) h w -> b t h w", b=x.shape[0]) if video else idx

    @torch.no_grad()
    def decode_raw(self, indices: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
        """Raw decoder outputs of (b, h, w) or (b, t, h, w) indices: (b, [t,] c, H, W)."""
        if indices.dim() not in (3, 4):
            raise ValueError(
                f"indices must be (b, h, w) or (b, t, h, w), got shape {tuple(indices.shape)}; "
                "add a batch axis with indices[None]"
            )
        video = indices.dim() == 4
        flat = rearrange(indices, "b t h w -> (b t) h w") if video else indices
        flat = flat.to(self.quantizer.codebook.device)
        out = torch.cat([self.decode_latent(self.quantizer.embed(i)) for i in flat.split(chunk)])
        return rearrange(out, "(b t) c h w -> b t c h w", b=indices.shape[0]) if video else out

    def _frames(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        raise NotImplementedError


class VQGAN(VQModel):
    r"""The image / video-frame tokenizer: $\hat x = G(Q(E(x)))$, x and $\hat x$ in [0, 1].

    `VQGAN(cfg.tokenizer, in_channels=3)`; `encode(x) -> indices`, `decode(indices) -> pixels`.
    """

    def __init__(self, cfg: TokenizerConfig, *, in_channels: int = 3, init: str = "kmeans++"):
        super().__init__(
            cfg,
            in_channels=in_channels,
            out_channels=in_channels,
            codebook_size=cfg.codebook_size,
            init=init,
        )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images (b, {self.in_channels}, H, W) in [0, 1], got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"images must be floats in [0, 1], got {x.dtype}; divide uint8 by 255")
        return x * 2.0 - 1.0  # the network works on [-1, 1]

    def _frames(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if x.dim() == 5:
            return rearrange(x, "b t c h w -> (b t) c h w"), True
        if x.dim() == 4:
            return x, False
        raise ValueError(
            f"expected images (b, 3, H, W) or videos (b, t, 3, H, W), got shape {tuple(x.shape)}"
        )

    def decode(self, indices: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
        """Pixels in [0, 1]: (b, h, w) -> (b, 3, H, W); (b, t, h, w) -> (b, t, 3, H, W)."""
        return self.decode_raw(indices, chunk=chunk).clamp(0.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)): the tokenizer's round trip, images or videos."""
        return self.decode(self.encode(x))
