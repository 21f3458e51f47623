r"""A trained model's own attention maps: record them, draw one query's weights, explore them.

For one sample, every attention layer of `Nuwa` keeps the weights it applied,
$A = \mathrm{softmax}(QK^\top/\sqrt{e} + \log M)$ (computed on the side with the dense mask, so
the model's output is unchanged). A row of $A$ is one query's distribution over the keys; reshaped
onto the key grid (T', H', W') it shows, frame by frame, where that token looked: inside its
pattern's footprint only, and how the trained model spends its weight there.

Axis letters: heads, n queries, m keys; grids (t, h, w).

| thing | code |
|---|---|
| all maps of one sample | `record_attention(model, condition, target)` -> `AttentionMaps` |
| one row of A on the key grid | `AttentionMaps.row(layer, head, query)` (T', H', W') |
| the picture | `plot_attention(maps, layer, head, query)` -> Figure |
| the explorer (ipywidgets) | `attention_explorer(maps, layer=..., head=..., query=...)` |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nuwa_lab.attention.coords import raster_index
from nuwa_lab.model.condition import Condition
from nuwa_lab.model.nuwa import Nuwa, grid_of
from nuwa_lab.viz.attention import centre_query, rescaled_query


@dataclass
class AttentionMaps:
    """Weights (heads, n, m) per layer name ("encoder.0.self", "decoder.1.cross", ...) and grids."""

    weights: dict[str, Tensor]
    q_grids: dict[str, tuple[int, int, int]]
    kv_grids: dict[str, tuple[int, int, int]]

    @property
    def layers(self) -> list[str]:
        return list(self.weights)

    def row(self, layer: str, head: int, query: Sequence[int]) -> Tensor:
        """One query's weights over the keys, reshaped onto the key grid (T', H', W')."""
        if layer not in self.weights:
            raise ValueError(f"unknown layer {layer!r}; recorded layers: {', '.join(self.layers)}")
        w, q_grid = self.weights[layer], self.q_grids[layer]
        if not 0 <= head < w.shape[0]:
            raise ValueError(f"head {head} out of range: the layer has {w.shape[0]} heads")
        if not all(0 <= c < g for c, g in zip(query, q_grid, strict=True)):
            raise ValueError(f"query {tuple(query)} lies outside the query grid {q_grid}")
        n = int(raster_index(*(torch.tensor(c) for c in query), q_grid))
        return w[head, n].reshape(self.kv_grids[layer])


@torch.no_grad()
def record_attention(model: Nuwa, condition: Condition, target_tokens: Tensor) -> AttentionMaps:
    """Teacher-forced forward pass on the first sample, with every layer's weights recorded."""
    condition = condition[0:1]
    target = target_tokens[0:1]
    target_grid = grid_of(target.shape[1:])
    modules = model.attention_modules()
    was = model.training
    model.eval()
    try:
        for m in modules.values():
            m.record = True
        model(condition, target)
    finally:
        for m in modules.values():
            m.record = False
        model.train(was)
    weights, q_grids, kv_grids = {}, {}, {}
    for name, m in modules.items():
        weights[name] = m.weights[0].cpu()
        m.weights = None
        on_target = name.startswith("decoder")
        q_grids[name] = target_grid if on_target else condition.grid
        kv_grids[name] = condition.grid if name.endswith("cross") or not on_target else target_grid
    return AttentionMaps(weights, q_grids, kv_grids)


def plot_attention(maps: AttentionMaps, layer: str, head: int, query: Sequence[int], panel=1.6):
    """One query's weights on the key grid, one panel per frame; the query (or, for
    cross-attention, where it lands on the condition's grid) marked in red."""
    import matplotlib.pyplot as plt

    row = maps.row(layer, head, query)
    kv_grid, q_grid = maps.kv_grids[layer], maps.q_grids[layer]
    frames = row.shape[0]
    fig, axes = plt.subplots(
        1,
        frames,
        figsize=(max(panel * frames, 4.5) + 1.2, panel + 0.7),
        squeeze=False,
        layout="constrained",
    )
    vmax = float(row.max())
    text_like = kv_grid[1] == 1 and kv_grid != q_grid  # a caption (1, 1, L): no place to mark
    marker = None if text_like else rescaled_query(q_grid, query, kv_grid)
    for t in range(frames):
        ax = axes[0, t]
        aspect = "auto" if text_like else "equal"
        image = ax.imshow(row[t].numpy(), cmap="magma", vmin=0.0, vmax=vmax, aspect=aspect)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"key frame t={t}", fontsize=8)
        if marker is not None and marker[0] == t:
            ax.plot(marker[2], marker[1], "o", color="#2ca02c", markersize=6, fillstyle="none")
    fig.colorbar(image, ax=axes[0, :].tolist(), fraction=0.05)
    fig.suptitle(
        f"{layer}, head {head}, query {tuple(int(c) for c in query)}: "
        f"{int((row > 0).sum())} keys with weight > 0",
        fontsize=9,
    )
    return fig


def attention_explorer(
    maps: AttentionMaps,
    *,
    layer: str | None = None,
    head: int = 0,
    query: Sequence[int] | None = None,
):
    """An ipywidgets explorer of the recorded maps: layer, head and the query's (t, h, w).

    It opens on `layer` (default: the last recorded), `head` and `query` (default: the centre of
    the layer's last query frame): pass those of the figure above it, so it opens on that figure.
    It draws `plot_attention` and prints the number of keys with weight.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    layer = maps.layers[-1] if layer is None else layer
    query = centre_query(maps.q_grids.get(layer, (1, 1, 1))) if query is None else query
    query = tuple(int(c) for c in query)
    maps.row(layer, head, query)  # checks layer, head and query, with an error naming the bad one
    slider = dict(continuous_update=False)
    layer_box = widgets.Dropdown(options=maps.layers, value=layer, description="layer")
    heads = maps.weights[layer].shape[0]
    head_box = widgets.IntSlider(value=head, min=0, max=heads - 1, description="head", **slider)
    t, h, w = (
        widgets.IntSlider(value=c, min=0, max=n - 1, description=f"query {a}", **slider)
        for a, c, n in zip("thw", query, maps.q_grids[layer], strict=True)
    )

    def resize(*_):
        grid = maps.q_grids[layer_box.value]
        for s, n in zip((t, h, w), grid, strict=True):
            s.max = n - 1
            s.value = min(s.value, n - 1)

    layer_box.observe(resize, names="value")

    def show(layer, head, t, h, w):
        row = maps.row(layer, head, (t, h, w))
        plot_attention(maps, layer, head, (t, h, w))
        plt.show()
        print(f"{layer}, head {head}, query {(t, h, w)}: {int((row > 0).sum())} keys with weight")

    return widgets.interactive(show, layer=layer_box, head=head_box, t=t, h=h, w=w)
