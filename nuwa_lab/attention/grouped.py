"""Grouped sparse attention: groups of queries, each attending to its own small set of keys.

The efficient "block" and "nearby" paths (and every path with `q_positions`) reduce to this: the
query grid is cut into G groups of at most Mq queries (blocks; tiles; single decoded tokens), and
each group gathers the at most Mk keys any of its queries may see (the block; the tile and its
halo). A (G, Mq, Mk) mask, computed with the same `masks.may_attend` as the dense oracle, removes
padding and the keys a particular query may not see, so the result equals the oracle exactly, at a
cost of G·Mq·Mk ≈ N·Mk instead of N·N'.

Axis letters: b batch, heads, g groups, i queries of a group, j keys of a group, e head width.

| symbol | code |
|---|---|
| query group / key set | `GroupPlan.q_slot` (g, i) / `GroupPlan.k_index` (g, j) |
| M restricted to a group | `GroupPlan.mask` (g, i, j) bool |
| group layout → query order | `GroupPlan.inverse` (n,) |

Per axis, a group is a set of query coordinates and a contiguous key range [lo, hi]; a 3D group is
the product of one group per axis (`product_positions`), so tiles need not divide the grid: edge
groups are simply smaller and padded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from einops import rearrange

from nuwa_lab.attention.coords import raster_coords, raster_index, rescale
from nuwa_lab.attention.masks import AttentionSpec, may_attend

# (min, max) of the rescaled query coordinates of groups on one axis -> inclusive key ranges
KeyRange = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def clipped_axes(spec: AttentionSpec) -> tuple[int, ...]:
    """Axes on which causality hides every key beyond the query's own coordinate.

    "quadrant" hides t' > t, h' > h and w' > w; "raster" hides t' > t only (a later row of an
    earlier frame is still in the past).
    """
    if not spec.causal:
        return ()
    return (0, 1, 2) if spec.causal_rule == "quadrant" else (0,)


@dataclass(frozen=True)
class GroupPlan:
    q_slot: torch.Tensor  # (g, i) index into q's token axis (padding points at slot 0)
    k_index: torch.Tensor  # (g, j) index into k's token axis (padding points at key 0)
    mask: torch.Tensor  # (g, i, j) bool, True = attend
    inverse: torch.Tensor  # (n,) position of each query in the flattened (g i) layout
    q_valid: torch.Tensor  # (g, i) bool, False = padding
    _bias: dict = field(default_factory=dict, compare=False, repr=False)

    def bias(self, dtype: torch.dtype) -> torch.Tensor:
        """The mask as an additive (g, i, j) bias, 0 or -inf, cached per dtype."""
        if dtype not in self._bias:
            zeros = torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device)
            self._bias[dtype] = zeros.masked_fill_(~self.mask, float("-inf"))
        return self._bias[dtype]

    def visible_pairs(self) -> int:
        """How many (query, key) pairs the plan lets attend: the exact work of the pattern."""
        return int((self.mask & self.q_valid[:, :, None]).sum())


def axis_groups(
    length_q: int, length_k: int, tile: int, key_range: KeyRange
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut one axis: queries grouped by rescaled coordinate // tile, with each group's key range.

    Returns query coordinates (groups, max members) and key coordinates (groups, max keys), both
    padded with -1. Groups without queries (possible when the key axis is longer) do not exist.
    """
    rescaled = rescale(torch.arange(length_q), length_q, length_k)
    _, counts = torch.unique_consecutive(rescaled // tile, return_counts=True)
    members = torch.split(torch.arange(length_q), counts.tolist())
    lo, hi = key_range(
        torch.stack([rescaled[m[0]] for m in members]),
        torch.stack([rescaled[m[-1]] for m in members]),
    )
    keys = [list(range(a, b + 1)) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
    return _pad([m.tolist() for m in members]), _pad(keys)


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)


def product_positions(t: torch.Tensor, h: torch.Tensor, w: torch.Tensor, grid) -> torch.Tensor:
    """Raster positions of every (group_t, group_h, group_w) product: (Gt·Gh·Gw, mt·mh·mw)."""
    tt = rearrange(t, "gt mt -> gt 1 1 mt 1 1")
    hh = rearrange(h, "gh mh -> 1 gh 1 1 mh 1")
    ww = rearrange(w, "gw mw -> 1 1 gw 1 1 mw")
    pos = torch.where((tt >= 0) & (hh >= 0) & (ww >= 0), raster_index(tt, hh, ww, grid), -1)
    return rearrange(pos, "gt gh gw mt mh mw -> (gt gh gw) (mt mh mw)")


def grid_plan(
    spec: AttentionSpec,
    key_ranges: tuple[KeyRange, KeyRange, KeyRange],
    group: tuple[int, int, int],
    device: str,
) -> GroupPlan:
    """One group per `group`-sized cut of the query grid (a block, a tile) with its key range."""
    cut = [axis_groups(spec.q_grid[a], spec.kv_grid[a], group[a], key_ranges[a]) for a in range(3)]
    q_pos = product_positions(*(c[0] for c in cut), spec.q_grid)
    k_pos = product_positions(*(c[1] for c in cut), spec.kv_grid)
    return plan_to(make_plan(spec, q_pos, k_pos, spec.n_kv), torch.device(device))


# Incremental decoding asks for the same plan once per decoder layer at every step (the layers
# share one spec), and every sample of a grid asks for the same positions again: block.py and
# nearby.py key their `step_plan` on the hashable (spec, positions, n_keys, device) with an LRU
# cache, so the plan is built once per step and shared by all layers, instead of costing more than
# the step's attention in every layer. A grid of N tokens needs N entries per spec (one per
# position); beyond maxsize, the LRU order still keeps the sharing across layers within a step.
def positions_plan(
    spec: AttentionSpec,
    positions: torch.Tensor,
    n_keys: int,
    key_ranges: tuple[KeyRange, KeyRange, KeyRange],
    widths: tuple[int, int, int],
) -> GroupPlan:
    """One group per given query (incremental decoding): its keys are the product of the per-axis
    ranges, at most `widths` long, so the cost depends on the window and not on the grid."""
    coords = raster_coords(positions, spec.q_grid)
    axes = []
    for a in range(3):
        r = rescale(coords[a], spec.q_grid[a], spec.kv_grid[a])
        lo, hi = key_ranges[a](r, r)
        c = lo[:, None] + torch.arange(widths[a], device=positions.device)
        axes.append(torch.where(c <= hi[:, None], c, -1))
    t, h, w = (rearrange(x, pattern) for x, pattern in zip(axes, _AXES, strict=True))
    k_pos = torch.where((t >= 0) & (h >= 0) & (w >= 0), raster_index(t, h, w, spec.kv_grid), -1)
    slot = torch.arange(positions.numel(), device=positions.device)[:, None]
    return make_plan(spec, positions[:, None], k_pos.flatten(1), n_keys, q_slot=slot)


_AXES = ("n a -> n a 1 1", "n a -> n 1 a 1", "n a -> n 1 1 a")


def make_plan(
    spec: AttentionSpec,
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    n_keys: int,
    q_slot: torch.Tensor | None = None,
) -> GroupPlan:
    """A plan from query raster positions (g, i) and candidate key positions (g, j), -1 = padding.

    `q_slot` says where each query sits in q's token axis (default: its raster position); keys at
    positions >= `n_keys` (beyond a KV cache) count as padding.
    """
    q_valid = q_pos >= 0
    k_valid = (k_pos >= 0) & (k_pos < n_keys)
    q_safe, k_safe = q_pos.clamp(min=0), torch.where(k_valid, k_pos, 0)
    mask = may_attend(spec, q_safe[:, :, None], k_safe[:, None, :]) & k_valid[:, None, :]
    # padded query rows see every key of their group: no empty softmax row; their output is dropped
    mask = mask | ~q_valid[:, :, None]
    slot = torch.where(q_valid, q_pos if q_slot is None else q_slot, 0)
    n_queries = int(q_valid.sum())
    inverse = torch.empty(n_queries, dtype=torch.long, device=q_pos.device)
    inverse[slot[q_valid]] = torch.arange(q_pos.numel(), device=q_pos.device)[q_valid.flatten()]
    return GroupPlan(q_slot=slot, k_index=k_safe, mask=mask, inverse=inverse, q_valid=q_valid)


def plan_to(plan: GroupPlan, device: torch.device) -> GroupPlan:
    if plan.mask.device == device:
        return plan
    names = ("q_slot", "k_index", "mask", "inverse", "q_valid")
    return GroupPlan(**{n: getattr(plan, n).to(device) for n in names})


class _GroupSoftmax(torch.autograd.Function):
    """softmax(Q Kᵀ·scale + B) V per group, with a hand-written backward.

    q (z, g, i, e), k and v (z, g, j, e), bias (g, i, j). Written out with contiguous `bmm` calls
    because on CPU both autograd through `matmul` on these batched shapes and SDPA's backward with a
    mask run 5-30× slower than the same products done this way (measured, torch 2.14, 2 cores).
    The (g, i, j) score tensors are the large ones, so each is touched as few times as it can be:
    the scale goes into q (i·e numbers, not i·j), and the softmax backward
    dS = P ∘ (dP - rowsum(dP ∘ P)) takes its row sums from rowsum(dO ∘ O), which is equal and
    (i, e)-sized, then runs in place on dP.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # softmax in float32
    def forward(ctx, q, k, v, bias, scale):
        z, g, i, e = q.shape
        j = k.shape[2]
        k3, v3 = (x.reshape(z * g, j, e) for x in (k, v))
        q3 = q.reshape(z * g, i, e) * scale  # (q·scale) Kᵀ = scale · Q Kᵀ
        scores = torch.bmm(q3, k3.transpose(1, 2)).view(z, g, i, j).add_(bias)
        p = torch.softmax(scores, dim=-1).view(z * g, i, j)
        out = torch.bmm(p, v3)
        ctx.save_for_backward(q3, k3, v3, p, out)
        ctx.scale, ctx.shape = scale, (z, g, i, j, e)
        return out.view(z, g, i, e)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_out):
        q3, k3, v3, p, out = ctx.saved_tensors  # q3 holds q · scale
        z, g, i, j, e = ctx.shape
        d_out = d_out.reshape(z * g, i, e)
        d_v = torch.bmm(p.transpose(1, 2), d_out)
        d_p = torch.bmm(d_out, v3.transpose(1, 2))
        row = (d_out * out).sum(-1, keepdim=True)  # rowsum(dP ∘ P) = rowsum(dO ∘ O)
        d_s = d_p.sub_(row).mul_(p)  # softmax backward, in place: dS = P ∘ (dP - row)
        d_q = torch.bmm(d_s, k3).mul_(ctx.scale)  # dS/dQ = scale · K
        d_k = torch.bmm(d_s.transpose(1, 2), q3)  # dS/dK = scale · Q = q3
        return d_q.view(z, g, i, e), d_k.view(z, g, j, e), d_v.view(z, g, j, e), None, None


def grouped_attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: GroupPlan
) -> torch.Tensor:
    """Attention of each query group over its keys: (b, heads, n, e) in q's token order."""
    b, heads, _, e = q.shape
    groups = plan.q_slot.shape[0]
    qg = q.index_select(2, plan.q_slot.flatten())  # b heads (g i) e
    kg = k.index_select(2, plan.k_index.flatten())  # b heads (g j) e
    vg = v.index_select(2, plan.k_index.flatten())
    qg, kg, vg = (
        rearrange(x, "b heads (g i) e -> (b heads) g i e", g=groups) for x in (qg, kg, vg)
    )
    out = _GroupSoftmax.apply(qg, kg, vg, plan.bias(q.dtype), e**-0.5)  # (b heads) g i e
    out = rearrange(out, "(b heads) g i e -> b heads (g i) e", b=b)
    return out.index_select(2, plan.inverse)
