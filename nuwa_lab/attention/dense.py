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
the "auto" backend runs on small grids.
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


def oracle_mask(
    spec: AttentionSpec, q_positions: torch.Tensor | None, n_keys: int, device
) -> torch.Tensor:
    """M, (n, m) bool: the rows of `q_positions` (all queries when None), every row non-empty."""
    if spec.n_q * n_keys <= CACHED_MASK_PAIRS:
        # decoding steps (q_positions) take their rows of the cached mask: building them anew
        # for every layer at every step costs more than the step's attention itself
        mask = _cached_mask(spec, n_keys, str(device))
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


def masked_sdpa_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """The oracle's mask M handed to `scaled_dot_product_attention`: the same y = A V in one fused
    kernel. It does all n·m products, like the oracle, so it only pays on small grids, where it
    beats the gathers of the sparse paths ("auto" picks it there; see `api.AUTO_MASKED_PAIRS`)."""
    mask = oracle_mask(spec, q_positions, k.shape[-2], q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
