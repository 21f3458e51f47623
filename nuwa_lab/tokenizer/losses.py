r"""The VQ-GAN training objective (NÜWA §3.1, Eq. 1-3; Esser et al. 2021).

NÜWA trains its VQ-GAN with

$$L_{V} = \|x - \hat x\|_1 + \beta\|E(x) - \mathrm{sg}[z_q]\|_2^2
+ \|\mathrm{sg}[E(x)] - z_q\|_2^2, \qquad L_{P} = \|\mathrm{CNN}(x) - \mathrm{CNN}(\hat x)\|_2^2,
\qquad L_{G} = \log D(x) + \log(1 - D(\hat x)),$$

i.e. a pixel reconstruction term, the VQ terms (`quantizer.py`), a perceptual term and an
adversarial term from a patch discriminator $D$. As in taming-transformers the adversarial term
uses the hinge form,

$$L_D = \mathbb{E}[\max(0, 1 - D(x))] + \mathbb{E}[\max(0, 1 + D(\hat x))], \qquad
L_{G} = -\mathbb{E}[D(\hat x)],$$

weighted by the adaptive weight computed at the decoder's last layer $G_L$,

$$\lambda = \frac{\|\nabla_{G_L} L_{rec}\|}{\|\nabla_{G_L} L_{G}\| + \delta},$$

so the adversarial gradient never dwarfs the reconstruction one, and switched on only after
`disc_start` steps (the reconstruction must be reasonable before the discriminator is useful).
The generator minimises $L_{rec} + w_G\,\lambda\,L_G + L_{VQ}$ with $L_{rec} = L_1 + w_P L_P$.
VQ-VAE is this objective with $w_P = w_G = 0$.

Axis letters: b batch, c channels, h w pixels.

| paper | code |
|---|---|
| $\|x - \hat x\|_1$ | `reconstruction_loss(..., kind="l1")` |
| $L_P$, $w_P$ | `perceptual(x_hat, x)` (LPIPS or `ProbePerceptual`), `perceptual_weight` |
| $D$ | `PatchDiscriminator` |
| $L_D$, $L_G$ | `hinge_d_loss`, `hinge_g_loss` |
| $\lambda$, $\delta$, $w_G$ | `adaptive_weight(...)`, `delta`, `gan_weight` |
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

REC_LOSSES = ("l1", "l2", "l1+l2")


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, *, kind: str = "l1") -> torch.Tensor:
    """Mean L1 or L2 pixel error, or their sum.

    L2 weighs large errors (a wrong colour, a misplaced edge) most and learns them fastest;
    L1 drives small errors to exactly zero (clean flat regions, what SSIM rewards);
    "l1+l2": both.
    """
    if kind == "l1":
        return (x_hat - x).abs().mean()
    if kind == "l2":
        return (x_hat - x).pow(2).mean()
    if kind == "l1+l2":
        diff = x_hat - x
        return diff.abs().mean() + diff.pow(2).mean()
    raise ValueError(f"unknown reconstruction loss {kind!r}; valid: {', '.join(REC_LOSSES)}")


class PatchDiscriminator(nn.Module):
    r"""PatchGAN (Isola et al. 2017): a stack of stride-2 4x4 convolutions whose output is a grid of
    logits $D(x)_{ij}$, each judging one overlapping patch as real or reconstructed.

    (b, c, H, W) -> (b, 1, H / 2^layers - 2, W / 2^layers - 2). No normalisation layers, so a
    data-parallel run equals a single-process one.
    """

    def __init__(self, *, in_channels: int = 3, channels: int = 32, layers: int = 2):
        super().__init__()
        mods: list[nn.Module] = []
        ch_in, ch = in_channels, channels
        for i in range(layers):
            mods += [nn.Conv2d(ch_in, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch_in, ch = ch, ch * 2 if i < layers - 1 else ch
        mods += [nn.Conv2d(ch_in, ch_in * 2, 4, padding=1), nn.LeakyReLU(0.2)]
        mods += [nn.Conv2d(ch_in * 2, 1, 4, padding=1)]
        self.net = nn.Sequential(*mods)
        for m in self.modules():  # DCGAN initialisation, as in pix2pix / taming
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""$L_D = \frac12(\mathbb{E}[\max(0, 1 - D(x))] + \mathbb{E}[\max(0, 1 + D(\hat x))])$."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""$L_G = -\mathbb{E}[D(\hat x)]$."""
    return -fake_logits.mean()


