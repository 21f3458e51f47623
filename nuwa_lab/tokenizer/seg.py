r"""VQ-GAN-Seg: the sketch tokenizer (NÜWA §3.1, "VQ-GAN-Seg"; used by the S2I and S2V tasks).

A sketch is a per-pixel class map $s \in \{0..C-1\}^{H \times W}$ (0 = background, 1 + shape
index). It is fed to the encoder one-hot, $\mathrm{onehot}(s) \in \{0,1\}^{C \times H \times W}$,
quantised with its own codebook, and decoded into class logits
$\ell \in \mathbb{R}^{C \times H \times W}$ trained with the per-pixel cross-entropy

$$L_{seg} = -\frac{1}{HW}\sum_{ij} \log \mathrm{softmax}(\ell_{ij})_{s_{ij}} + L_{VQ}.$$

Its quality is the pixel accuracy of $\arg\max_c \ell$ against $s$ (the paper: 96.82% on MSCOCO).
Sketch videos are tokenized frame by frame, like pixel videos.

Axis letters: b batch, t frames, c classes, h w the token grid (H W pixels).

| paper | code |
|---|---|
| $C$ | `num_classes` |
| $\ell$ | `VQOutput.recon` (logits), `decode_logits(indices)` |
| $L_{seg}$ | `segmentation_loss(logits, class_map)` |
| pixel accuracy | `nuwa_lab.metrics.pixel_accuracy(pred, target)` |
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch.nn import functional as F

from nuwa_lab.config import TokenizerConfig
from nuwa_lab.tokenizer.vqgan import VQModel


def segmentation_loss(logits: torch.Tensor, class_map: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel cross-entropy of logits (b, c, H, W) against a class map (b, H, W)."""
    return F.cross_entropy(logits, class_map.long())


class VQGANSeg(VQModel):
    r"""$\hat s = \arg\max_c G(Q(E(\mathrm{onehot}(s))))$, a codebook of `seg_codebook_size` codes.

    `VQGANSeg(cfg.tokenizer, num_classes=1 + len(cfg.world.shapes))`;
    `encode(class_map) -> indices`, `decode(indices) -> class map`.
    """

    def __init__(self, cfg: TokenizerConfig, *, num_classes: int, init: str = "kmeans++"):
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: a sketch needs background + >= 1 class")
        super().__init__(
            cfg,
            in_channels=num_classes,
            out_channels=num_classes,
            codebook_size=cfg.seg_codebook_size,
            init=init,
        )
        self.num_classes = num_classes

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected class maps (b, H, W), got shape {tuple(x.shape)}")
        if x.is_floating_point():
            raise TypeError(f"class maps must be integers, got {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_classes):
            raise ValueError(
                f"class map values span [{int(x.min())}, {int(x.max())}] but the tokenizer has "
                f"{self.num_classes} classes; build it with num_classes=1 + len(cfg.world.shapes)"
            )
        onehot = F.one_hot(x.long(), self.num_classes).float()
        return rearrange(onehot, "b h w c -> b c h w") * 2.0 - 1.0

    def _frames(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if x.dim() == 4:
            return rearrange(x, "b t h w -> (b t) h w"), True
        if x.dim() == 3:
            return x, False
        raise ValueError(
            f"expected class maps (b, H, W) or sketch videos (b, t, H, W), got {tuple(x.shape)}"
        )

    def decode_logits(self, indices: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
        """Class logits: (b, h, w) -> (b, c, H, W); (b, t, h, w) -> (b, t, c, H, W)."""
        return self.decode_raw(indices, chunk=chunk)

    def decode(self, indices: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
        """Class maps (int64): (b, h, w) -> (b, H, W); (b, t, h, w) -> (b, t, H, W)."""
        return self.decode_logits(indices, chunk=chunk).argmax(dim=-3)

    @torch.no_grad()
    def reconstruct(self, class_map: torch.Tensor) -> torch.Tensor:
        """decode(encode(class_map))."""
        return self.decode(self.encode(class_map))
