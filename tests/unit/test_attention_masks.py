"""The mask rules of nuwa_lab.attention against brute-force definitions written out with loops."""

from __future__ import annotations

import itertools

import pytest
import torch

from nuwa_lab.attention import attend, dense_mask, make_spec
from nuwa_lab.attention.masks import keys_per_query


def coords(grid):
    return list(itertools.product(*(range(n) for n in grid)))


def brute_mask(pattern, q_grid, kv_grid=None, causal=False, extent=(1, 1, 1), block=(1, 4, 4),
               causal_rule="raster", border="truncate"):  # fmt: skip
    """The DESIGN.md table, one (query, key) pair at a time."""
    kv_grid = kv_grid or q_grid
    rows = []
    for qi, (t, h, w) in enumerate(coords(q_grid)):
        r = [c * lk // lq for c, lq, lk in zip((t, h, w), q_grid, kv_grid, strict=True)]
        row = []
        for ki, kc in enumerate(coords(kv_grid)):
            if pattern == "full":
                ok = True
            elif pattern == "axial":
                ok = sum(a == b for a, b in zip(kc, r, strict=True)) >= 2
            elif pattern == "block":
                ok = all(a // s == b // s for a, b, s in zip(kc, r, block, strict=True))
            else:
                ok = True
                for a, c, e, n in zip(kc, r, extent, kv_grid, strict=True):
                    if border == "truncate":
                        ok &= abs(a - c) <= e
                    else:
                        start = min(max(c - e, 0), max(n - 2 * e - 1, 0))
                        ok &= start <= a <= start + 2 * e
            if causal:
                ok &= (
                    ki <= qi
                    if causal_rule == "raster"
                    else all(a <= b for a, b in zip(kc, (t, h, w), strict=True))
                )
            row.append(ok)
        rows.append(row)
    return torch.tensor(rows)


CASES = [
    dict(pattern="full", q_grid=(2, 3, 2)),
    dict(pattern="axial", q_grid=(2, 3, 4)),
    dict(pattern="axial", q_grid=(3, 2, 2), kv_grid=(2, 4, 3)),
    dict(pattern="block", q_grid=(3, 5, 5), block=(2, 2, 3)),
    dict(pattern="block", q_grid=(2, 4, 4), kv_grid=(1, 2, 3), block=(1, 2, 2)),
    dict(pattern="nearby", q_grid=(3, 4, 5), extent=(1, 1, 2)),
    dict(pattern="nearby", q_grid=(3, 4, 5), extent=(1, 2, 1), border="shift"),
    dict(pattern="nearby", q_grid=(2, 5, 5), kv_grid=(3, 3, 4), extent=(0, 1, 1)),
    dict(pattern="nearby", q_grid=(2, 3, 3), extent=(3, 4, 4), border="shift"),
    dict(pattern="nearby", q_grid=(3, 3, 4), causal=True, extent=(1, 1, 1)),
    dict(pattern="nearby", q_grid=(3, 3, 4), causal=True, causal_rule="quadrant", border="shift"),
    dict(pattern="axial", q_grid=(2, 3, 3), causal=True),
    dict(pattern="block", q_grid=(2, 3, 3), causal=True, causal_rule="quadrant", block=(2, 2, 2)),
    dict(pattern="full", q_grid=(1, 1, 6), causal=True, causal_rule="quadrant"),
    dict(pattern="nearby", q_grid=(1, 3, 3), kv_grid=(1, 1, 7), extent=(0, 0, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_dense_mask_matches_the_brute_force_definition(case):
    assert torch.equal(dense_mask(**case), brute_mask(**case))


def test_nearby_interior_query_sees_the_full_window():
    mask = dense_mask("nearby", (5, 6, 7), extent=(1, 2, 3))
    centre = (2 * 6 + 3) * 7 + 3
    assert int(mask[centre].sum()) == 3 * 5 * 7
    assert int(mask.sum(-1).max()) == 3 * 5 * 7
    assert int(mask[0].sum()) == 2 * 3 * 4  # the corner: truncated on every axis


def test_shift_border_keeps_the_window_size_when_the_grid_is_large_enough():
    counts = dense_mask("nearby", (3, 5, 6), extent=(1, 1, 2), border="shift").sum(-1)
    assert torch.all(counts == 3 * 3 * 5)


def test_shift_border_clamps_to_a_grid_smaller_than_the_window():
    counts = dense_mask("nearby", (2, 3, 2), extent=(2, 2, 2), border="shift").sum(-1)
    assert torch.all(counts == 2 * 3 * 2)


def test_keys_per_query_match_the_complexity_table():
    assert torch.all(keys_per_query(make_spec("axial", (3, 4, 5))) == 3 + 4 + 5 - 2)
    assert torch.all(keys_per_query(make_spec("block", (2, 4, 6), block=(2, 2, 3))) == 12)
    assert torch.all(keys_per_query(make_spec("full", (2, 2, 3))) == 12)


def test_block_mask_handles_partial_edge_blocks():
    mask = dense_mask("block", (1, 5, 5), block=(1, 2, 2))
    assert int(mask[0].sum()) == 4  # a full 2x2 block
    assert int(mask[24].sum()) == 1  # the corner block (4, 4) alone


def test_causal_raster_is_lower_triangular_and_quadrant_is_inside_it():
    for pattern in ("full", "axial", "block", "nearby"):
        raster = dense_mask(pattern, (2, 3, 4), causal=True, block=(2, 2, 2))
        quadrant = dense_mask(
            pattern, (2, 3, 4), causal=True, causal_rule="quadrant", block=(2, 2, 2)
        )
        assert torch.equal(raster, raster.tril())
        assert not torch.any(quadrant & ~raster)
        assert torch.all(raster.diagonal()) and torch.all(quadrant.diagonal())


def test_cross_attention_rescales_query_coordinates_onto_the_key_grid():
    mask = dense_mask("nearby", (1, 4, 4), (1, 2, 2), extent=(0, 0, 0))
    # query (0, 3, 1) lands on key (0, 3*2//4, 1*2//4) = (0, 1, 0), raster index 2
    assert mask[3 * 4 + 1].nonzero().flatten().tolist() == [2]


def test_text_condition_grid_with_nearby_pattern():
    mask = dense_mask("nearby", (2, 2, 2), (1, 1, 8), extent=(0, 0, 1))
    # query w=1 of width 2 rescales to 4 of 8: keys 3, 4, 5
    assert mask[1].nonzero().flatten().tolist() == [3, 4, 5]
    assert torch.all(dense_mask("full", (2, 2, 2), (1, 1, 8)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pattern="nearby", q_grid=(2, 2, 2), extent=(1, -1, 1)), "no visible key"),
        (dict(pattern="block", q_grid=(2, 2, 2), block=(1, 0, 2)), "block"),
        (dict(pattern="diagonal", q_grid=(2, 2, 2)), "unknown pattern"),
        (dict(pattern="full", q_grid=(2, 2, 2), causal_rule="zigzag"), "unknown causal_rule"),
        (dict(pattern="nearby", q_grid=(2, 2, 2), border="wrap"), "unknown border"),
        (dict(pattern="full", q_grid=(2, 2)), "q_grid"),
        (dict(pattern="full", q_grid=(2, 2, 2), kv_grid=(1, 2, 2), causal=True), "causal=False"),
    ],
)
def test_invalid_arguments_raise_before_computing(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dense_mask(**kwargs)


@pytest.mark.parametrize(
    "shapes, kwargs, message",
    [
        (((1, 2, 7, 4), (1, 2, 8, 4)), dict(q_grid=(2, 2, 2)), "has 8 tokens but q has 7"),
        (((1, 2, 8, 4), (1, 2, 6, 4)), dict(q_grid=(2, 2, 2)), "kv_grid"),
        (((1, 2, 8, 4), (1, 3, 8, 4)), dict(q_grid=(2, 2, 2)), "shapes do not match"),
        (((1, 2, 8, 4), (1, 2, 8, 5)), dict(q_grid=(2, 2, 2)), "head width"),
        (((1, 2, 8, 4), (1, 2, 8, 4)), dict(q_grid=(2, 2, 2), backend="cuda"), "unknown backend"),
        (((1, 2, 2, 4), (1, 2, 8, 4)), dict(q_grid=(2, 2, 2), q_positions=[9, 1]), "raster"),
        (((1, 2, 1, 4), (1, 2, 3, 4)), dict(q_grid=(2, 2, 2), q_positions=[5], causal=True), "6"),
        (((1, 2, 1, 4), (1, 2, 3, 4)), dict(q_grid=(2, 2, 2), q_positions=[1]), "whole key grid"),
    ],
)
def test_attend_rejects_mismatched_shapes(shapes, kwargs, message):
    q = torch.zeros(shapes[0])
    k = torch.zeros(shapes[1])
    with pytest.raises(ValueError, match=message):
        attend(q, k, k, pattern="nearby", **kwargs)


def test_a_pattern_placed_on_grids_is_the_spec_make_spec_builds():
    from nuwa_lab.attention import AttentionPattern

    pattern = AttentionPattern(pattern="nearby", causal=True, extent=1, block=2)
    assert pattern.extent == (1, 1, 1) and pattern.block == (2, 2, 2)  # normalised once
    spec = pattern.on((2, 3, 3))
    assert spec == make_spec("nearby", (2, 3, 3), None, True, extent=1, block=2)
    assert torch.equal(pattern.mask((2, 3, 3)), dense_mask("nearby", (2, 3, 3), causal=True))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"pattern": "sparse"}, "pattern"),
        ({"extent": (1, -1, 1)}, "extent"),
        ({"block": (0, 2, 2)}, "block"),
        ({"causal_rule": "future"}, "causal_rule"),
        ({"border": "wrap"}, "border"),
    ],
)
def test_a_bad_pattern_is_refused_where_it_is_made(kwargs, word):
    from nuwa_lab.attention import AttentionPattern

    with pytest.raises(ValueError, match=word):
        AttentionPattern(**kwargs)


def test_every_pattern_has_one_efficient_path_and_an_unknown_one_is_refused():
    from nuwa_lab.attention import EFFICIENT_PATHS, PATTERNS, efficient_path

    assert set(EFFICIENT_PATHS) == set(PATTERNS)
    with pytest.raises(ValueError, match="no efficient attention path for pattern 'sparse'"):
        efficient_path("sparse")
