"""3D attention for NÜWA (§3.2): full, axial, block and nearby (3DNA), self and cross.

    from nuwa_lab.attention import attend, dense_mask, AttentionPattern, PATTERNS

`attend(q, k, v, pattern=..., q_grid=...)` computes attention on one of three backends that agree
to float tolerance: "dense" (the oracle, `dense_mask` + softmax), "efficient" (never builds an N×N
tensor except for "full") and "flex" (FlexAttention: the GPU path); "auto", the default, asks the
device policy (`nuwa_lab.device`): on the CPU "efficient", or on small grids the oracle's mask in
one `scaled_dot_product_attention`; on CUDA also compiled FlexAttention for the sparse patterns. See
`masks` for the rules (and `AttentionPattern`, the one spec type: a pattern with its options,
placed on two grids by `.on(q_grid, kv_grid)` as an `AttentionSpec`) and `api` for the arguments and
the registry of efficient paths. The layer with projections and a KV cache that the model uses is
`nuwa_lab.model.layers` (`SelfAttention`, `CrossAttention`).
"""

from nuwa_lab.attention.api import BACKENDS, EFFICIENT_PATHS, attend, efficient_path
from nuwa_lab.attention.masks import (
    BORDERS,
    CAUSAL_RULES,
    PATTERNS,
    AttentionPattern,
    AttentionSpec,
    dense_mask,
    make_spec,
    may_attend,
)

__all__ = [
    "BACKENDS",
    "BORDERS",
    "CAUSAL_RULES",
    "PATTERNS",
    "EFFICIENT_PATHS",
    "AttentionPattern",
    "AttentionSpec",
    "attend",
    "efficient_path",
    "dense_mask",
    "make_spec",
    "may_attend",
]
