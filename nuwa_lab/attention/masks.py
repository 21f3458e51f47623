"""Which key a query may attend: the rules of the four 3D patterns and the dense mask (NÜWA §3.2).

A query at (t, h, w) on the query grid (T, H, W) is first mapped onto the key grid (T', H', W'),
(t̂, ĥ, ŵ) = (floor(t·T'/T), floor(h·H'/H), floor(w·W'/W)) (the identity for self-attention); then

| pattern | the key (t', h', w') is visible when | keys per query |
|---|---|---|
| full   | always | N' |
| axial  | it shares two of three coordinates with (t̂, ĥ, ŵ) | T'+H'+W'-2 |
| block  | t'//b^t = t̂//b^t, h'//b^h = ĥ//b^h, w'//b^w = ŵ//b^w (edges may be partial) | ≤ Πb |
| nearby | per axis, t' lies in the window of radius e^t around t̂ (likewise h, w) | ≤ Π(2e+1) |

Nearby borders, per axis of key length L and radius e: "truncate" (the paper) keeps |t' - t̂| ≤ e,
so the window is cut at the edges; "shift" (NATTEN) moves the window start to clamp(t̂ - e, 0, L -
2e - 1) so that it keeps its 2e+1 keys when L ≥ 2e+1, and covers the whole axis when L is smaller.

Causal masking (decoder self-attention only, so the key grid is the query grid) additionally needs
"raster": key index ≤ query index, or "quadrant": t' ≤ t and h' ≤ h and w' ≤ w (NATTEN,
nuwa-pytorch). Causal cross-attention is refused: NÜWA's cross-attention to a condition is not
causal, and with rescaled coordinates "the past" of a query on another grid has no single sensible
meaning.

| symbol | code |
|---|---|
| (e^t, e^h, e^w) | `extent` (radii: (1, 1, 1) is a 3×3×3 window) |
| (b^t, b^h, b^w) | `block` |
| pattern, rule, border | `AttentionSpec.pattern`, `.causal_rule`, `.border` |
| M[q, k] | `may_attend(spec, q_pos, k_pos)`; all pairs: `dense_mask(...)` (Nq, Nk) bool |

Every query sees at least its own (rescaled) position under every rule, so a query without keys only
arises from invalid arguments (negative extents, empty blocks); `make_spec` rejects those up front.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from nuwa_lab.attention.coords import (
    Grid,
    as_int,
    check_grid,
    grid_size,
    raster_coords,
    rescale_coords,
)
from nuwa_lab.config import ATTENTION_PATTERNS, BORDERS, CAUSAL_RULES

# the names are defined once, in the config (which checks them before anything runs)
PATTERNS = ATTENTION_PATTERNS


@dataclass(frozen=True)
class AttentionPattern:
    """Which keys a query may see, whatever the grids: the pattern and its options, validated.

    The model keeps one per attention layer (`Nuwa.decoder_spec()` ...); placed on a query grid and
    a key grid (`on`) it becomes the `AttentionSpec` that the masks and the efficient paths read.
    """

    pattern: str = "full"
    causal: bool = False
    extent: tuple[int, int, int] = (1, 1, 1)
    block: tuple[int, int, int] = (1, 4, 4)
    causal_rule: str = "raster"
    border: str = "truncate"

    def __post_init__(self) -> None:
        checked = {
            "pattern": _choice(self.pattern, PATTERNS, "pattern"),
            "causal": _flag(self.causal, "causal"),
            "extent": _triple(self.extent, "extent", 0, "the nearby radius (e^t, e^h, e^w)"),
            "block": _triple(self.block, "block", 1, "the block size (b^t, b^h, b^w)"),
            "causal_rule": _choice(self.causal_rule, CAUSAL_RULES, "causal_rule"),
            "border": _choice(self.border, BORDERS, "border"),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def kwargs(self) -> dict:
        """The pattern as keyword arguments of `attend` / `dense_mask`."""
        return {f.name: getattr(self, f.name) for f in fields(AttentionPattern)}

    def on(self, q_grid: object, kv_grid: object | None = None) -> AttentionSpec:
        """This pattern placed on a query grid and a key grid (None: self-attention)."""
        return make_spec(q_grid=q_grid, kv_grid=kv_grid, **self.kwargs())

    def mask(self, q_grid: object, kv_grid: object | None = None) -> torch.Tensor:
        """The dense (Nq, Nk) boolean mask on those grids (the oracle; for plots and weights)."""
        return spec_mask(self.on(q_grid, kv_grid))


@dataclass(frozen=True, kw_only=True)
class AttentionSpec(AttentionPattern):
    """A pattern placed on two grids: everything that decides the mask (built by `make_spec`)."""

    q_grid: Grid
    kv_grid: Grid

    @property
    def n_q(self) -> int:
        return grid_size(self.q_grid)

    @property
    def n_kv(self) -> int:
        return grid_size(self.kv_grid)


def _triple(value: object, name: str, minimum: int, meaning: str) -> tuple[int, int, int]:
    given = value
    if isinstance(value, int) and not isinstance(value, bool):
        given = (value, value, value)
    try:
        values = tuple(as_int(v) for v in given)  # type: ignore[union-attr]
    except TypeError:
        raise ValueError(
            f"{name} must be an int or a (t, h, w) tuple of ints >= {minimum}, got {value!r}"
        ) from None
    if len(values) != 3:
        raise ValueError(f"{name} must have three entries (t, h, w), got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(
            f"{name}={value!r} would leave a query with no visible key: {meaning} must be "
            f">= {minimum} on every axis"
        )
    return values  # type: ignore[return-value]


def _choice(value: str, valid: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    return value


def _flag(value: object, name: str) -> bool:
    if value not in (True, False):  # 0 / 1 and numpy / torch bools compare equal; "no" does not
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def make_spec(
    pattern: str,
    q_grid: object,
    kv_grid: object | None = None,
    causal: bool = False,
    *,
    extent: object = (1, 1, 1),
    block: object = (1, 4, 4),
    causal_rule: str = "raster",
    border: str = "truncate",
) -> AttentionSpec:
    """Validate the arguments of `attend` / `dense_mask` into an `AttentionSpec`."""
    q = check_grid(q_grid, "q_grid")
    kv = q if kv_grid is None else check_grid(kv_grid, "kv_grid")
    if causal and kv != q:
        raise ValueError(
            f"causal=True with kv_grid {kv} != q_grid {q}: causal masking is defined for "
            "self-attention only (NÜWA's cross-attention to a condition is not causal); "
            "pass causal=False for cross-attention, or kv_grid=None for causal self-attention"
        )
    return AttentionSpec(
        pattern=pattern,
        q_grid=q,
        kv_grid=kv,
        causal=causal,
        extent=extent,
        block=block,
        causal_rule=causal_rule,
        border=border,
    )


def window_start(c: torch.Tensor, radius: int, length: int, border: str) -> torch.Tensor:
    """First key coordinate of the nearby window around `c` (may be < 0 under "truncate")."""
    if border == "truncate":
        return c - radius
    return torch.clamp(c - radius, min=0, max=max(length - 2 * radius - 1, 0))


def window_bounds(
    c: torch.Tensor, radius: int, length: int, border: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive key range [lo, hi] of the window around `c`, clipped to the axis [0, length)."""
    lo = window_start(c, radius, length, border)
    return lo.clamp(min=0), (lo + 2 * radius).clamp(max=length - 1)


