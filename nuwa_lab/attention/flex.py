"""FlexAttention (`torch.nn.attention.flex_attention`): the GPU path of the sparse patterns.

The pattern becomes a `mask_mod(b, h, q_idx, kv_idx)` that calls the same `masks.may_attend` as the
dense oracle; `create_block_mask` turns it into a block-sparse `BlockMask` (blocks of 128 × 128 that
are entirely masked are skipped), and the compiled `flex_attention` kernel runs only the others.
On CUDA, `backend="auto"` takes this path for axial, block and nearby on larger grids when it
compiles there (`nuwa_lab.device.attention_backend`); the block mask of a whole grid is built once
and cached. On CPU it is a backend for comparison: compiling takes tens of seconds per new shape
or mask and needs a C++ compiler (Inductor), there is no backward pass, and uncompiled
(`compiled=False`), FlexAttention materialises the whole score matrix like the oracle.

| symbol | code |
|---|---|
| M[q, k] | `mask_mod` from `_mask_mod(spec, q_positions)` |
| the block-sparse layout | `flex_block_mask(spec, n_q, n_k, q_positions, device)` |
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch

from nuwa_lab.attention.masks import AttentionSpec, may_attend
from nuwa_lab.device import flex_status as flex_status  # re-exported: "" when FlexAttention exists


def _mask_mod(spec: AttentionSpec, q_positions: torch.Tensor | None):
    def mask_mod(b, h, q_idx, kv_idx):
        q_pos = q_idx if q_positions is None else q_positions[q_idx]
        return may_attend(spec, q_pos, kv_idx)

    return mask_mod


def flex_block_mask(
    spec: AttentionSpec,
    n_q: int,
    n_k: int,
    q_positions: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
):
    """The `BlockMask` of `spec` for `n_q` queries (at `q_positions`, default all), `n_k` keys."""
    if q_positions is None:
        return _cached_block_mask(spec, n_q, n_k, str(device))
    return _build_block_mask(spec, n_q, n_k, q_positions, device)


def _build_block_mask(spec, n_q, n_k, q_positions, device):
    from torch.nn.attention.flex_attention import create_block_mask

    mask_mod = _mask_mod(spec, q_positions)
    return create_block_mask(mask_mod, None, None, n_q, n_k, device=device)


@lru_cache(maxsize=16)
def _cached_block_mask(spec, n_q, n_k, device):
    return _build_block_mask(spec, n_q, n_k, None, device)


@lru_cache(maxsize=1)
def compiled_flex_attention():
    """`torch.compile(flex_attention)`, built once per process (each new shape or mask recompiles).

    Raises dynamo's recompile limit (default 8) so that a benchmark over several grids and patterns
    keeps running compiled kernels instead of silently falling back to the unfused eager version.
    """
    import torch._dynamo.config as dynamo_config
    from torch.nn.attention.flex_attention import flex_attention

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 256)
    return torch.compile(flex_attention, dynamic=False)


def flex_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
    *,
    compiled: bool = True,
    block_mask=None,
) -> torch.Tensor:
    """Attention through FlexAttention, (b, heads, n, e); `block_mask` may be passed in (bench)."""
    reason = flex_status()
    if reason:
        raise RuntimeError(f"backend='flex' is unavailable: {reason}; use backend='efficient'")
    from torch.nn.attention.flex_attention import flex_attention

    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
    if q.device.type == "cpu" and needs_grad:
        raise RuntimeError(
            f"FlexAttention has no backward pass on CPU (torch {torch.__version__}); use "
            "backend='efficient' for training, or call backend='flex' under torch.no_grad()"
        )
    if block_mask is None:
        block_mask = flex_block_mask(spec, q.shape[2], k.shape[2], q_positions, q.device)
    if compiled:
        return compiled_flex_attention()(q, k, v, block_mask=block_mask)
    with warnings.catch_warnings():  # the "unfused implementation" warning: that is the point here
        warnings.simplefilter("ignore", UserWarning)
        return flex_attention(q, k, v, block_mask=block_mask)
