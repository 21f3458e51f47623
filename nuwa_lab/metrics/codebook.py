r"""Codebook usage and perplexity of a set of token grids (NÜWA §3.1's VQ-GAN codebook).

A vector-quantized tokenizer that uses few of its K codes ("codebook collapse") wastes capacity;
these two numbers measure how many codes a set of token grids actually uses and how evenly.

Axes: `b` batch, `t h w` the token grid; any shape of integer indices is accepted and flattened.

| symbol | code | meaning |
|---|---|---|
| $K$ | `codebook_size` | number of codes |
| $p_k$ | `probs` | fraction of tokens that are code k |
| usage | `usage` | fraction of the K codes used at least once |
| $\exp(-\sum_k p_k \ln p_k)$ | `perplexity` | effective number of codes (1 .. K; K when uniform) |
"""

from __future__ import annotations

import torch


def codebook_usage(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """`{"usage", "perplexity", "used"}` of integer token indices of any shape, codes 0..K-1."""
    indices = torch.as_tensor(indices)
    if indices.is_floating_point():
        raise ValueError(f"indices must be integers, got dtype {indices.dtype}")
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    flat = indices.reshape(-1).long().cpu()
    if flat.numel() == 0:
        raise ValueError("no indices given: pass at least one token grid")
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= codebook_size:
        raise ValueError(
            f"indices span {low}..{high} but the codebook has {codebook_size} codes "
            f"(valid 0..{codebook_size - 1}); pass the tokenizer's codebook_size"
        )
    counts = torch.bincount(flat, minlength=codebook_size).double()
    probs = counts / counts.sum()
    nonzero = probs[probs > 0]
    entropy = -(nonzero * nonzero.log()).sum()
    used = int((counts > 0).sum())
    return {"usage": used / codebook_size, "perplexity": float(entropy.exp()), "used": used}
