"""Attention3D: projections around `attend`, weight recording and the KV cache."""

from __future__ import annotations

import pytest
import torch

from nuwa_lab.attention import Attention3D, dense_mask


def layer(**kwargs):
    torch.manual_seed(0)
    return Attention3D(dim=16, heads=2, **kwargs)


def test_output_keeps_the_input_shape_and_gradients_reach_every_projection():
    att = layer(pattern="nearby", causal=True)
    x = torch.randn(3, 2 * 3 * 4, 16)
    y = att(x, q_grid=(2, 3, 4))
    assert y.shape == x.shape
    y.square().sum().backward()
    for name, p in att.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_recording_weights_does_not_change_the_output():
    att = layer(pattern="block", block=(1, 2, 2), causal=True)
    x = torch.randn(2, 18, 16)
    plain = att(x, q_grid=(2, 3, 3))
    att.record_weights = True
    recorded = att(x, q_grid=(2, 3, 3))
    assert torch.equal(plain, recorded)
    weights = att.last_weights
    assert weights.shape == (2, 2, 18, 18)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 18))
    mask = dense_mask("block", (2, 3, 3), causal=True, block=(1, 2, 2))
    assert torch.all(weights[:, :, ~mask] == 0)


@pytest.mark.parametrize("pattern", ["full", "axial", "block", "nearby"])
def test_kv_cache_decoding_equals_the_whole_forward(pattern):
    att = layer(pattern=pattern, causal=True, block=(1, 2, 2))
    grid = (2, 3, 3)
    x = torch.randn(2, 18, 16)
    whole = att(x, q_grid=grid)
    cache: dict = {}
    first = att(x[:, :5], q_grid=grid, cache=cache)  # a given prefix in one call
    rest = [att(x[:, i : i + 1], q_grid=grid, cache=cache) for i in range(5, 18)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), whole, atol=1e-5, rtol=1e-5)
    assert cache["k"].shape == (2, 2, 18, 8)


def test_cross_attention_cache_reuses_the_context_keys():
    att = layer(pattern="nearby", context_dim=12, extent=(0, 1, 1))
    x, context = torch.randn(2, 8, 16), torch.randn(2, 9, 12)
    whole = att(x, context, q_grid=(2, 2, 2), kv_grid=(1, 3, 3))
    cache: dict = {}
    steps = [
        att(
            x[:, i : i + 1],
            context,
            q_grid=(2, 2, 2),
            kv_grid=(1, 3, 3),
            q_positions=[i],
            cache=cache,
        )  # fmt: skip
        for i in range(8)
    ]
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, atol=1e-5, rtol=1e-5)
    assert cache["k"].shape == (2, 2, 9, 8)


def test_cache_rejects_tokens_out_of_raster_order():
    att = layer(pattern="full", causal=True)
    cache: dict = {}
    att(torch.randn(1, 2, 16), q_grid=(1, 2, 2), cache=cache)
    with pytest.raises(ValueError, match="raster positions 2..2"):
        att(torch.randn(1, 1, 16), q_grid=(1, 2, 2), q_positions=[3], cache=cache)


def test_invalid_pattern_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="extent"):
        Attention3D(dim=16, heads=2, pattern="nearby", extent=(1, -1, 1))
    with pytest.raises(ValueError, match="divisible"):
        Attention3D(dim=10, heads=4)
