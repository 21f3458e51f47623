"""The explorers open on the settings they are given and draw what the static view draws."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from nuwa_lab.viz.attention import footprint, footprint_explorer, footprint_view
from nuwa_lab.viz.maps import AttentionMaps, attention_explorer

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def controls(explorer) -> dict:
    """The explorer's controls by argument name, with their current values."""
    return {w._kwarg: w.value for w in explorer.kwargs_widgets}


def test_the_footprint_explorer_starts_at_the_settings_given(capsys) -> None:
    grid = (4, 8, 8)
    start = dict(
        pattern="block",
        causal="quadrant",
        border="shift",
        extent=(1, 3, 3),
        block=(1, 4, 4),
        query=(3, 5, 6),
    )
    explorer = footprint_explorer(grid, **start)
    assert controls(explorer) == {
        "pattern": "block", "causal": "quadrant", "border": "shift",
        "et": 1, "eh": 3, "ew": 3, "bt": 1, "bh": 4, "bw": 4, "t": 3, "h": 5, "w": 6,
    }  # fmt: skip
    printed = capsys.readouterr().out.splitlines()[-1]  # it drew its first view on creation
    _, text = footprint_view(grid, **start)
    assert printed.endswith(text)
    keys = footprint("block", grid, (3, 5, 6), causal=True, block=(1, 4, 4), causal_rule="quadrant")
    assert int(keys.sum()) == 6  # rows 4-5, columns 4-6 of its block, in this frame only
    assert text.endswith("query (3, 5, 6) attends 6 of 256 keys")


def test_the_footprint_explorer_sliders_reach_values_beyond_the_grid() -> None:
    explorer = footprint_explorer((2, 4, 4), extent=(5, 1, 1), query=(0, 3, 0))
    sliders = {w._kwarg: w for w in explorer.kwargs_widgets}
    assert sliders["et"].value == 5 and sliders["et"].max == 5
    assert sliders["eh"].max == 3  # otherwise up to the grid: e = H - 1 sees every row
    assert (sliders["t"].value, sliders["h"].value, sliders["w"].value) == (0, 3, 0)


def test_the_footprint_explorer_rejects_a_bad_start_before_building_widgets() -> None:
    with pytest.raises(ValueError, match="outside q_grid"):
        footprint_explorer((2, 4, 4), query=(2, 0, 0))
    with pytest.raises(ValueError, match="causal must be one of none, raster, quadrant"):
        footprint_explorer((2, 4, 4), causal="future")


def fake_maps() -> AttentionMaps:
    g = torch.Generator().manual_seed(0)
    grids = {"encoder.0.self": ((1, 4, 4), (1, 4, 4)), "decoder.0.self": ((2, 4, 4), (2, 4, 4))}
    grids["decoder.0.cross"] = ((2, 4, 4), (1, 4, 4))
    weights = {
        name: torch.rand(3, q[0] * q[1] * q[2], k[0] * k[1] * k[2], generator=g).softmax(-1)
        for name, (q, k) in grids.items()
    }
    return AttentionMaps(
        weights, {n: q for n, (q, _) in grids.items()}, {n: k for n, (_, k) in grids.items()}
    )


def test_the_attention_explorer_starts_at_the_layer_head_and_query_given(capsys) -> None:
    maps = fake_maps()
    explorer = attention_explorer(maps, layer="decoder.0.self", head=2, query=(1, 3, 0))
    assert controls(explorer) == {"layer": "decoder.0.self", "head": 2, "t": 1, "h": 3, "w": 0}
    assert "decoder.0.self, head 2, query (1, 3, 0): 32 keys with weight" in capsys.readouterr().out
    default = attention_explorer(maps)  # the last layer, head 0, centre of the last frame
    assert controls(default) == {"layer": "decoder.0.cross", "head": 0, "t": 1, "h": 2, "w": 2}


def test_the_attention_explorer_keeps_the_query_inside_a_smaller_layer() -> None:
    explorer = attention_explorer(fake_maps(), layer="decoder.0.self", query=(1, 1, 1))
    layer = next(w for w in explorer.kwargs_widgets if w._kwarg == "layer")
    layer.value = "encoder.0.self"  # a one-frame grid
    assert controls(explorer)["t"] == 0


def test_the_attention_explorer_rejects_a_bad_start() -> None:
    with pytest.raises(ValueError, match="unknown layer"):
        attention_explorer(fake_maps(), layer="decoder.9.self")
    with pytest.raises(ValueError, match="head 3 out of range"):
        attention_explorer(fake_maps(), head=3)
    with pytest.raises(ValueError, match="outside the query grid"):
        attention_explorer(fake_maps(), layer="encoder.0.self", query=(1, 0, 0))
