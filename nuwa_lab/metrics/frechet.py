r"""Fréchet distance between feature distributions: lab-FID, lab-FVD, and the standard FID path.

NÜWA reports FID (images) and FVD (videos) (§4.2, Tables 1-3): the Fréchet distance between two
Gaussians fitted to network features of real and generated samples. Here the network is the lab's
probe (trained on the Shapes World; `nuwa_lab.metrics.probe`), whose penultimate layer gives
**lab-FID** for images and **lab-FVD** for videos. When torchvision's ImageNet Inception-v3 weights
are in the torch hub cache, `fid` computes the standard FID with the same Fréchet code
(torchvision's weights, not the TF-ported ones of pytorch-fid, so values are close to but not
identical with published FIDs). Nothing is ever downloaded.

Axes: `n` samples, `d` feature width; pixels are (b, 3, h, w) or (b, t, 3, h, w) in [0, 1].

| symbol | code | meaning |
|---|---|---|
| $\mu_a, \Sigma_a$ | `mu_a`, `sigma_a` | mean (d,) and covariance (d, d) of the features of set a |
| $\mathrm{Tr}(\Sigma_a\Sigma_b)^{1/2}$ | `trace_covmean` | $\sum_i \sqrt{\lambda_i(M)}$ (below) |

$d^2 = \lVert\mu_a - \mu_b\rVert^2 + \mathrm{Tr}(\Sigma_a + \Sigma_b - 2(\Sigma_a\Sigma_b)^{1/2})$
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

INCEPTION_FILE = (
    "inception_v3_google-0cc3c7bd.pth"  # torchvision Inception_V3_Weights.IMAGENET1K_V1
)


def _as_numpy(feats) -> np.ndarray:
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().numpy()
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {feats.shape}; flatten them first")
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 samples to fit a covariance, got {feats.shape[0]}")
    return feats


def gaussian_statistics(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of features (n, d), in float64."""
    feats = _as_numpy(feats)
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])


def frechet_from_statistics(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray
) -> float:
    r"""$\lVert\mu_a-\mu_b\rVert^2 + \mathrm{Tr}(\Sigma_a+\Sigma_b-2(\Sigma_a\Sigma_b)^{1/2})$.

    The trace of $(\Sigma_a\Sigma_b)^{1/2}$ is computed from the symmetric form
    $M = \Sigma_a^{1/2}\,\Sigma_b\,\Sigma_a^{1/2}$, which has the same eigenvalues as
    $\Sigma_a\Sigma_b$: $\mathrm{Tr}(\Sigma_a\Sigma_b)^{1/2} = \sum_i \sqrt{\lambda_i(M)}$.
    $M$ is symmetric positive semi-definite, so its eigenvalues are real and round-off below zero is
    clipped: the result stays exact when the covariances are singular (fewer samples than feature
    dimensions, as with 64 generated images and 128 probe features), where the usual
    `sqrtm(sigma_a @ sigma_b)` picks up an imaginary part and needs an ad-hoc epsilon.
    Round-off can make the result a hair below zero; it is clamped at 0.
    """
    from scipy.linalg import LinAlgWarning, sqrtm

    mu_a, mu_b = np.atleast_1d(mu_a).astype(np.float64), np.atleast_1d(mu_b).astype(np.float64)
    sigma_a, sigma_b = np.atleast_2d(sigma_a), np.atleast_2d(sigma_b)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape:
        raise ValueError(
            f"feature widths differ: mu {mu_a.shape} vs {mu_b.shape}, "
            f"sigma {sigma_a.shape} vs {sigma_b.shape}; use the same feature network"
        )
    with warnings.catch_warnings():  # a singular sigma_a is fine: its root is still exact
        warnings.simplefilter("ignore", LinAlgWarning)
        root_a = np.real(sqrtm(sigma_a))
    root_a = (root_a + root_a.T) / 2
    middle = root_a @ sigma_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_covmean = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu_a - mu_b
    d2 = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_covmean
    return float(max(d2, 0.0))


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n_a, d) and (n_b, d)."""
    return frechet_from_statistics(*gaussian_statistics(feats_a), *gaussian_statistics(feats_b))


@torch.no_grad()
def extract_features(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Features (n, d) of `pixels` (n, ...), computed batch by batch by `feature_fn` on `device`."""
    owner = getattr(feature_fn, "__self__", feature_fn)  # a module, or a bound method of one
    if device is None and isinstance(owner, nn.Module):
        device = next(owner.parameters()).device
    chunks = []
    starts = range(0, len(pixels), batch_size)
    for start in tqdm(starts, desc="features", disable=not progress, leave=False):
        batch = pixels[start : start + batch_size].to(device)
        chunks.append(feature_fn(batch).flatten(1).double().cpu())
    return torch.cat(chunks).numpy()


