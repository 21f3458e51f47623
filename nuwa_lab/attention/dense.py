"""The dense oracle: build the whole (Nq, Nk) mask, mask the scores, softmax (NÜWA §3.2, Eq. 4-6).

$y = \\mathrm{softmax}(Q K^\\top / \\sqrt{e} + \\log M)\\, V$
with $M$ the 0/1 mask of `masks.may_attend`.

It is the slowest path and the definition every other path is tested against; memory and time grow
as Nq·Nk. Axis letters: b batch, heads, n query tokens, m key tokens, e head width.

| symbol | code |
|---|---|
| Q, K, V | `q` (b, heads, n, e), `k`, `v` (b, heads, m, e) |
| M | `spec_mask(spec, q_positions, n_keys)` (n, m) bool |
| A = softmax(...) | `dense_weights(...)` (b, heads, n, m) |

`masked_sdpa_attend` computes the same with the mask in `F.scaled_dot_product_attention`: what
the "auto" backend runs on small grids. On a video grid it runs one query frame at a time over
the contiguous run of keys that frame's rows can see (`frame_bands`): frames are contiguous in
raster order, so nearby attention with extent e^t = 1 needs keys of frames t-1..t only, and the
(H·W, 2·H·W) mask of each frame skips the products with keys no row of it sees. On the CPU in
fp32 the bands run in one autograd node (`_FrameBands`), whose backward adds each band's key and
value gradients into one buffer: sliced keys would each cost autograd a zero-filled tensor of the
whole k (and v) and an add into it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from nuwa_lab.attention.masks import AttentionSpec, spec_mask

CACHED_MASK_PAIRS = 2**20  # masks up to 1 MB (bool) are kept between calls


@lru_cache(maxsize=64)
def _cached_mask(spec: AttentionSpec, n_keys: int, device: str) -> torch.Tensor:
    return spec_mask(spec, None, n_keys=n_keys, device=torch.device(device))


@lru_cache(maxsize=64)
def _every_row_sees_a_key(spec: AttentionSpec, n_keys: int, device: str) -> bool:
    # read once per cached mask: on a GPU, `bool(tensor)` waits for the device (a host sync),
    # which every attention layer of every forward pass would otherwise pay
    return bool(_cached_mask(spec, n_keys, device).any(-1).all())


def oracle_mask(
    spec: AttentionSpec, q_positions: torch.Tensor | None, n_keys: int, device
) -> torch.Tensor:
    """M, (n, m) bool: the rows of `q_positions` (all queries when None), every row non-empty."""
    if spec.n_q * n_keys <= CACHED_MASK_PAIRS:
        # decoding steps (q_positions) take their rows of the cached mask: building them anew
        # for every layer at every step costs more than the step's attention itself
        mask = _cached_mask(spec, n_keys, str(device))
        if _every_row_sees_a_key(spec, n_keys, str(device)):
            return mask if q_positions is None else mask[q_positions]  # so every subset too
        if q_positions is not None:
            mask = mask[q_positions]
    else:
        mask = spec_mask(spec, q_positions, n_keys=n_keys, device=device)
    if not bool(mask.any(-1).all()):
        row = int((~mask.any(-1)).nonzero()[0, 0])
        raise ValueError(f"query row {row} has no visible key under {spec}; check the arguments")
    return mask


def dense_weights(
    q: torch.Tensor, k: torch.Tensor, spec: AttentionSpec, q_positions: torch.Tensor | None = None
) -> torch.Tensor:
    """A = softmax(Q Kᵀ/√e masked by M): (b, heads, n, m), rows summing to 1 over visible keys."""
    mask = oracle_mask(spec, q_positions, k.shape[-2], q.device)
    scores = torch.einsum("bhne,bhme->bhnm", q, k) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill_(
        ~mask, float("-inf")
    )  # in place: einsum's backward does not need it
    return scores.softmax(dim=-1)


def dense_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = A V, (b, heads, n, e)."""
    return torch.einsum("bhnm,bhme->bhne", dense_weights(q, k, spec, q_positions), v)


# slice per query frame only when it skips at least this share of the (query, key) pairs
MIN_SKIPPED_SHARE = 0.25


