"""Fréchet distance: known Gaussians, two draws of one distribution, corruption monotonicity, and
the Inception FID path with a randomly initialised network standing in for the cached one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nuwa_lab.config import make_config
from nuwa_lab.metrics import (
    InceptionFeatures,
    extract_features,
    fid,
    frechet_distance,
    frechet_from_statistics,
    inception_backbone,
)
from nuwa_lab.metrics import frechet as frechet_module
from nuwa_lab.recipes.probes import augment
from nuwa_lab.world import ShapesWorld


def _psd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _sym_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_frechet_of_diagonal_gaussians_equals_the_closed_form():
    # diagonal covariances commute: d^2 = |mu_a - mu_b|^2 + sum_i (sqrt(s_a,i) - sqrt(s_b,i))^2
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s_a, s_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(s_a) - np.sqrt(s_b)) ** 2)
    got = frechet_from_statistics(mu_a, np.diag(s_a), mu_b, np.diag(s_b))
    assert got == pytest.approx(expected, rel=1e-10)  # = 7.25 + 5 = 12.25
    assert got == pytest.approx(12.25)


def test_frechet_of_full_covariances_matches_the_symmetric_form():
    # Tr((S_a S_b)^{1/2}) = Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}): an independent route via eigh
    rng = np.random.default_rng(0)
    s_a, s_b = _psd(rng, 5), _psd(rng, 5)
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    root_a = _sym_sqrt(s_a)
    cross = np.trace(_sym_sqrt(root_a @ s_b @ root_a))
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * cross
    assert frechet_from_statistics(mu_a, s_a, mu_b, s_b) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_two_draws_of_one_distribution_is_near_zero():
    rng = np.random.default_rng(1)
    cov = _psd(rng, 4)
    draw = lambda n: rng.multivariate_normal(np.ones(4), cov, size=n)  # noqa: E731
    same = frechet_distance(draw(4000), draw(4000))
    shifted = frechet_distance(draw(4000), draw(4000) + 0.5)  # mean shift: d^2 = 4 * 0.25 = 1
    assert same < 0.05 * np.trace(cov) / 4 and same < 0.05
    assert shifted == pytest.approx(1.0, abs=0.15)


def test_frechet_survives_singular_covariances():
    # 6 samples in 20 dimensions: both covariances have rank <= 5
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 20)), rng.normal(size=(6, 20)) + 3.0
    d_ab = frechet_distance(a, b)
    assert np.isfinite(d_ab) and d_ab > 20 * 9 * 0.5  # the mean shift alone gives ~ 20 * 9
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-3)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(a).float()) < 1e-3


def test_frechet_of_fewer_samples_than_dimensions_matches_the_eigh_route():
    # 64 samples of 128 correlated features (the probe's width at the tiny preset): two rank-63
    # covariances. sqrtm(sigma_a @ sigma_b) of such products can turn complex (seen with the probe
    # features of 64 generated T2I images); the symmetric route stays real and exact
    rng = np.random.default_rng(3)
    mix = rng.normal(size=(128, 128)) / 8
    a = rng.normal(size=(64, 128)) @ mix
    b = rng.normal(size=(64, 128)) @ (mix + 0.1) + 0.2
    mu_a, s_a = a.mean(0), np.cov(a, rowvar=False)
    mu_b, s_b = b.mean(0), np.cov(b, rowvar=False)
    root_a = _sym_sqrt(s_a)
    cross = np.trace(_sym_sqrt(root_a @ s_b @ root_a))
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_frechet_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="feature widths differ"):
        frechet_distance(np.random.rand(5, 3), np.random.rand(5, 4))


def _random_features() -> nn.Module:
    """A fixed random conv net: a stand-in feature extractor for the monotonicity test."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 24, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return net.eval()


@pytest.mark.parametrize("corruption", ["noise", "blur", "colour"])
def test_frechet_grows_monotonically_with_corruption_strength(corruption):
    cfg = make_config("smoke")
    world = ShapesWorld(cfg.world)
    reference = world.images(range(0, 300)).pixels
    other = world.images(range(300, 600)).pixels  # a second draw: distance ~ 0 but not exactly
    net = _random_features()
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(other.shape, generator=g)

    def corrupt(x: torch.Tensor, s: float) -> torch.Tensor:
        if corruption == "noise":
            return (x + s * eps).clamp(0, 1)
        if corruption == "colour":
            return (x + torch.tensor([s, -s, 0.0]).view(1, 3, 1, 1)).clamp(0, 1)
        if s == 0:
            return x
        k = torch.exp(-(torch.arange(-2.0, 3.0) ** 2) / (2 * s**2))
        k = torch.outer(k, k) / k.sum() ** 2
        return nn.functional.conv2d(x, k.expand(3, 1, 5, 5), padding=2, groups=3)

    strengths = {"noise": [0, 0.05, 0.1, 0.2, 0.4], "blur": [0, 0.6, 1.0, 1.5, 2.5]}
    strengths["colour"] = [0, 0.05, 0.1, 0.2, 0.3]
    ref = extract_features(net, reference)
    d = [
        frechet_distance(ref, extract_features(net, corrupt(other, s)))
        for s in strengths[corruption]
    ]
    assert all(b > a for a, b in zip(d, d[1:], strict=False)), d
    assert d[0] < 0.1 * d[-1], d


def test_augment_is_deterministic_and_mild():
    x = ShapesWorld(make_config("smoke").world).videos(range(4)).pixels
    a = augment(x, torch.Generator().manual_seed(3), noise=0.05, blur=1.0)
    b = augment(x, torch.Generator().manual_seed(3), noise=0.05, blur=1.0)
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    plain = augment(x, torch.Generator().manual_seed(3), noise=0.0, blur=0.0)
    shift = plain - x  # only the colour offset: one constant per sample and channel, |.| <= 0.03
    inside = (x > 0.04) & (x < 0.96)  # away from the clamp
    assert (shift.abs() <= 0.03 + 1e-6).all()
    per_channel = torch.where(inside, shift, torch.nan).nanmean(dim=(1, 3, 4))  # (b, 3)
    assert torch.allclose(
        torch.where(inside, shift, 0), (per_channel[:, None, :, None, None] * inside), atol=1e-5
    )


def test_inception_is_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert inception_backbone().startswith("unavailable")
    with pytest.raises(FileNotFoundError, match="not in the torch cache"):
        InceptionFeatures()


def test_fid_path_with_a_random_inception_standing_in_for_the_cached_one(tmp_path, monkeypatch):
    from torchvision.models import inception_v3

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    stand_in = inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    path = frechet_module.inception_weights_path()
    path.parent.mkdir(parents=True)
    torch.save(stand_in.state_dict(), path)  # as torchvision's file would be, random values
    assert inception_backbone().startswith("inception_v3 (ImageNet, cached")
    # 64-d features (pytorch-fid's shallowest): the same code path, a 64 x 64 matrix square root
    cached = InceptionFeatures(dims=64)
    x = ShapesWorld(make_config("smoke").world).images(range(6)).pixels
    with torch.no_grad():
        up = nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        h = stand_in.maxpool1(
            stand_in.Conv2d_2b_3x3(stand_in.Conv2d_2a_3x3(stand_in.Conv2d_1a_3x3(2 * up - 1)))
        )
    assert torch.allclose(cached(x), h.mean(dim=(2, 3)), atol=1e-5)
    assert fid(x[:3], x[:3], network=cached) == pytest.approx(0.0, abs=1e-6)
    assert fid(x[:3], x[3:], network=cached) > 0
    assert fid(x[:3], x[3:], dims=64) == pytest.approx(fid(x[:3], x[3:], network=cached))
