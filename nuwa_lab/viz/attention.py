"""Pictures of attention patterns: which keys one query sees, frame by frame (notebook 03).

A footprint is the row of the mask for one query, reshaped onto the key grid: a (T', H', W') bool
tensor. `plot_footprints` draws several of them, one row each, one panel per frame; the query (or,
for cross-attention, its rescaled position on the key grid) is marked with a red dot.

| thing | code |
|---|---|
| M[q, ·] on the key grid | `footprint(pattern, q_grid, query, ...)` (T', H', W') bool |
| the picture | `plot_footprints({title: (footprint, marker)})` -> Figure |
| the interactive explorer | `footprint_explorer(q_grid)` (ipywidgets) |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nuwa_lab.attention.coords import raster_index, rescale
from nuwa_lab.attention.masks import BORDERS, PATTERNS, make_spec, may_attend


def footprint(
    pattern: str,
    q_grid: Sequence[int],
    query: Sequence[int],
    kv_grid: Sequence[int] | None = None,
    causal: bool = False,
    **pattern_args: Any,
) -> torch.Tensor:
    """The keys that the query at (t, h, w) of `q_grid` may attend, as a (T', H', W') bool grid."""
    spec = make_spec(pattern, q_grid, kv_grid, causal, **pattern_args)
    t, h, w = (int(c) for c in query)
    if not all(0 <= c < n for c, n in zip((t, h, w), spec.q_grid, strict=True)):
        raise ValueError(f"query {tuple(query)} is outside q_grid {spec.q_grid}")
    q_pos = raster_index(torch.tensor(t), torch.tensor(h), torch.tensor(w), spec.q_grid)
    row = may_attend(spec, q_pos, torch.arange(spec.n_kv))
    return row.reshape(spec.kv_grid)


def rescaled_query(
    q_grid: Sequence[int], query: Sequence[int], kv_grid: Sequence[int] | None = None
) -> tuple[int, int, int]:
    """Where the query lands on the key grid (itself for self-attention)."""
    kv_grid = q_grid if kv_grid is None else kv_grid
    return tuple(int(rescale(c, a, b)) for c, a, b in zip(query, q_grid, kv_grid, strict=True))


def plot_footprints(
    footprints: dict[str, tuple[torch.Tensor, Sequence[int] | None]], panel: float = 1.6
):
    """One row per footprint (title -> (T', H', W') bool, marker (t, h, w) or None)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    frames = max(f.shape[0] for f, _ in footprints.values())
    fig, axes = plt.subplots(
        len(footprints), frames, figsize=(panel * frames + 1.5, panel * len(footprints)),
        squeeze=False,
    )  # fmt: skip
    cmap = ListedColormap(["#eeeeee", "#3b75af"])
    for row, (title, (fp, marker)) in enumerate(footprints.items()):
        for t in range(frames):
            ax = axes[row, t]
            ax.set_xticks([])
            ax.set_yticks([])
            if t >= fp.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(fp[t].int().numpy(), cmap=cmap, vmin=0, vmax=1)
            height, width = fp.shape[1:]
            ax.set_xticks([x - 0.5 for x in range(1, width)], minor=True)
            ax.set_yticks([y - 0.5 for y in range(1, height)], minor=True)
            ax.grid(which="minor", color="white", linewidth=0.5)
            ax.tick_params(which="minor", length=0)
            if marker is not None and marker[0] == t:
                ax.plot(marker[2], marker[1], "o", color="#d62728", markersize=5)
            if row == 0 or fp.shape[0] != frames:
                ax.set_title(f"t={t}", fontsize=8)
        axes[row, 0].set_ylabel(
            f"{title}\n{int(fp.sum())} keys", fontsize=8, rotation=0, ha="right", va="center"
        )
    fig.tight_layout()
    return fig


def footprint_explorer(q_grid: Sequence[int], kv_grid: Sequence[int] | None = None):
    """An ipywidgets explorer: pattern, extents, block, causality, border and the query position."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    t_max, h_max, w_max = (n - 1 for n in q_grid)

    def show(pattern, causal, border, et, eh, ew, bt, bh, bw, t, h, w):
        is_causal = causal != "none" and kv_grid is None
        fp = footprint(
            pattern, q_grid, (t, h, w), kv_grid, is_causal,
            extent=(et, eh, ew), block=(bt, bh, bw), border=border,
            causal_rule=causal if is_causal else "raster",
        )  # fmt: skip
        marker = rescaled_query(q_grid, (t, h, w), kv_grid)
        plot_footprints({f"{pattern} ({causal})": (fp, marker)})
        plt.show()

    slider = dict(continuous_update=False)
    return widgets.interactive(
        show,
        pattern=widgets.Dropdown(options=PATTERNS, value="nearby"),
        causal=widgets.Dropdown(options=["none", "raster", "quadrant"], value="none"),
        border=widgets.Dropdown(options=BORDERS, value="truncate"),
        et=widgets.IntSlider(1, 0, 4, description="e^t", **slider),
        eh=widgets.IntSlider(1, 0, 4, description="e^h", **slider),
        ew=widgets.IntSlider(1, 0, 4, description="e^w", **slider),
        bt=widgets.IntSlider(1, 1, 4, description="b^t", **slider),
        bh=widgets.IntSlider(2, 1, 8, description="b^h", **slider),
        bw=widgets.IntSlider(2, 1, 8, description="b^w", **slider),
        t=widgets.IntSlider(t_max, 0, t_max, description="query t", **slider),
        h=widgets.IntSlider(h_max // 2, 0, h_max, description="query h", **slider),
        w=widgets.IntSlider(w_max // 2, 0, w_max, description="query w", **slider),
    )
