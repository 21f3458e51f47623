"""PSNR, SSIM, LPIPS and codebook usage on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nuwa_lab.metrics import codebook_usage, lpips_backbone, lpips_distance, perceptual, psnr, ssim

# ---------------------------------------------------------------- PSNR


def test_psnr_of_a_known_mse():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.full_like(x, 0.1)  # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    y[1] = 0.5  # MSE = 0.25 -> 10 log10(4) = 6.0206 dB
    assert torch.allclose(psnr(x, y), torch.tensor([20.0, 10 * math.log10(4)]), atol=1e-5)


def test_psnr_uses_data_range_and_is_infinite_for_identical_images():
    x = torch.rand(1, 3, 8, 8)
    assert torch.isinf(psnr(x, x)).all()
    y = x + 2.0  # MSE = 4 in a [0, 255] range -> 10 log10(255^2 / 4)
    expected = 10 * math.log10(255**2 / 4)
    assert psnr(x, y, data_range=255.0).item() == pytest.approx(expected, rel=1e-6)


def test_psnr_of_a_video_pools_all_frames():
    x = torch.zeros(1, 2, 3, 4, 4)
    y = x.clone()
    y[:, 0] = 0.2  # frame 0 MSE 0.04, frame 1 MSE 0 -> overall MSE 0.02
    assert psnr(x, y).item() == pytest.approx(10 * math.log10(1 / 0.02), rel=1e-6)


def test_psnr_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 7))


# ---------------------------------------------------------------- SSIM


def _ssim_reference(x: np.ndarray, y: np.ndarray, size=11, sigma=1.5, k1=0.01, k2=0.03) -> float:
    """Wang et al. 2004 written out with explicit windows (no convolution routine): (c, h, w)."""
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (k1 * 1.0) ** 2, (k2 * 1.0) ** 2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - size + 1):
            for j in range(x.shape[2] - size + 1):
                a, b = x[c, i : i + size, j : j + size], y[c, i : i + size, j : j + size]
                mu_a, mu_b = (w * a).sum(), (w * b).sum()
                var_a = (w * (a - mu_a) ** 2).sum()
                var_b = (w * (b - mu_b) ** 2).sum()
                cov = (w * (a - mu_a) * (b - mu_b)).sum()
                num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
                den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
                values.append(num / den)
    return float(np.mean(values))


def test_ssim_of_identical_images_is_one():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-6)


def test_ssim_of_constant_images_is_the_luminance_term():
    # constant images: sigma = 0, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, 0.5, 0.01**2
    x, y = torch.full((1, 3, 12, 12), a), torch.full((1, 3, 12, 12), b)
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-5)


def test_ssim_matches_an_independent_windowed_implementation():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 14, 13, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = ssim(x, y)
    for i in range(2):
        assert ours[i].item() == pytest.approx(
            _ssim_reference(x[i].numpy(), y[i].numpy()), abs=1e-5
        )


def test_ssim_decreases_with_noise_and_averages_video_frames():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 16, 16, generator=g)
    noise = torch.randn(x.shape, generator=g)
    values = [ssim(x, (x + s * noise).clamp(0, 1)).item() for s in (0.0, 0.05, 0.2, 0.5)]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(1.0)
    noisy = (x + 0.2 * noise).clamp(0, 1)
    video_a, video_b = torch.stack([x, x], dim=1), torch.stack([x, noisy], dim=1)
    assert ssim(video_a, video_b).item() == pytest.approx((1 + ssim(x, noisy).item()) / 2, abs=1e-6)


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------- codebook


def test_codebook_usage_of_known_index_sets():
    uniform = codebook_usage(torch.arange(8).repeat(3), 8)  # every code equally often
    assert uniform == {"usage": 1.0, "perplexity": pytest.approx(8.0), "used": 8}
    collapsed = codebook_usage(torch.zeros(2, 4, 4, dtype=torch.long), 16)  # one code only
    assert collapsed == {"usage": 1 / 16, "perplexity": pytest.approx(1.0), "used": 1}
    # two codes with p = (3/4, 1/4): perplexity exp(-(3/4 ln 3/4 + 1/4 ln 1/4))
    skewed = codebook_usage(torch.tensor([[5, 5, 5, 9]]), 10)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert skewed["usage"] == 0.2 and skewed["perplexity"] == pytest.approx(expected)


def test_codebook_usage_rejects_out_of_range_indices():
    with pytest.raises(ValueError, match="indices span 0..16 but the codebook has 16 codes"):
        codebook_usage(torch.tensor([0, 16]), 16)


# ---------------------------------------------------------------- LPIPS


@pytest.fixture
def empty_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub.get_dir() -> tmp_path/hub
    return tmp_path / "hub" / "checkpoints"


def test_lpips_says_random_backbone_when_weights_are_not_cached(empty_torch_cache):
    assert lpips_backbone() == "alex (random init: ImageNet weights not in the torch cache)"
    model = perceptual.lpips_model("alex")
    assert model.backbone_note == lpips_backbone()
    # the calibrated linear layers shipped with the package are loaded, not random
    import lpips

    shipped = torch.load(
        f"{lpips.__path__[0]}/weights/v0.1/alex.pth", map_location="cpu", weights_only=True
    )
    assert torch.equal(model.lin0.model[1].weight, shipped["lin0.model.1.weight"])


def test_lpips_uses_cached_imagenet_weights_when_present(empty_torch_cache):
    random_model = perceptual.lpips_model("alex")
    # a stand-in for torchvision's ImageNet file: its "features.<i>.*" keys, other values
    fake = {
        f"features.{name}.{pname}": p.detach() + 1.0
        for part in random_model.net.children()
        for name, layer in part.named_children()
        for pname, p in layer.named_parameters()
    }
    empty_torch_cache.mkdir(parents=True)
    torch.save(fake, empty_torch_cache / perceptual.BACKBONE_FILES["alex"])
    assert lpips_backbone() == "alex (ImageNet, cached)"
    model = perceptual.lpips_model("alex")
    assert model is not random_model and model.backbone_note == "alex (ImageNet, cached)"
    assert torch.equal(model.net.slice1[0].weight, fake["features.0.weight"])
    assert torch.equal(getattr(model.net.slice5, "10").bias, fake["features.10.bias"])


def test_lpips_is_zero_for_identical_images_and_grows_with_distortion(empty_torch_cache):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g)
    noise = torch.randn(x.shape, generator=g)
    d = [lpips_distance(x, (x + s * noise).clamp(0, 1)) for s in (0.0, 0.1, 0.4)]
    assert torch.allclose(d[0], torch.zeros(2), atol=1e-6)
    assert (d[1] > 0).all() and (d[2] > d[1]).all()
    y = (x + 0.1 * noise).clamp(0, 1)
    assert torch.allclose(lpips_distance(x, y), lpips_distance(y, x), atol=1e-6)
    video = lpips_distance(torch.stack([x, x], 1), torch.stack([x, y], 1))
    assert torch.allclose(video, d[1] / 2, atol=1e-6)
