"""`Attention3D`: multi-head 3D attention with its projections, for the NÜWA encoder-decoder (§3.2).

Axis letters: b batch, n query tokens, m key tokens, d model width, heads, e head width.

| symbol (paper Eq. 4-6) | code |
|---|---|
| X (query tokens), C (context tokens) | `x` (b, n, d), `context` (b, m, d_c) or None (self) |
| W^Q, W^K, W^V | `to_q`, `to_k`, `to_v` |
| W^O | `to_out` |
| the 3D pattern | `pattern`, `extent`, `block`, `causal`, `causal_rule`, `border` |

A KV cache for autoregressive sampling is a plain dict passed as `cache=`: for self-attention the
new tokens' keys and values are appended to it (tokens arrive in raster order, so x's tokens sit at
the raster positions len(cache) ... len(cache) + n - 1 unless `q_positions` says so); for
cross-attention the context's keys and values are computed once and reused.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from nuwa_lab.attention.api import attend
from nuwa_lab.attention.dense import dense_weights
from nuwa_lab.attention.masks import make_spec


class Attention3D(nn.Module):
    r"""Multi-head attention over a 3D token grid with one sparsity pattern (NÜWA §3.2).

    $\mathrm{Attn}(X, C) = \mathrm{concat}_i\big[\mathrm{softmax}(X W^Q_i (C W^K_i)^\top / \sqrt{e}
    + \log M)\, C W^V_i\big] W^O$, with C = X for self-attention and M the pattern's mask.

    Set `record_weights = True` (attribute or argument) to keep the last attention weights as
    `last_weights` (b, heads, n, m), computed by the dense oracle on the side: forward's output is
    unchanged, but memory grows as n·m, so record on small grids only.
    """

    def __init__(
        self,
        *,
        dim: int,
        heads: int,
        pattern: str = "full",
        context_dim: int | None = None,
        head_dim: int | None = None,
        causal: bool = False,
        extent: Sequence[int] = (1, 1, 1),
        block: Sequence[int] = (1, 4, 4),
        causal_rule: str = "raster",
        border: str = "truncate",
        backend: str = "auto",
        bias: bool = False,
        record_weights: bool = False,
    ) -> None:
        super().__init__()
        if dim % heads and head_dim is None:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}; pass head_dim=")
        # validate the pattern arguments now, not at the first forward
        make_spec(pattern, (1, 1, 1), None, causal, extent=extent, block=block,
                  causal_rule=causal_rule, border=border)  # fmt: skip
        self.heads = heads
        self.head_dim = head_dim or dim // heads
        inner = heads * self.head_dim
        context_dim = context_dim or dim
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim, inner, bias=bias)
        self.to_out = nn.Linear(inner, dim)
        self.pattern_args = dict(
            pattern=pattern, causal=causal, extent=tuple(extent), block=tuple(block),
            causal_rule=causal_rule, border=border,
        )  # fmt: skip
        self.backend = backend
        self.record_weights = record_weights
        self.last_weights: torch.Tensor | None = None

    def extra_repr(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.pattern_args.items())
        return f"heads={self.heads}, head_dim={self.head_dim}, {args}, backend={self.backend!r}"

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b n (heads e) -> b heads n e", heads=self.heads)

    def _keys_values(self, x, context, cache, q_positions):
        """k, v (b, heads, m, e) and the query positions, using and updating `cache`."""
        if context is not None:  # cross-attention: the context's keys are computed once
            if cache is not None and "k" in cache:
                return cache["k"], cache["v"], q_positions
            k, v = self._split(self.to_k(context)), self._split(self.to_v(context))
            if cache is not None:
                cache["k"], cache["v"] = k, v
            return k, v, q_positions
        k, v = self._split(self.to_k(x)), self._split(self.to_v(x))
        if cache is None:
            return k, v, q_positions
        start = cache["k"].shape[2] if "k" in cache else 0
        expected = torch.arange(start, start + x.shape[1], device=x.device)
        if q_positions is None:
            q_positions = expected
        elif not torch.equal(torch.as_tensor(q_positions, device=x.device).reshape(-1), expected):
            raise ValueError(
                f"the self-attention cache holds {start} tokens, so x's {x.shape[1]} tokens must "
                f"sit at raster positions {start}..{start + x.shape[1] - 1}; "
                f"got q_positions={q_positions}"
            )
        if "k" in cache:
            k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
        cache["k"], cache["v"] = k, v
        return k, v, q_positions

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        q_grid: Sequence[int],
        kv_grid: Sequence[int] | None = None,
        q_positions: torch.Tensor | Sequence[int] | None = None,
        cache: dict | None = None,
    ) -> torch.Tensor:
        """(b, n, d) -> (b, n, d). `context` None = self-attention; `cache`: see the module."""
        if context is None and kv_grid is not None and tuple(kv_grid) != tuple(q_grid):
            raise ValueError(
                f"self-attention (context=None) got kv_grid {kv_grid} != q_grid {q_grid}"
            )
        q = self._split(self.to_q(x))
        k, v, q_positions = self._keys_values(x, context, cache, q_positions)
        out = attend(
            q, k, v, q_grid=q_grid, kv_grid=kv_grid, q_positions=q_positions,
            backend=self.backend, **self.pattern_args,
        )  # fmt: skip
        if self.record_weights:
            spec = make_spec(q_grid=q_grid, kv_grid=kv_grid, **self.pattern_args)
            positions = (
                None if q_positions is None
                else torch.as_tensor(q_positions, device=q.device).reshape(-1)
            )  # fmt: skip
            with torch.no_grad():
                self.last_weights = dense_weights(q.detach(), k.detach(), spec, positions)
        return self.to_out(rearrange(out, "b heads n e -> b n (heads e)"))
