"""3D attention for NÜWA (§3.2): full, axial, block and nearby (3DNA), self and cross.

    from nuwa_lab.attention import attend, dense_mask, Attention3D, PATTERNS

`attend(q, k, v, pattern=..., q_grid=...)` computes attention on one of three backends that agree
to float tolerance: "dense" (the oracle, `dense_mask` + softmax), "efficient" (never builds an N×N
tensor except for "full") and "flex" (FlexAttention, for comparison); "auto", the default, runs
"efficient", or on small grids the oracle's mask in one `scaled_dot_product_attention`. See
`masks` for the rules and `api` for the arguments, `module.Attention3D` for the layer with
projections and a KV cache.
"""

from nuwa_lab.attention.api import BACKENDS, attend
from nuwa_lab.attention.masks import (
    BORDERS,
    CAUSAL_RULES,
    PATTERNS,
    AttentionSpec,
    dense_mask,
    make_spec,
    may_attend,
)
from nuwa_lab.attention.module import Attention3D

__all__ = [
    "BACKENDS",
    "BORDERS",
    "CAUSAL_RULES",
    "PATTERNS",
    "Attention3D",
    "AttentionSpec",
    "attend",
    "dense_mask",
    "make_spec",
    "may_attend",
]