def lab_fid(probe: nn.Module, pixels_a: torch.Tensor, pixels_b: torch.Tensor, **kw) -> float:
    """lab-FID: Fréchet distance of the image probe's penultimate features of two image sets."""
    if pixels_a.dim() != 4:
        raise ValueError(
            f"lab_fid takes images (b, 3, h, w), got {tuple(pixels_a.shape)}; "
            "for videos use lab_fvd with the video probe"
        )
    return frechet_distance(
        extract_features(probe.features, pixels_a, **kw),
        extract_features(probe.features, pixels_b, **kw),
    )


def lab_fvd(video_probe: nn.Module, videos_a: torch.Tensor, videos_b: torch.Tensor, **kw) -> float:
    """lab-FVD: Fréchet distance of the video probe's penultimate features of two video sets."""
    if videos_a.dim() != 5:
        raise ValueError(
            f"lab_fvd takes videos (b, t, 3, h, w), got {tuple(videos_a.shape)}; "
            "for images use lab_fid with the image probe"
        )
    return frechet_distance(
        extract_features(video_probe.features, videos_a, **kw),
        extract_features(video_probe.features, videos_b, **kw),
    )


# ---- the standard FID: torchvision's Inception-v3, only from the local torch hub cache ----


def inception_weights_path() -> Path:
    """Where torchvision keeps the ImageNet Inception-v3 weights (may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_backbone() -> str:
    """Which Inception `fid` would use: the cached ImageNet weights, or none (FID unavailable)."""
    path = inception_weights_path()
    if path.is_file():
        return f"inception_v3 (ImageNet, cached at {path})"
    return f"unavailable: ImageNet Inception-v3 weights not in the torch cache ({path})"


# pytorch-fid's feature depths: the spatial mean of the output of these torchvision blocks.
INCEPTION_BLOCKS = {
    64: ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1"),
    192: ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"),
    768: (
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
    ),
    2048: ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
}


class InceptionFeatures(nn.Module):
    r"""Inception-v3 features for FID: pixels in [0, 1] -> bilinear 299x299 -> [-1, 1] -> the
    spatially averaged output of the block of width `dims` (2048 = the standard pool features;
    64 / 192 / 768 are pytorch-fid's shallower variants, cheaper and used when data are few).

    `weights="cached"` loads torchvision's ImageNet weights from the torch hub cache and raises if
    they are absent (never downloads); `weights="random"` builds a randomly initialised network (for
    tests of the FID code path only: its FID values mean nothing).
    """

    def __init__(self, *, weights: str = "cached", dims: int = 2048, seed: int = 0):
        super().__init__()
        from torchvision.models import inception_v3

        if weights not in ("cached", "random"):
            raise ValueError(f"weights must be 'cached' or 'random', got {weights!r}")
        if dims not in INCEPTION_BLOCKS:
            raise ValueError(f"dims must be one of {sorted(INCEPTION_BLOCKS)}, got {dims}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # weights=None: torchvision never downloads; transform_input=False because the Google
            # weights expect [-1, 1] inputs, which forward produces itself.
            net = inception_v3(
                weights=None,
                aux_logits=True,
                transform_input=False,
                init_weights=weights == "random",
            )
        if weights == "cached":
            path = inception_weights_path()
            if not path.is_file():
                raise FileNotFoundError(
                    f"ImageNet Inception-v3 weights are not in the torch cache ({path}); "
                    "the standard FID needs them and nuwa_lab never downloads. Copy the "
                    f"file there (torchvision's {INCEPTION_FILE}) or use lab_fid (no download)"
                )
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        names = [n for d, block in INCEPTION_BLOCKS.items() if d <= dims for n in block]
        self.blocks = nn.Sequential(*[getattr(net, n) for n in names]).eval()
        self.weights, self.dims = weights, dims

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # always in eval mode (batch norm statistics frozen)

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) -> (b, dims)
        x = F.interpolate(pixels.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.blocks(2 * x - 1).mean(dim=(2, 3))


def fid(
    pixels_a: torch.Tensor,
    pixels_b: torch.Tensor,
    *,
    network: nn.Module | None = None,
    dims: int = 2048,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> float:
    """Standard FID between two image sets (b, 3, h, w) in [0, 1] with Inception-v3 pool features.

    `network=None` uses the cached ImageNet Inception (`InceptionFeatures(dims=dims)`); raises
    FileNotFoundError when it is not cached (check `inception_backbone()` first). With 2048-d
    features the matrix square root alone takes about a minute on a laptop CPU.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        network = (network or InceptionFeatures(dims=dims)).to(device)
    kw = dict(batch_size=batch_size, device=device, progress=progress)
    return frechet_distance(
        extract_features(network, pixels_a, **kw), extract_features(network, pixels_b, **kw)
    )


def fid_if_cached(pixels_a: torch.Tensor, pixels_b: torch.Tensor, **kw) -> tuple[float, str]:
    """(the standard FID, `inception_backbone()`) when torchvision's ImageNet Inception-v3 weights
    are in the torch cache; (NaN, the reason) when they are not: nothing is downloaded."""
    if not inception_weights_path().is_file():
        return float("nan"), inception_backbone()
    return fid(pixels_a, pixels_b, **kw), inception_backbone()