def adaptive_weight(
    rec_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer: torch.Tensor,
    *,
    delta: float = 1e-4,
    max_weight: float = 1e4,
) -> torch.Tensor:
    r"""$\lambda = \|\nabla_{G_L} L_{rec}\| / (\|\nabla_{G_L} L_G\| + \delta)$, clamped, detached.

    Both losses must still have their graphs (it differentiates them with `retain_graph=True`).
    Under torch.distributed each rank holds the gradients of its shard's mean losses; their mean
    over ranks is the global batch's gradient, so the norms are taken of that mean: every rank
    gets the same $\lambda$, the one process would get on the whole batch.
    """
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        both = torch.stack([g_rec, g_gan])  # (2, *last_layer.shape)
        dist.all_reduce(both)
        g_rec, g_gan = both / dist.get_world_size()
    return (g_rec.norm() / (g_gan.norm() + delta)).clamp(0.0, max_weight).detach()


class VQGANLoss(nn.Module):
    """The generator and discriminator objectives, holding the discriminator.

    `perceptual` is a differentiable `(x_hat, x) -> (b,)` distance on images in [0, 1] (LPIPS, or
    `nuwa_lab.metrics.ProbePerceptual`);
    it is kept outside the module tree so its (frozen) weights are neither trained nor saved here.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        rec_loss: str = "l1",
        perceptual_weight: float = 0.0,
        perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        gan_weight: float = 0.0,
        disc_start: int = 0,
        disc_channels: int = 32,
        disc_layers: int = 2,
        delta: float = 1e-4,
    ):
        super().__init__()
        if rec_loss not in REC_LOSSES:
            raise ValueError(f"unknown rec_loss {rec_loss!r}; valid: {', '.join(REC_LOSSES)}")
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError(
                f"perceptual_weight={perceptual_weight} but no perceptual distance was given; pass "
                "perceptual=... (e.g. nuwa_lab.metrics LPIPS) or set tokenizer.perceptual_weight=0"
            )
        self.rec_loss, self.perceptual_weight, self.gan_weight = (
            rec_loss,
            perceptual_weight,
            gan_weight,
        )
        self.disc_start, self.delta = disc_start, delta
        self._perceptual = (perceptual,)  # a tuple hides a module from parameters()/state_dict()
        self.discriminator = (
            PatchDiscriminator(in_channels=in_channels, channels=disc_channels, layers=disc_layers)
            if gan_weight > 0
            else None
        )

    @property
    def uses_gan(self) -> bool:
        return self.discriminator is not None

    def gan_active(self, step: int) -> bool:
        return self.uses_gan and step >= self.disc_start

    def generator_loss(
        self,
        x_hat: torch.Tensor,
        x: torch.Tensor,
        vq_loss: torch.Tensor,
        *,
        step: int,
        last_layer: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """$L_{rec} + w_G \\lambda L_G + L_{VQ}$ and a dict of its parts (floats, for logging)."""
        rec = reconstruction_loss(x_hat, x, kind=self.rec_loss)
        logs = {"rec": float(rec.detach())}
        if self.perceptual_weight > 0:
            p = self._perceptual[0](x_hat, x).mean()
            rec = rec + self.perceptual_weight * p
            logs["perceptual"] = float(p.detach())
        loss = rec + vq_loss
        if self.gan_active(step):
            g = hinge_g_loss(self.discriminator(x_hat))
            if torch.is_grad_enabled() and last_layer is not None:
                lam = adaptive_weight(rec, g, last_layer, delta=self.delta)
            else:
                lam = torch.ones((), device=x.device)
            loss = loss + self.gan_weight * lam * g
            logs |= {"g_loss": float(g.detach()), "adaptive_weight": float(lam)}
        logs["loss"] = float(loss.detach())
        return loss, logs

    def discriminator_loss(
        self, x_hat: torch.Tensor, x: torch.Tensor, *, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """$L_D$ on detached reconstructions (zero, with no graph, before `disc_start`)."""
        if not self.gan_active(step):
            return x.new_zeros(()), {}
        real, fake = self.discriminator(x), self.discriminator(x_hat.detach())
        loss = hinge_d_loss(real, fake)
        logs = {
            "d_loss": float(loss.detach()),
            "logits_real": float(real.detach().mean()),
            "logits_fake": float(fake.detach().mean()),
        }
        return loss, logs
