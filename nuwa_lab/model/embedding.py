r"""Embeddings of the NÜWA encoder-decoder: 3D positions, tokens, `<bos>`, task and condition kind.

NÜWA §3.1 represents text, images and videos alike as 3D token grids (t, h, w) and gives each
token a position that is the sum of one learned vector per axis:

$$ e_{t,h,w} = E^{t}_{t} + E^{h}_{h} + E^{w}_{w} $$

so a (T, H, W) grid costs (T + H + W) d parameters rather than T H W d. A caption is the grid
(1, 1, L): its words use the width table.

Axis letters: b batch, t h w grid, n tokens in raster order (n = t H W + h W + w), d width.

| symbol                        | code                                         |
|-------------------------------|----------------------------------------------|
| $E^t, E^h, E^w$               | `PositionalEmbedding3D.time/.height/.width`  |
| $e_{t,h,w}$                   | `PositionalEmbedding3D(grid, positions)`     |
| visual token embedding        | `TargetEmbedding.token` (codes + `<bos>`)    |
| `<bos>`                       | id `codebook_size` of `TargetEmbedding.token`|
| task (condition kind x target)| `TargetEmbedding.task`, added to every input |
| condition kind                | `ConditionEmbedding.kind`                    |
| `<none>`                      | `ConditionEmbedding.none`, one learned vector|
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from nuwa_lab.attention.coords import raster_coords
from nuwa_lab.model.condition import KINDS, Condition


class PositionalEmbedding3D(nn.Module):
    r"""One learned table per axis, summed: $e_{t,h,w} = E^t_t + E^h_h + E^w_w$ (NÜWA §3.1)."""

    def __init__(self, *, dim: int, max_grid: tuple[int, int, int]) -> None:
        super().__init__()
        self.max_grid = tuple(int(g) for g in max_grid)
        self.time = nn.Embedding(self.max_grid[0], dim)
        self.height = nn.Embedding(self.max_grid[1], dim)
        self.width = nn.Embedding(self.max_grid[2], dim)

    def forward(self, grid: tuple[int, int, int], positions: Tensor | None = None) -> Tensor:
        """Embeddings (n, d) of `positions` (raster indices; all of `grid` when None)."""
        if any(g > m for g, m in zip(grid, self.max_grid, strict=True)):
            raise ValueError(
                f"grid {tuple(grid)} is larger than the positional tables {self.max_grid}; "
                "build the model with a larger max_grid / text_length (Nuwa.from_config does this)"
            )
        device = self.time.weight.device
        if positions is None:
            positions = torch.arange(grid[0] * grid[1] * grid[2], device=device)
        t, h, w = raster_coords(positions, grid)
        return self.time(t) + self.height(h) + self.width(w)


class ConditionEmbedding(nn.Module):
    """Encoder input: embedded tokens + 3D position + condition-kind vector."""

    def __init__(
        self,
        *,
        dim: int,
        text_vocab: int,
        sketch_codebook_size: int,
        max_grid: tuple[int, int, int],
        text_length: int,
    ) -> None:
        super().__init__()
        self.text = nn.Embedding(text_vocab, dim)
        self.sketch = nn.Embedding(sketch_codebook_size, dim)
        self.none = nn.Parameter(torch.zeros(dim))
        self.kind = nn.Embedding(len(KINDS), dim)
        t, h, w = max_grid
        self.position = PositionalEmbedding3D(dim=dim, max_grid=(t, h, max(w, text_length)))

    def forward(self, condition: Condition) -> Tensor:
        """(b, n, d) for a condition of n = t h w tokens."""
        tokens = rearrange(condition.tokens, "b t h w -> b (t h w)")
        if condition.kind == "text":
            _check_range(tokens, self.text.num_embeddings, "text ids", "text_vocab")
            x = self.text(tokens)
        elif condition.kind in ("image_sketch", "video_sketch"):
            _check_range(tokens, self.sketch.num_embeddings, "sketch codes", "sketch_codebook_size")
            x = self.sketch(tokens)
        else:  # "none": one learned vector per sample
            x = self.none.expand(tokens.shape[0], 1, -1)
        kind = self.kind.weight[KINDS.index(condition.kind)]
        return x + self.position(condition.grid) + kind


class TargetEmbedding(nn.Module):
    """Decoder input: visual code (or `<bos>`) + 3D position + task vector.

    The decoder input at raster position n is the code at n - 1 (`<bos>` at n = 0), embedded with
    the position n it predicts ("shift right"), so the target grid and the attention grid coincide.
    """

    def __init__(self, *, dim: int, codebook_size: int, max_grid: tuple[int, int, int]) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.bos_id = codebook_size
        self.token = nn.Embedding(codebook_size + 1, dim)
        self.task = nn.Embedding(2 * len(KINDS), dim)  # (condition kind, image | video)
        self.position = PositionalEmbedding3D(dim=dim, max_grid=max_grid)

    @staticmethod
    def task_index(condition_kind: str, grid: tuple[int, int, int]) -> int:
        return 2 * KINDS.index(condition_kind) + int(grid[0] > 1)

    def shift_right(self, target: Tensor) -> Tensor:
        """Decoder inputs (b, n) from target codes (b, n): `<bos>` then all but the last code."""
        bos = torch.full_like(target[:, :1], self.bos_id)
        return torch.cat([bos, target[:, :-1]], dim=1)

    def forward(
        self, inputs: Tensor, grid: tuple[int, int, int], task: int, positions: Tensor | None = None
    ) -> Tensor:
        """(b, m, d) for decoder inputs (b, m) at raster `positions` (all of `grid` when None)."""
        return self.token(inputs) + self.position(grid, positions) + self.task.weight[task]


def _check_range(tokens: Tensor, size: int, what: str, arg: str) -> None:
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= size):
        raise ValueError(
            f"{what} must lie in [0, {size}), got [{int(tokens.min())}, {int(tokens.max())}]; "
            f"build the model with a matching {arg}"
        )
