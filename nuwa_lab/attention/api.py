"""`attend`: 3D attention with one pattern, on one of three interchangeable backends (NÜWA §3.2).

$y_q = \\sum_{k \\in S(q)} \\mathrm{softmax}_k(q \\cdot k / \\sqrt{e})\\, v_k$,
with $S(q)$ the keys that `masks.may_attend` allows.
Axis letters: b batch, heads, n query tokens, m key tokens, e head width.

| argument | meaning |
|---|---|
| `q` (b, heads, n, e); `k`, `v` (b, heads, m, e) | queries, keys, values, split into heads |
| `pattern`, `extent`, `block`, `border` | the sparsity pattern (see `masks`) |
| `q_grid`, `kv_grid` | (T, H, W) of queries and keys; `kv_grid=None` means self-attention |
| `causal`, `causal_rule` | decoder masking: "raster" or "quadrant" (t'≤t, h'≤h, w'≤w) |
| `q_positions` | raster indices (n,) of the queries in `q` when it holds only some of them |
| `backend` | "dense" (oracle), "efficient", "flex" (FlexAttention), "auto" (the device policy) |

Incremental decoding (`q_positions`): `q` holds only the queries at the given raster positions of
`q_grid`, and the output holds exactly those rows of the full computation. Keys are either the
whole key grid (m = T'·H'·W'), or, with `causal=True`, any prefix of it that contains every key
those queries can see: max(q_positions) + 1 ≤ m ≤ T·H·W (a KV cache filled in raster order; keys
beyond m are absent, and causality makes them invisible anyway). The cost of the efficient path
then depends on the window, not on m, for "nearby", "block" and "axial". Keys that no query can
see may still be read (with weight 0), so they must be finite: a zero-initialised cache buffer of
the whole grid is fine, `torch.empty` is not (0 × NaN is NaN in every backend).

Every backend equals "dense" to float tolerance in outputs and in gradients for q, k and v.
"auto" (the default) asks the device policy (`nuwa_lab.device.attention_backend`) which path to
take for this call, from the pattern, the device of `q`, the number of (query, key) pairs and the
head width: on the CPU, "efficient", except for sparse problems of at most
`AUTO_MASKED_PAIRS[pattern]` pairs, where the oracle's mask handed to
`scaled_dot_product_attention` (`dense.masked_sdpa_attend`) beats the gathers of the sparse paths;
on CUDA, also compiled FlexAttention for the sparse patterns on larger grids. The measurements
behind these choices are in `nuwa_lab.device.policy`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nuwa_lab.attention.axial import axial_attend
from nuwa_lab.attention.block import block_attend
from nuwa_lab.attention.dense import dense_attend, masked_sdpa_attend
from nuwa_lab.attention.flex import flex_attend
from nuwa_lab.attention.full import full_attend
from nuwa_lab.attention.masks import AttentionSpec, make_spec
from nuwa_lab.attention.nearby import nearby_attend
from nuwa_lab.device import AUTO_MASKED_PAIRS as AUTO_MASKED_PAIRS  # re-exported: the CPU rule
from nuwa_lab.device import attention_backend

BACKENDS = ("auto", "dense", "efficient", "flex")
# the efficient path of each pattern: f(q, k, v, spec, q_positions) -> (b, heads, n, e)
EFFICIENT_PATHS = {
    "full": full_attend,
    "axial": axial_attend,
    "block": block_attend,
    "nearby": nearby_attend,
}


def _check_tensors(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{name} must be a 4-d tensor (b, heads, n, e), got {shape}; split heads first, "
                "e.g. einops.rearrange(x, 'b n (heads e) -> b heads n e', heads=heads)"
            )
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}; "
            "q, k, v need the same (b, heads), and k, v the same number of keys"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q has head width {q.shape[-1]} but k has {k.shape[-1]}; they must match")
    if not (q.dtype == k.dtype == v.dtype) or not (q.device == k.device == v.device):
        raise ValueError("q, k, v must share one dtype and one device")


def _check_positions(
    spec: AttentionSpec,
    n_q: int,
    n_k: int,
    q_positions: torch.Tensor | Sequence[int] | None,
    device,
) -> torch.Tensor | None:
    if q_positions is None:
        if n_q != spec.n_q:
            raise ValueError(
                f"q_grid {spec.q_grid} has {spec.n_q} tokens but q has {n_q}; pass the right "
                "q_grid, or q_positions=<raster indices> when q holds only some queries"
            )
        if n_k != spec.n_kv:
            raise ValueError(
                f"kv_grid {spec.kv_grid} has {spec.n_kv} tokens but k has {n_k}; pass the right "
                "kv_grid (kv_grid=None means the keys are on q_grid)"
            )
        return None
    positions = torch.as_tensor(q_positions, dtype=torch.long, device=device).reshape(-1)
    if positions.numel() != n_q:
        raise ValueError(f"q has {n_q} queries but q_positions has {positions.numel()} entries")
    if n_q and (positions.min() < 0 or positions.max() >= spec.n_q):
        raise ValueError(
            f"q_positions must be raster indices in [0, {spec.n_q}) of q_grid {spec.q_grid}, got "
            f"values in [{int(positions.min())}, {int(positions.max())}]"
        )
    if spec.causal:
        need = int(positions.max()) + 1 if n_q else 0
        if not need <= n_k <= spec.n_kv:
            raise ValueError(
                f"causal attention with q_positions up to {need - 1} needs k to hold between "
                f"{need} (the cached prefix) and {spec.n_kv} keys, got {n_k}"
            )
    elif n_k != spec.n_kv:
        raise ValueError(
            f"kv_grid {spec.kv_grid} has {spec.n_kv} tokens but k has {n_k}; without causal "
            "masking every key may be visible, so k must hold the whole key grid"
        )
    return positions


def efficient_path(pattern: str):
    """The efficient function of `pattern` (`EFFICIENT_PATHS`); an unknown pattern is refused."""
    if pattern not in EFFICIENT_PATHS:
        raise ValueError(
            f"no efficient attention path for pattern {pattern!r}; "
            f"known: {', '.join(EFFICIENT_PATHS)}"
        )
    return EFFICIENT_PATHS[pattern]


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    pattern: str,
    q_grid: Sequence[int],
    kv_grid: Sequence[int] | None = None,
    causal: bool = False,
    extent: Sequence[int] | int = (1, 1, 1),
    block: Sequence[int] | int = (1, 4, 4),
    causal_rule: str = "raster",
    border: str = "truncate",
    q_positions: torch.Tensor | Sequence[int] | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """3D attention of `q` over `k`, `v` under `pattern`: (b, heads, n, e). See the module doc."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    spec = make_spec(
        pattern, q_grid, kv_grid, causal,
        extent=extent, block=block, causal_rule=causal_rule, border=border,
    )  # fmt: skip
    _check_tensors(q, k, v)
    positions = _check_positions(spec, q.shape[2], k.shape[2], q_positions, q.device)
    if q.shape[2] == 0:
        return q.new_zeros(q.shape[:3] + (v.shape[-1],))
    if backend == "dense":
        return dense_attend(q, k, v, spec, positions)
    if backend == "auto":
        backend = attention_backend(
            spec.pattern,
            device_type=q.device.type,
            n_pairs=q.shape[2] * k.shape[2],
            head_width=q.shape[-1],
            decoding=positions is not None,
        )
    if backend == "masked":
        return masked_sdpa_attend(q, k, v, spec, positions)
    if backend == "flex":
        return flex_attend(q, k, v, spec, positions)
    return efficient_path(spec.pattern)(q, k, v, spec, positions)
