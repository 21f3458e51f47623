r"""Pixel-level reconstruction metrics: PSNR and SSIM.

NÜWA (§4.1, Table 4) compares its VQ-GAN with VQ-VAE by reconstruction quality; these are the two
classic pixel metrics used for that, computed exactly as the usual references do.

Axes: `b` batch, `t` frames, `c` channels (3), `h w` pixels. Images are (b, 3, h, w), videos (b, t,
3, h, w); both are in [0, 1] (`data_range` = 1). Every metric returns one value per sample (b,); for
a video, the mean over its frames.

| symbol | code | meaning |
|---|---|---|
| $R$ | `data_range` | the largest pixel value minus the smallest (1 for [0, 1]) |
| $\mathrm{MSE}$ | `mse` | mean squared error over all pixels and channels of one sample |
| $G_\sigma$ | `gaussian_window(size, sigma)` | the normalised 11 x 11 Gaussian window, sigma 1.5 |
| $\mu_x, \sigma^2_x, \sigma_{xy}$ | `mu_x`, `var_x`, `cov_xy` | windowed mean, variance, covar. |
| $C_1, C_2$ | `c1`, `c2` | $(K_1 R)^2$, $(K_2 R)^2$ with $K_1 = 0.01$, $K_2 = 0.03$ |

SSIM follows Wang et al. (2004) and their reference MATLAB code: the Gaussian window is applied per
channel without padding ("valid"), the SSIM map is averaged over positions and channels. It is not
the multi-scale MS-SSIM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def _check_pair(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if x.shape != y.shape:
        raise ValueError(
            f"{name}: x has shape {tuple(x.shape)} but y has {tuple(y.shape)}; "
            "compare images (b, 3, h, w) or videos (b, t, 3, h, w) of the same shape"
        )
    if x.dim() not in (4, 5):
        raise ValueError(
            f"{name}: expected images (b, c, h, w) or videos (b, t, c, h, w), "
            f"got shape {tuple(x.shape)}; add a batch axis with x[None]"
        )


def psnr(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    r"""Peak signal-to-noise ratio in dB, per sample: $10 \log_{10}(R^2 / \mathrm{MSE})$.

    Identical inputs give `inf`. For videos the MSE is taken over all frames together.
    """
    _check_pair(x, y, "psnr")
    diff = x.detach().double() - y.detach().double()
    mse = diff.pow(2).flatten(1).mean(dim=1)  # (b,)
    return (10.0 * torch.log10(data_range**2 / mse)).float()


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype=torch.float64) -> torch.Tensor:
    """The normalised 2D Gaussian window (size, size) used by SSIM (an outer product of 1D ones)."""
    coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    r"""Structural similarity (Wang et al. 2004), per sample, mean over positions and channels.

    $\mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
    {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}$, with local statistics under the
    Gaussian window $G_\sigma$ (11 x 11, sigma 1.5) and $C_i = (K_i R)^2$.
    """
    _check_pair(x, y, "ssim")
    video = x.dim() == 5
    if video:
        b = x.shape[0]
        x = rearrange(x, "b t c h w -> (b t) c h w")
        y = rearrange(y, "b t c h w -> (b t) c h w")
    h, w = x.shape[-2:]
    if h < window or w < window:
        raise ValueError(
            f"ssim: images of {h}x{w} pixels are smaller than the {window}x{window} "
            f"window; pass a smaller odd window (e.g. window={min(h, w) // 2 * 2 - 1})"
        )
    channels = x.shape[1]
    x, y = x.detach().double(), y.detach().double()
    kernel = gaussian_window(window, sigma, dtype=x.dtype).to(x.device)
    kernel = kernel.expand(channels, 1, window, window)  # one depthwise filter per channel

    def blur(z: torch.Tensor) -> torch.Tensor:  # (b, c, h, w) -> (b, c, h-window+1, w-window+1)
        return F.conv2d(z, kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    per_image = ssim_map.flatten(1).mean(dim=1)
    if video:
        per_image = rearrange(per_image, "(b t) -> b t", b=b).mean(dim=1)
    return per_image.float()