@lru_cache(maxsize=64)
def frame_bands(spec: AttentionSpec, n_keys: int, device: str) -> tuple | None:
    """Per query frame t: (first query, end query, first key, end key, mask of that block), the
    smallest contiguous key range holding every key the frame's rows see; None when the frames
    together would skip less than `MIN_SKIPPED_SHARE` of the pairs (then one call is faster)."""
    if spec.q_grid[0] < 2:
        return None
    mask = _cached_mask(spec, n_keys, device)
    per_frame = spec.q_grid[1] * spec.q_grid[2]
    bands, pairs = [], 0
    for start in range(0, spec.n_q, per_frame):
        rows = mask[start : start + per_frame]
        seen = rows.any(0).nonzero().flatten()
        lo, hi = int(seen[0]), int(seen[-1]) + 1
        bands.append((start, start + per_frame, lo, hi, rows[:, lo:hi].contiguous()))
        pairs += per_frame * (hi - lo)
    if pairs > (1 - MIN_SKIPPED_SHARE) * spec.n_q * n_keys:
        return None
    return tuple(bands)


def masked_sdpa_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """The oracle's mask M handed to `scaled_dot_product_attention`: the same y = A V in one fused
    kernel. It does all n·m products, like the oracle, so it only pays on small grids, where it
    beats the gathers of the sparse paths ("auto" picks it there; see `api.AUTO_MASKED_PAIRS`).

    With every query present on a video grid, one call per query frame over its `frame_bands`
    key range. Measured on 2 CPU cores, forward + backward, causal nearby (4, 8, 8) with extents
    (1, 3, 3), batch 16, 4 heads of 32: 10.3 ms against 13.9 ms for one call over all keys."""
    mask = oracle_mask(spec, q_positions, k.shape[-2], q.device)
    small = spec.n_q * k.shape[-2] <= CACHED_MASK_PAIRS
    bands = frame_bands(spec, k.shape[-2], str(q.device)) if q_positions is None and small else None
    if bands is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if q.device.type == "cpu" and q.dtype == torch.float32:
        return _FrameBands.apply(q, k, v, _additive_bands(spec, k.shape[-2]))
    parts = [
        F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, lo:hi], v[:, :, lo:hi], attn_mask=m)
        for a, b, lo, hi, m in bands
    ]
    return torch.cat(parts, dim=2)


# the fused CPU kernel behind F.scaled_dot_product_attention, and its backward
_flash_cpu = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_cpu_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


@lru_cache(maxsize=64)
def _additive_bands(spec: AttentionSpec, n_keys: int) -> tuple:
    """`frame_bands` on the CPU, each mask as the additive bias the kernel reads (0 seen, -inf not),
    made once instead of at every call."""
    bands = frame_bands(spec, n_keys, "cpu")
    return tuple(
        (a, b, lo, hi, torch.zeros(m.shape).masked_fill_(~m, float("-inf")))
        for a, b, lo, hi, m in bands
    )


class _FrameBands(torch.autograd.Function):
    """y[band] = SDPA(q[band], k[lo:hi], v[lo:hi], mask) for each query frame's band, as one
    autograd node: the backward writes dq band by band and adds dk, dv into one buffer each.
    Measured at the tiny preset's video grid (4, 8, 8), nearby (1, 3, 3), batch 11, 4 heads of 32,
    forward + backward on 2 CPU cores: 10.3 ms against 11.9 ms with sliced keys (causal)."""

    @staticmethod
    def forward(ctx, q, k, v, bands):
        outs, lses = [], []
        for a, b, lo, hi, bias in bands:
            out, lse = _flash_cpu(q[:, :, a:b], k[:, :, lo:hi], v[:, :, lo:hi], attn_mask=bias)
            outs.append(out)
            lses.append(lse)
        ctx.bands = bands
        ctx.save_for_backward(q, k, v, *outs, *lses)
        return torch.cat(outs, dim=2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        q, k, v, *saved = ctx.saved_tensors
        outs, lses = saved[: len(ctx.bands)], saved[len(ctx.bands) :]
        dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for (a, b, lo, hi, bias), out, lse in zip(ctx.bands, outs, lses, strict=True):
            gq, gk, gv = _flash_cpu_backward(
                grad[:, :, a:b], q[:, :, a:b], k[:, :, lo:hi], v[:, :, lo:hi], out, lse,
                0.0, False, attn_mask=bias,
            )  # fmt: skip
            dq[:, :, a:b] = gq
            dk[:, :, lo:hi] += gk
            dv[:, :, lo:hi] += gv
        return dq, dk, dv, None
