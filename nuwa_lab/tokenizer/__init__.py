"""The VQ tokenizers of NÜWA §3.1: VQ-GAN (images and video frames), VQ-VAE, VQ-GAN-Seg (sketches).

    from nuwa_lab.tokenizer import VQGAN, VQGANSeg
    vqgan = get_or_train("vqgan", cfg)  # trained and cached (VQGAN(cfg.tokenizer): untrained)
    idx = vqgan.encode(pixels)  # (b, 3, H, W) -> (b, h, w); (b, t, 3, H, W) -> (b, t, h, w)
    pixels = vqgan.decode(idx)  # back to [0, 1]

| module | what |
|---|---|
| `nets` | convolutional encoder / decoder with residual blocks, downsampling factor f |
| `quantizer` | straight-through VQ, commitment, EMA, k-means++ init, dead-code restart |
| `losses` | L1/L2, perceptual, PatchGAN hinge loss, adaptive weight, discriminator start |
| `vqgan` | `VQGAN`: encode / decode / forward, images and videos (frame by frame) |
| `seg` | `VQGANSeg`: one-hot class map in, cross-entropy reconstruction out |
| `trainer` | training with `nuwa_lab.train.loop`, artifact kinds "vqgan", "vqvae", "vqgan_seg" |
| `evaluate` | PSNR, SSIM, LPIPS, lab-FID, probe agreement, usage; VQ-GAN-Seg pixel accuracy |
| `bench` | `python -m nuwa_lab bench tokenizer` |
"""

from nuwa_lab.tokenizer.losses import PatchDiscriminator, VQGANLoss
from nuwa_lab.tokenizer.nets import Decoder, Encoder
from nuwa_lab.tokenizer.quantizer import QuantizerOutput, VectorQuantizer
from nuwa_lab.tokenizer.seg import VQGANSeg, segmentation_loss
from nuwa_lab.tokenizer.vqgan import VQGAN, VQModel, VQOutput

__all__ = [
    "VQGAN",
    "VQGANLoss",
    "VQGANSeg",
    "VQModel",
    "VQOutput",
    "Decoder",
    "Encoder",
    "PatchDiscriminator",
    "QuantizerOutput",
    "VectorQuantizer",
    "segmentation_loss",
]
