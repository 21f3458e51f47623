"""The probe perceptual distance: known answers of the feature distance, and the properties of
d(x, x0) on a probe network (zero on identical images, symmetric, bounded, growing with noise,
differentiable in x with the probe frozen)."""

from __future__ import annotations

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.metrics.probe import ImageProbe, VideoProbe
from nuwa_lab.metrics.probe_perceptual import (
    ProbePerceptual,
    feature_distance,
    probe_activations,
)
from nuwa_lab.world import ShapesWorld


def _probe() -> ImageProbe:
    """An untrained image probe at the smoke preset: the properties below hold for any weights."""
    cfg = make_config("smoke")
    torch.manual_seed(0)
    return ImageProbe(world=cfg.world, channels=cfg.probe.channels)


def _images(n: int = 4) -> torch.Tensor:
    return ShapesWorld(make_config("smoke").world).images(list(range(n))).pixels


def test_feature_distance_known_answers() -> None:
    one = torch.zeros(1, 2, 3, 3)
    one[:, 0] = 1.0  # unit vector (1, 0) at every position
    other = torch.zeros(1, 2, 3, 3)
    other[:, 1] = 2.0  # (0, 2): orthogonal, length 2
    assert torch.allclose(feature_distance([one], [other]), torch.tensor([2.0]))  # |e1 - e2|^2
    assert torch.allclose(feature_distance([3 * one], [-one]), torch.tensor([4.0]))  # opposite
    assert torch.allclose(feature_distance([one, one], [other, -one]), torch.tensor([6.0]))  # sum
    half = other.clone()
    half[..., :, :1] = 0.0  # zero at the first column: that position contributes |e1 - 0|^2 = 1
    expected = (2.0 * 6 + 1.0 * 3) / 9  # the mean over the 3 x 3 positions
    assert torch.allclose(feature_distance([one], [half]), torch.tensor([expected]))


def test_unit_scaling_ignores_a_positive_factor_per_position_but_not_per_channel() -> None:
    torch.manual_seed(0)
    ys = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    y0s = [torch.randn_like(y) for y in ys]
    base = feature_distance(ys, y0s)
    per_position = [y * (0.1 + torch.rand(2, 1, *y.shape[-2:])) for y in ys]  # > 0, any position
    assert torch.allclose(feature_distance(per_position, y0s), base, atol=1e-6)
    per_channel = [y * (0.1 + torch.rand(1, y.shape[1], 1, 1)) for y in ys]
    assert not torch.allclose(feature_distance(per_channel, y0s), base, atol=1e-3)


def test_activations_are_the_probe_body_at_each_resolution() -> None:
    probe = _probe().eval()
    x = _images()
    ys = probe_activations(probe, x)
    c, size = probe.feature_dim // 8, x.shape[-1]
    assert [tuple(y.shape[1:]) for y in ys] == [
        (c, size, size),
        (2 * c, size // 2, size // 2),
        (4 * c, size // 4, size // 4),
        (8 * c, size // 8, size // 8),
    ]
    assert torch.equal(ys[-1], probe.body(2 * x - 1))  # the last one is what features() pools


def test_distance_is_zero_on_identical_images_symmetric_and_bounded() -> None:
    d = ProbePerceptual(_probe())
    x = _images()
    x0 = torch.flip(x, dims=[0])
    assert torch.equal(d(x, x), torch.zeros(len(x)))
    assert torch.allclose(d(x, x0), d(x0, x), atol=1e-6)
    noise = torch.rand_like(x)
    layers = len(probe_activations(d.probe, x))
    assert bool(((d(x, noise) > 0) & (d(x, noise) <= 4 * layers)).all())


def test_distance_grows_with_the_noise() -> None:
    d = ProbePerceptual(_probe())
    x = _images(8)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    scores = [float(d(x, (x + s * eps).clamp(0, 1)).mean()) for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert scores == sorted(scores) and scores[0] > 0, scores


def test_videos_are_scored_frame_by_frame() -> None:
    d = ProbePerceptual(_probe())
    x = _images(4)
    y = torch.rand_like(x)
    video_x, video_y = torch.stack([x[:2], x[2:]], dim=1), torch.stack([y[:2], y[2:]], dim=1)
    per_frame = d(x, y)  # images 0, 1 are frame 0 of videos 0, 1; images 2, 3 their frame 1
    expected = (per_frame[:2] + per_frame[2:]) / 2
    assert torch.allclose(d(video_x, video_y), expected, atol=1e-6)


def test_gradient_reaches_the_images_and_not_the_frozen_probe() -> None:
    d = ProbePerceptual(_probe())
    d.train()  # stays in eval mode
    assert not d.probe.training
    x = _images().requires_grad_(True)
    x0 = (x.detach() + 0.1 * torch.randn_like(x)).clamp(0, 1)
    d(x, x0).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in d.probe.parameters())


def test_needs_an_image_probe_and_equal_shapes() -> None:
    cfg = make_config("smoke")
    with pytest.raises(ValueError, match="image probe"):
        ProbePerceptual(VideoProbe(world=cfg.world, channels=cfg.probe.channels))
    d = ProbePerceptual(_probe())
    with pytest.raises(ValueError, match="shape"):
        d(_images(2), _images(3))
