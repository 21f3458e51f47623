"""Full attention through `F.scaled_dot_product_attention` (NÜWA §3.2, the "full" row of Table 6).

$y = \\mathrm{softmax}(Q K^\\top/\\sqrt{e} + \\log M) V$ where M is all ones, or the causal mask.
Full attention costs N² anyway, so this path may build an (n, m) mask when it needs one: for
"quadrant" causality and for `q_positions` (raster causality on all queries uses SDPA's own
`is_causal`, which builds nothing). Axis letters: b batch, heads, n queries, m keys, e head width.

| symbol | code |
|---|---|
| Q, K, V | `q` (b, heads, n, e), `k`, `v` (b, heads, m, e) |
| M | `spec_mask(spec, q_positions, n_keys)` when needed |
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nuwa_lab.attention.masks import AttentionSpec, spec_mask


def full_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Full attention, (b, heads, n, e)."""
    if not spec.causal:
        return F.scaled_dot_product_attention(q, k, v)
    if spec.causal_rule == "raster" and q_positions is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = spec_mask(spec, q_positions, n_keys=k.shape[-2], device=q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