def _in_window(c: torch.Tensor, k: torch.Tensor, radius: int, length: int, border: str):
    if border == "truncate":
        return (k - c).abs() <= radius
    lo = window_start(c, radius, length, border)
    return (k >= lo) & (k <= lo + 2 * radius)


def may_attend(spec: AttentionSpec, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """M[q, k] for raster indices `q_pos` (on q_grid) and `k_pos` (on kv_grid), broadcast."""
    qt, qh, qw = raster_coords(q_pos, spec.q_grid)
    rt, rh, rw = rescale_coords(qt, qh, qw, spec.q_grid, spec.kv_grid)
    kt, kh, kw = raster_coords(k_pos, spec.kv_grid)
    if spec.pattern == "full":
        visible = torch.ones_like(q_pos + k_pos, dtype=torch.bool)
    elif spec.pattern == "axial":
        same = (kt == rt).int() + (kh == rh).int() + (kw == rw).int()
        visible = same >= 2
    elif spec.pattern == "block":
        bt, bh, bw = spec.block
        visible = (kt // bt == rt // bt) & (kh // bh == rh // bh) & (kw // bw == rw // bw)
    else:  # nearby
        (et, eh, ew), (lt, lh, lw), b = spec.extent, spec.kv_grid, spec.border
        visible = (
            _in_window(rt, kt, et, lt, b)
            & _in_window(rh, kh, eh, lh, b)
            & _in_window(rw, kw, ew, lw, b)
        )
    if spec.causal:
        if spec.causal_rule == "raster":
            visible = visible & (k_pos <= q_pos)
        else:
            visible = visible & (kt <= qt) & (kh <= qh) & (kw <= qw)
    return visible


def dense_mask(
    pattern: str,
    q_grid: object,
    kv_grid: object | None = None,
    causal: bool = False,
    *,
    extent: object = (1, 1, 1),
    block: object = (1, 4, 4),
    causal_rule: str = "raster",
    border: str = "truncate",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The (Nq, Nk) bool mask of a pattern: True where query row n may attend key column m."""
    spec = make_spec(
        pattern, q_grid, kv_grid, causal,
        extent=extent, block=block, causal_rule=causal_rule, border=border,
    )  # fmt: skip
    return spec_mask(spec, device=device)


def spec_mask(
    spec: AttentionSpec,
    q_positions: torch.Tensor | None = None,
    n_keys: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The mask of `spec` for the given query rows (default all) and the first `n_keys` keys."""
    # int32 keeps the (Nq, Nk) intermediates of the rules at half the memory of int64
    if q_positions is None:
        q_positions = torch.arange(spec.n_q, device=device, dtype=torch.int32)
    q_positions = q_positions.to(torch.int32)
    n_keys = spec.n_kv if n_keys is None else n_keys
    k_pos = torch.arange(n_keys, device=q_positions.device, dtype=torch.int32)
    return may_attend(spec, q_positions[:, None], k_pos[None, :])


def keys_per_query(spec: AttentionSpec) -> torch.Tensor:
    """How many keys each query sees (Nq,), counted on the dense mask: for tables and tests."""
    return spec_mask(spec).sum(-1)
