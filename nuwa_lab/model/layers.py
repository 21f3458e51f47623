r"""Pre-norm transformer blocks of the NÜWA encoder-decoder (NÜWA §3.2, Eq. 5-9).

The attention itself (which keys a query may see, and the efficient path that computes it) lives in
`nuwa_lab.attention`; this module adds the projections, the residual structure and the key/value
cache for incremental decoding.

Encoder block (over the condition C):
$$ C' = C + \mathrm{SA}(\mathrm{LN}(C)), \qquad C'' = C' + \mathrm{MLP}(\mathrm{LN}(C')) $$
Decoder block (over the target Y, attending to the encoder output $C^{(L)}$):
$$ Y' = Y + \mathrm{SA}_{causal}(\mathrm{LN}(Y)), \quad
   Y'' = Y' + \mathrm{CA}(\mathrm{LN}(Y'), C^{(L)}), \quad
   Y''' = Y'' + \mathrm{MLP}(\mathrm{LN}(Y'')) $$

Axis letters: b batch, n / m tokens (keys / queries) in raster order, d width, heads, e = d / heads.

| symbol              | code                                           |
|---------------------|------------------------------------------------|
| $W^Q, W^K, W^V$     | `SelfAttention.qkv`, `CrossAttention.q/.kv`    |
| $W^O$               | `*.out`                                        |
| SA / CA pattern     | `AttentionPattern` (pattern, causal, extents ...) |
| LN                  | `nn.LayerNorm` before each sub-layer (pre-norm)|
| cached $K, V$       | `LayerCache` (self: (b, heads, N, e) buffers)  |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from nuwa_lab.attention import AttentionPattern, attend


def run_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    spec: AttentionPattern,
    *,
    q_grid: tuple[int, int, int],
    kv_grid: tuple[int, int, int],
    q_positions: Tensor | None = None,
    key_padding: Tensor | None = None,
) -> Tensor:
    """softmax(q k^T / sqrt(e)) v over the keys `spec` allows.

    q (b, heads, m, e), k and v (b, heads, n, e) -> (b, heads, m, e).

    `key_padding` (b, n) bool (True = real key) masks padded caption words; it is only used with
    the full pattern (text conditions), where it is the only mask, so the computation is exactly
    the full pattern's path (`scaled_dot_product_attention`) with that mask.
    """
    if key_padding is not None:
        if spec.pattern != "full" or spec.causal:
            raise ValueError(
                f"key padding is only supported with non-causal full attention, got {spec}; "
                "padded (text) conditions are attended in full"
            )
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_padding[:, None, None, :])
    return attend(q, k, v, q_grid=q_grid, kv_grid=kv_grid, q_positions=q_positions, **spec.kwargs())


def attention_weights(
    q: Tensor,
    k: Tensor,
    spec: AttentionPattern,
    *,
    q_grid,
    kv_grid,
    q_positions: Tensor | None = None,
    key_padding: Tensor | None = None,
) -> Tensor:
    """The explicit weights (b, heads, m, n) that `run_attention` applies (for visualisation)."""
    allowed = spec.mask(q_grid, kv_grid).to(q.device)
    if q_positions is not None:
        allowed = allowed[q_positions]
    allowed = allowed[None, None]
    if key_padding is not None:
        allowed = allowed & key_padding[:, None, None, :]
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)


@dataclass
class LayerCache:
    """Keys and values of one decoder layer during sampling.

    self_k / self_v: (b, heads, N, e) buffers over the whole target grid, filled as positions are
    decoded (unfilled positions are never attended: the self-attention is causal).
    cross_k / cross_v: (b, heads, n_c, e) of the encoder output, computed once per condition.
    """

    self_k: Tensor
    self_v: Tensor
    cross_k: Tensor
    cross_v: Tensor


class _Heads(nn.Module):
    def __init__(self, *, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(
                f"dim {dim} is not divisible by heads {heads}; pick heads dividing dim"
            )
        self.heads = heads
        self.record = False  # when True, keep the last attention weights in `.weights`
        self.weights: Tensor | None = None

    def split(self, x: Tensor) -> Tensor:
        return rearrange(x, "b n (heads e) -> b heads n e", heads=self.heads)

    def merge(self, x: Tensor) -> Tensor:
        return rearrange(x, "b heads n e -> b n (heads e)")

    def _run(self, q, k, v, spec, **kw) -> Tensor:
        if self.record:
            self.weights = attention_weights(q, k, spec, **kw).detach()
        return run_attention(q, k, v, spec, **kw)


class SelfAttention(_Heads):
    r"""Multi-head self-attention $\mathrm{softmax}(QK^\top/\sqrt{e})V$ restricted by a pattern."""

    def __init__(self, *, dim: int, heads: int) -> None:
        super().__init__(dim=dim, heads=heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(
        self,
        x: Tensor,
        spec: AttentionPattern,
        *,
        grid: tuple[int, int, int],
        key_padding: Tensor | None = None,
        cache: LayerCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (b, m, d) at raster `positions` of `grid` (all of it when None) -> (b, m, d).

        With a `cache`, the new keys/values are written at `positions` and the queries attend to the
        whole buffer (the pattern and causality pick the keys: q_positions).
        """
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:
            cache.self_k[:, :, positions] = k
            cache.self_v[:, :, positions] = v
            k, v = cache.self_k, cache.self_v
        y = self._run(
            q, k, v, spec, q_grid=grid, kv_grid=grid, q_positions=positions, key_padding=key_padding
        )
        return self.out(self.merge(y))


