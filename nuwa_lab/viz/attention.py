"""Pictures of attention patterns: which keys one query sees, frame by frame (notebook 03).

A footprint is the row of the mask for one query, reshaped onto the key grid: a (T', H', W') bool
tensor. `plot_footprints` draws several of them, one row each, one panel per frame; the query (or,
for cross-attention, its rescaled position on the key grid) is marked with a red dot.

| thing | code |
|---|---|
| M[q, ·] on the key grid | `footprint(pattern, q_grid, query, ...)` (T', H', W') bool |
| the picture | `plot_footprints({title: (footprint, marker)})` -> Figure |
| what the explorer draws | `footprint_view(q_grid, pattern=..., query=...)` -> (Figure, text) |
| the interactive explorer | `footprint_explorer(q_grid, pattern=..., query=...)` (ipywidgets) |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nuwa_lab.attention.coords import raster_index, rescale
from nuwa_lab.attention.masks import BORDERS, PATTERNS, make_spec, may_attend
from nuwa_lab.config import CAUSAL_RULES


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


CAUSAL_CHOICES = ("none", *CAUSAL_RULES)  # the explorer's choices: no mask, or a causal rule


def _check_causal(causal: str) -> None:
    if causal not in CAUSAL_CHOICES:
        raise ValueError(f"causal must be one of {', '.join(CAUSAL_CHOICES)}, got {causal!r}")


def footprint_view(
    q_grid: Sequence[int],
    kv_grid: Sequence[int] | None = None,
    *,
    pattern: str = "nearby",
    causal: str = "none",
    border: str = "truncate",
    extent: Sequence[int] = (1, 1, 1),
    block: Sequence[int] = (1, 2, 2),
    query: Sequence[int] | None = None,
):
    """What `footprint_explorer` draws for these settings: one footprint row -> (Figure, text).

    `causal` is "none" or a causal rule ("raster", "quadrant"; self-attention only); `query`
    defaults to the centre of the last frame. The text counts the keys the query sees.
    """
    _check_causal(causal)
    query = centre_query(q_grid) if query is None else tuple(int(c) for c in query)
    is_causal = causal != "none" and kv_grid is None
    fp = footprint(
        pattern, q_grid, query, kv_grid, is_causal,
        extent=tuple(extent), block=tuple(block), border=border,
        causal_rule=causal if is_causal else "raster",
    )  # fmt: skip
    fig = plot_footprints({f"{pattern} ({causal})": (fp, rescaled_query(q_grid, query, kv_grid))})
    text = f"{pattern}, causal {causal}: query {query} attends {int(fp.sum())} of {fp.numel()} keys"
    return fig, text


def centre_query(q_grid: Sequence[int]) -> tuple[int, int, int]:
    """A token of the last frame, near the centre: where the notebooks and explorers look."""
    t, h, w = q_grid
    return (t - 1, h // 2, w // 2)


def footprint_explorer(
    q_grid: Sequence[int],
    kv_grid: Sequence[int] | None = None,
    *,
    pattern: str = "nearby",
    causal: str = "none",
    border: str = "truncate",
    extent: Sequence[int] = (1, 1, 1),
    block: Sequence[int] = (1, 2, 2),
    query: Sequence[int] | None = None,
):
    """An ipywidgets explorer: pattern, extents, block, causality, border and the query position.

    It opens on the settings given (pass those of the figure above it) and draws what
    `footprint_view` draws, with the key count printed under the picture. Sliders reach the
    grid's size (or the value given, if larger).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    query = centre_query(q_grid) if query is None else tuple(int(c) for c in query)
    _check_causal(causal)
    footprint(  # every setting checked once, with an error that names it, before any widget
        pattern, q_grid, query, kv_grid, extent=tuple(extent), block=tuple(block), border=border
    )
    span = [max(q, k) for q, k in zip(q_grid, kv_grid or q_grid, strict=True)]  # (T, H, W)

    def slider(value: int, low: int, high: int, description: str):
        return widgets.IntSlider(
            value=value, min=low, max=max(high, value), description=description,
            continuous_update=False,
        )  # fmt: skip

    et, eh, ew = (
        slider(e, 0, n - 1, f"e^{a}") for a, e, n in zip("thw", extent, span, strict=True)
    )
    bt, bh, bw = (slider(b, 1, n, f"b^{a}") for a, b, n in zip("thw", block, span, strict=True))
    t, h, w = (
        slider(c, 0, n - 1, f"query {a}") for a, c, n in zip("thw", query, q_grid, strict=True)
    )

    def show(pattern, causal, border, et, eh, ew, bt, bh, bw, t, h, w):
        _, text = footprint_view(
            q_grid, kv_grid, pattern=pattern, causal=causal, border=border,
            extent=(et, eh, ew), block=(bt, bh, bw), query=(t, h, w),
        )  # fmt: skip
        plt.show()
        print(text)

    return widgets.interactive(
        show,
        pattern=widgets.Dropdown(options=PATTERNS, value=pattern),
        causal=widgets.Dropdown(options=CAUSAL_CHOICES, value=causal),
        border=widgets.Dropdown(options=BORDERS, value=border),
        et=et, eh=eh, ew=ew, bt=bt, bh=bh, bw=bw, t=t, h=h, w=w,
    )  # fmt: skip
