"""3D axial attention (NÜWA §3.2, Table 6 "axial"): three lines through a query, one softmax.

A query at (t, h, w), rescaled onto the key grid as (t̂, ĥ, ŵ), sees the keys that share two of its
three coordinates: the line along t (·, ĥ, ŵ), along h (t̂, ·, ŵ) and along w (t̂, ĥ, ·). The lines
meet at (t̂, ĥ, ŵ), which is counted once (it belongs to the w-line only). Per line the scores are
(n, T'), (n, H'), (n, W'); they are joined into ONE softmax over T'+H'+W' scores, which is the
log-sum-exp merge of three per-line softmaxes done in one step:

$y_q = \\sum_{\\ell \\in \\{t,h,w\\}}
\\frac{e^{L_\\ell(q)}}{\\sum_{\\ell'} e^{L_{\\ell'}(q)}}\\, y_{q,\\ell}$,
$L_\\ell(q) = \\log \\sum_{k \\in \\ell(q)} e^{q \\cdot k/\\sqrt{e}}$.

Causal masking on a line reduces to a comparison of one coordinate (both rules agree on lines):
z ≤ w on the w-line, z < h on the h-line, z < t on the t-line. Cost N·(T'+H'+W'); no N×N tensor.
With `q_positions` each given query gathers its T'+H'+W'-2 line keys (`grouped.make_plan`).

Axis letters: b batch, heads (n in einsum strings), t h w query grid, z a key coordinate along a
line, e head width.

| symbol | code |
|---|---|
| (t̂, ĥ, ŵ) | `it`, `ih`, `iw` (rescaled indices per axis) |
| keys of the w-line / h-line / t-line | `kw_`, `kh_`, `kt_` |
| the merged softmax | `torch.cat([s_t, s_h, s_w], -1).softmax(-1)` |
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from nuwa_lab.attention.coords import raster_coords, raster_index, rescale
from nuwa_lab.attention.grouped import grouped_attend, make_plan
from nuwa_lab.attention.masks import AttentionSpec


def _lines(x: torch.Tensor, it, ih, iw, same: tuple[bool, bool, bool]):
    """Key lines of every query: (b, n, T, H, W', e), (b, n, T, H', W, e), (b, n, T', H, W, e)."""
    pick = {  # index_select on an axis is skipped when the rescaling there is the identity
        2: (lambda y: y) if same[0] else (lambda y: y.index_select(2, it)),
        3: (lambda y: y) if same[1] else (lambda y: y.index_select(3, ih)),
        4: (lambda y: y) if same[2] else (lambda y: y.index_select(4, iw)),
    }
    return pick[3](pick[2](x)), pick[4](pick[2](x)), pick[4](pick[3](x))


def line_masks(spec: AttentionSpec, it, ih, iw, device):
    """Per-line bool masks broadcastable to (t, h, w, z): the shared point once, and causality."""
    (tq, hq, wq), (tk, hk, wk) = spec.q_grid, spec.kv_grid
    zt, zh, zw = (torch.arange(n, device=device) for n in (tk, hk, wk))
    m_t = zt[None, :] != it[:, None]  # (T, T'): the point itself belongs to the w-line
    m_h = zh[None, :] != ih[:, None]  # (H, H')
    m_w = torch.ones(wq, wk, dtype=torch.bool, device=device)  # (W, W')
    if spec.causal:  # self-attention only, so it, ih, iw are the identity
        m_t = m_t & (zt[None, :] < it[:, None])
        m_h = m_h & (zh[None, :] < ih[:, None])
        m_w = m_w & (zw[None, :] <= iw[:, None])
    m_t = m_t[:, None, None, :].expand(tq, hq, wq, tk)
    m_h = m_h[None, :, None, :].expand(tq, hq, wq, hk)
    m_w = m_w[None, None, :, :].expand(tq, hq, wq, wk)
    return torch.cat([m_t, m_h, m_w], dim=-1)  # (T, H, W, T'+H'+W')


def _positions_attend(q, k, v, spec: AttentionSpec, positions: torch.Tensor) -> torch.Tensor:
    """Each given query gathers its three lines of keys (T'+H'+W' candidates, shared point once)."""
    qt, qh, qw = raster_coords(positions, spec.q_grid)
    rt, rh, rw = (
        rescale(c, a, b) for c, a, b in zip((qt, qh, qw), spec.q_grid, spec.kv_grid, strict=True)
    )
    zt, zh, zw = (torch.arange(n, device=positions.device) for n in spec.kv_grid)
    n = positions.numel()
    line_t = raster_index(zt[None, :], rh[:, None], rw[:, None], spec.kv_grid)
    line_h = raster_index(rt[:, None], zh[None, :], rw[:, None], spec.kv_grid)
    line_w = raster_index(rt[:, None], rh[:, None], zw[None, :].expand(n, -1), spec.kv_grid)
    line_t = torch.where(zt[None, :] != rt[:, None], line_t, -1)
    line_h = torch.where(zh[None, :] != rh[:, None], line_h, -1)
    k_pos = torch.cat([line_t, line_h, line_w], dim=1)
    slot = torch.arange(n, device=positions.device)[:, None]
    plan = make_plan(spec, positions[:, None], k_pos, k.shape[2], q_slot=slot)
    return grouped_attend(q, k, v, plan)


def axial_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Axial attention, (b, heads, n, e), equal to the dense oracle."""
    if q_positions is not None:
        return _positions_attend(q, k, v, spec, q_positions)
    (tq, hq, _), (tk, hk, wk) = spec.q_grid, spec.kv_grid
    device = q.device
    it, ih, iw = (
        rescale(torch.arange(a, device=device), a, b)
        for a, b in zip(spec.q_grid, spec.kv_grid, strict=True)
    )
    same = tuple(a == b for a, b in zip(spec.q_grid, spec.kv_grid, strict=True))
    q5 = rearrange(q, "b n (t h w) e -> b n t h w e", t=tq, h=hq) / math.sqrt(q.shape[-1])
    k5 = rearrange(k, "b n (t h w) e -> b n t h w e", t=tk, h=hk)
    v5 = rearrange(v, "b n (t h w) e -> b n t h w e", t=tk, h=hk)
    kw_, kh_, kt_ = _lines(k5, it, ih, iw, same)
    s_w = torch.einsum("bnthwe,bnthze->bnthwz", q5, kw_)
    s_h = torch.einsum("bnthwe,bntzwe->bnthwz", q5, kh_)
    s_t = torch.einsum("bnthwe,bnzhwe->bnthwz", q5, kt_)
    scores = torch.cat([s_t, s_h, s_w], dim=-1)  # b n t h w (T'+H'+W')
    mask = line_masks(spec, it, ih, iw, device)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    a_t, a_h, a_w = weights.split([tk, hk, wk], dim=-1)
    vw_, vh_, vt_ = _lines(v5, it, ih, iw, same)
    out = (
        torch.einsum("bnthwz,bnthze->bnthwe", a_w, vw_)
        + torch.einsum("bnthwz,bntzwe->bnthwe", a_h, vh_)
        + torch.einsum("bnthwz,bnzhwe->bnthwe", a_t, vt_)
    )
    return rearrange(out, "b n t h w e -> b n (t h w) e")