class CrossAttention(_Heads):
    r"""Multi-head cross-attention from the target grid to the encoder output (rescaled pattern)."""

    def __init__(self, *, dim: int, heads: int) -> None:
        super().__init__(dim=dim, heads=heads)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """(k, v), each (b, heads, n_c, e), of the encoder output `memory` (b, n_c, d)."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(
        self,
        x: Tensor,
        kv: tuple[Tensor, Tensor],
        spec: AttentionPattern,
        *,
        grid: tuple[int, int, int],
        memory_grid: tuple[int, int, int],
        key_padding: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        q = self.split(self.q(x))
        y = self._run(
            q,
            *kv,
            spec,
            q_grid=grid,
            kv_grid=memory_grid,
            q_positions=positions,
            key_padding=key_padding,
        )
        return self.out(self.merge(y))


class MLP(nn.Sequential):
    """Position-wise feed-forward: Linear(d, r d) -> GELU -> Linear(r d, d), without biases.

    No biases anywhere in the blocks (as PaLM and nanoGPT's option): the LayerNorms carry the
    offsets, and the CPU is spared the bias-gradient reductions.
    """

    def __init__(self, *, dim: int, ratio: int) -> None:
        super().__init__(
            nn.Linear(dim, ratio * dim, bias=False),
            nn.GELU(),
            nn.Linear(ratio * dim, dim, bias=False),
        )


class EncoderBlock(nn.Module):
    """Pre-norm self-attention + MLP over the condition grid."""

    def __init__(self, *, dim: int, heads: int, mlp_ratio: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim=dim, heads=heads)
        self.mlp = MLP(dim=dim, ratio=mlp_ratio)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, spec, *, grid, key_padding=None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), spec, grid=grid, key_padding=key_padding))
        return x + self.drop(self.mlp(self.norm2(x)))


class DecoderBlock(nn.Module):
    """Pre-norm causal self-attention, cross-attention to the encoder, MLP: over the target grid."""

    def __init__(self, *, dim: int, heads: int, mlp_ratio: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim=dim, heads=heads)
        self.cross_attn = CrossAttention(dim=dim, heads=heads)
        self.mlp = MLP(dim=dim, ratio=mlp_ratio)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        cross_kv: tuple[Tensor, Tensor],
        self_spec: AttentionPattern,
        cross_spec: AttentionPattern,
        *,
        grid: tuple[int, int, int],
        memory_grid: tuple[int, int, int],
        memory_padding: Tensor | None = None,
        cache: LayerCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        h = self.self_attn(self.norm1(x), self_spec, grid=grid, cache=cache, positions=positions)
        x = x + self.drop(h)
        h = self.cross_attn(
            self.norm2(x),
            cross_kv,
            cross_spec,
            grid=grid,
            memory_grid=memory_grid,
            key_padding=memory_padding,
            positions=positions,
        )
        x = x + self.drop(h)
        return x + self.drop(self.mlp(self.norm3(x)))


def new_cache(block: DecoderBlock, memory: Tensor, *, batch: int, length: int) -> LayerCache:
    """Empty self-attention buffers for `length` target tokens + the encoder's keys/values."""
    attn = block.self_attn
    dim = attn.out.in_features
    shape = (batch, attn.heads, length, dim // attn.heads)
    empty = dict(device=memory.device, dtype=memory.dtype)
    cross_k, cross_v = block.cross_attn.keys_values(memory)
    return LayerCache(torch.zeros(shape, **empty), torch.zeros(shape, **empty), cross_k, cross_v)
