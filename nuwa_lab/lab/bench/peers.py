"""`python -m nuwa_lab bench peers [--json OUT] [--quick]`: our 3DNA layer beside nuwa-pytorch's.

The peer is lucidrains' public re-implementation `nuwa-pytorch` 0.7.8, its `Sparse3DNA` layer
(`nuwa_pytorch/nuwa_pytorch.py`). Both sides are whole layers, causal decoder self-attention over a
video grid, dim 256, 4 heads of width 64, batch 1: ours is `model.layers.SelfAttention` with the
nearby pattern (q/k/v and output projections included, `backend="auto"` as the model runs it), the
peer is `Sparse3DNA(..., causal=True)` (its q/kv/output projections, a talking-heads 1×1 conv over
the attention weights and an output bias included). Compiled FlexAttention runs between our
projections on the same mask. Per grid every layer is timed in turn, a warm-up first and then
rounds of one call each, so a slow spell of a shared machine falls on all of them alike; the
medians give forward ms (under no_grad) and forward + backward ms (gradients of the input and the
weights), and `peak_memory_mb` the peak tensor memory. The ratios peer/ours and flex/ours are
printed beside the targets: ours ≥ 7× faster than the peer's fwd+bwd at each grid (on the 3×7×7
box) and faster than compiled FlexAttention (forward: FlexAttention has no CPU backward in torch
2.14; the bench tries one and says so).

The peer's window is not our box (`peer_windows`): its kernel k is our nearby extent k-1 under the
quadrant rule, plus a BOS key, so the "same box" 3×7×7 is not the same set of keys (the peer sees
about twice as many). The bench therefore also times ours on the peer's exact keys (extent (2, 6,
6), quadrant) and both at the peer's default kernel 3×3×3. With our weights copied into the peer
(talking heads set to the identity, output bias 0) the peer equals dense attention over that window
plus BOS to float precision, which is checked at a small grid. The model-level `NUWA.embed_text` of
the peer passes `rotary_pos_emb=` to a `Transformer.forward` that does not take it; the bench uses
the layer alone and needs no patch.

The peer is installed on the first run (`peer_install`).

Axis letters: b batch, n tokens (raster order over t h w), d width, heads, e head width.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from nuwa_lab.attention import AttentionPattern, make_spec
from nuwa_lab.attention.flex import compiled_flex_attention, flex_block_mask, flex_status
from nuwa_lab.attention.masks import spec_mask
from nuwa_lab.attention.nearby import DEFAULT_TILE, tile_plan
from nuwa_lab.lab.bench.attention import fmt, peak_memory_mb
from nuwa_lab.lab.bench.peer_install import PEER, REQUIREMENTS, ensure_peer, peer_on_path
from nuwa_lab.lab.bench.peer_windows import peer_extent, peer_window_mask, window_text
from nuwa_lab.model.layers import SelfAttention

DIM, HEADS, HEAD_DIM = 256, 4, 64
GRIDS = ((8, 16, 16), (16, 32, 32))
QUICK_GRIDS = ((2, 4, 4), (4, 8, 8))
REPEATS, QUICK_REPEATS = 5, 3
PARITY_GRID = (3, 8, 8)  # large enough for a whole 3×7×7 box
SPEED_TARGET = 7.0  # peer / ours, fwd+bwd


@dataclass(frozen=True)
class Comparison:
    """Ours (nearby `extent` under `causal_rule`) against the peer's `Sparse3DNA(kernel)`."""

    name: str
    extent: tuple[int, int, int]
    causal_rule: str
    kernel: tuple[int, int, int]
    target: bool = False  # the targets (and FlexAttention) are measured on this one


COMPARISONS = (
    Comparison("box 3x7x7", (1, 3, 3), "raster", (3, 7, 7), target=True),
    Comparison("keys 3x7x7", (2, 6, 6), "quadrant", (3, 7, 7)),
    Comparison("box 3x3x3", (1, 1, 1), "raster", (3, 3, 3)),  # the peer's default kernel
    Comparison("keys 3x3x3", (2, 2, 2), "quadrant", (3, 3, 3)),
)


def describe(c: Comparison) -> dict[str, str]:
    extent = peer_extent(c.kernel)
    ours = window_text(c.extent, c.causal_rule)
    peer = window_text(extent, "quadrant")
    return {
        "comparison": c.name,
        "ours": f"nearby extent {c.extent}, {c.causal_rule}: {ours}",
        "peer": f"Sparse3DNA kernel {c.kernel}: {peer} + BOS (= our extent {extent}, quadrant)",
    }


# --- the layers ----------------------------------------------------------------------------------


def _ours(c: Comparison):
    pattern = AttentionPattern("nearby", causal=True, extent=c.extent, causal_rule=c.causal_rule)
    return SelfAttention(dim=DIM, heads=HEADS), pattern


def _peer(kernel, grid):
    from nuwa_pytorch.nuwa_pytorch import Sparse3DNA

    if grid[1] != grid[2]:
        raise ValueError(f"Sparse3DNA needs square frames, got grid {grid}")
    return Sparse3DNA(dim=DIM, video_shape=grid, kernel_size=kernel, heads=HEADS,
                      dim_head=HEAD_DIM, causal=True)  # fmt: skip


def _copy_weights(ours, peer) -> None:
    """Our projections into the peer; its talking heads to the identity, its output bias to 0."""
    with torch.no_grad():
        wq, wk, wv = ours.qkv.weight.chunk(3, dim=0)
        peer.to_q.weight.copy_(wq)
        peer.to_kv.weight.copy_(torch.cat([wk, wv]))
        peer.to_out.weight.copy_(ours.out.weight)
        peer.to_out.bias.zero_()
        peer.talking_heads.weight.copy_(torch.eye(HEADS)[:, :, None, None])


def _windowed(layer, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Dense attention of the last allowed.shape[0] tokens of x over the keys `allowed` marks."""
    q, k, v = (layer.split(t) for t in layer.qkv(x).chunk(3, dim=-1))
    y = F.scaled_dot_product_attention(q[:, :, -allowed.shape[0] :], k, v, attn_mask=allowed)
    return layer.out(layer.merge(y))


def parity(grid=PARITY_GRID) -> list[dict[str, Any]]:
    """Per peer kernel, with our weights copied in: the peer against dense attention over its
    window + BOS, that window against our quadrant mask, and the peer against our box layer."""
    out = []
    for c in COMPARISONS:
        if c.causal_rule != "quadrant":
            continue
        torch.manual_seed(0)
        ours, pattern = _ours(c)
        peer = _peer(c.kernel, grid).eval()
        _copy_weights(ours, peer)
        n = math.prod(grid)
        x = torch.randn(1, 1 + n, DIM)  # BOS + video
        window = peer_window_mask(c.kernel, grid)
        allowed = torch.cat([torch.ones(n, 1, dtype=torch.bool), window], dim=1)
        box = next(b for b in COMPARISONS if b.kernel == c.kernel and b.causal_rule == "raster")
        with torch.no_grad():
            y_peer = peer(x)[:, 1:]
            y_ref = _windowed(ours, x, allowed)
            y_quadrant = ours(x[:, 1:], pattern, grid=grid)
            y_box = ours(x[:, 1:], _ours(box)[1], grid=grid)
            y_window = _windowed(ours, x[:, 1:], window)
        ours_window = spec_mask(pattern.on(grid))
        out.append({
            "kernel": list(c.kernel), "grid": list(grid),
            "peer_vs_window_plus_bos": float((y_peer - y_ref).abs().max()),
            "window_is_our_quadrant_extent": list(peer_extent(c.kernel)),
            "window_equal": bool(torch.equal(window, ours_window)),
            "ours_quadrant_vs_window": float((y_quadrant - y_window).abs().max()),
            "peer_vs_ours_box": float((y_peer - y_box).abs().max()),
            "box_extent": list(box.extent),
        })  # fmt: skip
    return out


# --- timing --------------------------------------------------------------------------------------


def round_robin_ms(calls: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Median ms of each call: one warm-up each, then `repeats` rounds calling each in turn."""
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def _training_step(forward, module, x):
    """forward(x) and the gradients of the input and of `module`'s weights, as one call."""
    xg = x.detach().requires_grad_()
    params = [p for p in module.parameters() if p.requires_grad]

    def step():
        out = forward(xg)
        return torch.autograd.grad(out, [xg, *params], torch.ones_like(out))

    return step


def _layer_call(layer, pattern, grid):
    return lambda x: layer(x, pattern, grid=grid)


def _flex_call(layer, spec, n):
    """Our layer with compiled FlexAttention between its projections."""
    # compiling imports cpp_extension, which logs a CUDA warning on CPU-only machines
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    block_mask = flex_block_mask(spec, n, n, None, "cpu")
    attend = compiled_flex_attention()

    def forward(x):
        q, k, v = (layer.split(t) for t in layer.qkv(x).chunk(3, dim=-1))
        return layer.out(layer.merge(attend(q, k, v, block_mask=block_mask)))

    return forward


def _flex_backward_problem(forward, x) -> str:
    """Empty if compiled FlexAttention runs backward here, else why not."""
    try:
        forward(x.detach().requires_grad_()).sum().backward()
    except (NotImplementedError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"[:200]
    return ""


def _flex_row(forward, ours, x) -> dict[str, Any]:
    """Compile (the first call), compare with ours, probe the backward."""
    start = time.perf_counter()
    with torch.no_grad():
        err = float((forward(x) - ours(x)).abs().max())
    compile_s = round(time.perf_counter() - start, 1)
    backward = _flex_backward_problem(forward, x) or "yes"
    return {"side": "flex", "compile_s": compile_s, "max_abs_err": err, "backward": backward}


def keys_seen(extent, causal_rule, grid) -> float:
    """Mean keys a query sees inside the grid (exact, from the tile plan's mask)."""
    spec = make_spec("nearby", grid, None, True, extent=extent, causal_rule=causal_rule)
    return round(tile_plan(spec, DEFAULT_TILE, "cpu").visible_pairs() / math.prod(grid), 2)


def measure_grid(grid, repeats: int, with_flex: bool) -> list[dict]:
    """One row per comparison and side at one grid: every layer timed in the same rounds."""
    torch.manual_seed(0)
    n = math.prod(grid)
    x = torch.randn(1, n, DIM)
    x_peer = torch.cat([torch.randn(1, 1, DIM), x], dim=1)  # BOS + video
    rows: dict[str, dict] = {}  # name -> row
    fwd: dict[str, Callable] = {}  # name -> the forward call
    step: dict[str, Callable] = {}  # name -> forward + backward, as one call
    for c in COMPARISONS:
        layer, pattern = _ours(c)
        forward = _layer_call(layer, pattern, grid)
        seen = keys_seen(c.extent, c.causal_rule, grid)
        rows[c.name] = {"comparison": c.name, "side": "ours", "extent": list(c.extent),
                        "causal_rule": c.causal_rule, "keys_seen": seen}  # fmt: skip
        fwd[c.name], step[c.name] = partial(forward, x), _training_step(forward, layer, x)
        peer_name = "peer " + "x".join(map(str, c.kernel))
        if peer_name not in rows:
            peer = _peer(c.kernel, grid)
            seen = keys_seen(peer_extent(c.kernel), "quadrant", grid) + 1  # + BOS
            rows[peer_name] = {"side": "peer", "kernel": list(c.kernel), "keys_seen": seen}
            fwd[peer_name] = partial(peer, x_peer)
            step[peer_name] = _training_step(peer, peer, x_peer)
        if c.target and with_flex and not flex_status():
            flex = _flex_call(layer, pattern.on(grid), n)
            rows["flex"] = {**rows[c.name], **_flex_row(flex, forward, x)}
            fwd["flex"] = partial(flex, x)
            if rows["flex"]["backward"] == "yes":
                step["flex"] = _training_step(flex, layer, x)
    with torch.no_grad():
        fwd_ms = round_robin_ms(fwd, repeats)
        fwd_mb = {name: peak_memory_mb(call)[0] for name, call in fwd.items()}
    step_ms = round_robin_ms(step, repeats)
    step_mb = {name: peak_memory_mb(call)[0] for name, call in step.items()}
    out = []
    for name, row in rows.items():
        row.update(grid=list(grid), tokens=n, fwd_ms=fwd_ms[name], fwd_mb=fwd_mb[name],
                   fwdbwd_ms=step_ms.get(name), fwdbwd_mb=step_mb.get(name))  # fmt: skip
        if row["side"] != "peer":
            out.append(row)
            continue
        for c in COMPARISONS:  # the peer's row again under each comparison using its kernel
            if list(c.kernel) == row["kernel"]:
                out.append({**row, "comparison": c.name})
    order, sides = [c.name for c in COMPARISONS], ["ours", "peer", "flex"]
    return sorted(out, key=lambda r: (order.index(r["comparison"]), sides.index(r["side"])))


def add_ratios(rows: list[dict]) -> list[dict]:
    """x_fwd, x_fwdbwd, x_mb: each peer or flex row over ours (same comparison and grid)."""
    ours = {(r["comparison"], tuple(r["grid"])): r for r in rows if r["side"] == "ours"}
    for r in rows:
        base = ours.get((r["comparison"], tuple(r["grid"])))
        if r["side"] == "ours" or base is None:
            continue
        for key, name in (("fwd_ms", "x_fwd"), ("fwdbwd_ms", "x_fwdbwd"), ("fwdbwd_mb", "x_mb")):
            if r.get(key) and base.get(key):
                r[name] = round(r[key] / base[key], 2)
        if r["side"] == "flex" and not r.get("x_mb") and r.get("fwd_mb") and base.get("fwd_mb"):
            r["x_mb"] = round(r["fwd_mb"] / base["fwd_mb"], 2)  # forward-only: forward memory
    return rows


def targets(rows: list[dict]) -> list[dict[str, Any]]:
    """The goals, per grid, on the target comparison: ratios with their thresholds."""
    name = next(c.name for c in COMPARISONS if c.target)
    out = []
    for r in rows:
        if r["comparison"] != name:
            continue
        grid = "x".join(map(str, r["grid"]))
        if r["side"] == "peer" and r.get("x_fwdbwd") is not None:
            goal = f"ours >= {SPEED_TARGET:g}x faster than the peer, fwd+bwd, {grid}"
            met = r["x_fwdbwd"] >= SPEED_TARGET
            out.append({"target": goal, "value": r["x_fwdbwd"], "met": met})
        elif r["side"] == "flex" and r.get("x_fwd") is not None:
            only = "" if r.get("x_fwdbwd") else " (flex is forward-only here)"
            goal = f"ours faster than compiled FlexAttention, fwd{only}, {grid}"
            out.append({"target": goal, "value": r["x_fwd"], "met": r["x_fwd"] > 1})
    return out


# --- the table -----------------------------------------------------------------------------------


HEADER = (
    f"{'comparison':>10} {'grid':>8} {'tokens':>6} {'side':>5} {'keys/q':>7} {'fwd ms':>9} "
    f"{'f+b ms':>9} {'fwd MB':>8} {'f+b MB':>8} {'x fwd':>6} {'x f+b':>6} {'x MB':>5}"
)


def _print_row(r: dict) -> None:
    print(
        f"{r['comparison']:>10} {'x'.join(map(str, r['grid'])):>8} {r['tokens']:>6} "
        f"{r['side']:>5} {r['keys_seen']:>7} {fmt(r['fwd_ms']):>9} {fmt(r['fwdbwd_ms']):>9} "
        f"{fmt(r['fwd_mb']):>8} {fmt(r['fwdbwd_mb']):>8} {fmt(r.get('x_fwd'), 2):>6} "
        f"{fmt(r.get('x_fwdbwd'), 2):>6} {fmt(r.get('x_mb'), 2):>5}",
        flush=True,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Install the peer if needed, check parity, time every comparison per grid, print, return."""
    quick = bool(getattr(args, "quick", False))
    grids, repeats = (QUICK_GRIDS, QUICK_REPEATS) if quick else (GRIDS, REPEATS)
    target = ensure_peer()
    try:
        with peer_on_path(target):
            import nuwa_pytorch  # noqa: F401 - the whole package, as its users import it
    except ImportError as error:
        fix = "delete that directory and run the bench again to reinstall it"
        raise SystemExit(f"the peer in {target} does not import ({error}); {fix}") from error

    load = round(os.getloadavg()[0], 1)
    print(f"peers bench: ours vs {PEER} Sparse3DNA, dim {DIM}, {HEADS} heads of {HEAD_DIM}, "
          f"batch 1, causal, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"load average {load} on {os.cpu_count()} cores before the run")  # fmt: skip
    if load > 0.5 and torch.get_num_threads() > 1:
        print(
            "(other processes are running: with several threads each parallel region waits "
            "for a busy core, which slows small calls most; OMP_NUM_THREADS=1 avoids that)"
        )
    print("keys/q: mean keys a query sees; peer rows: + its BOS key and one more query (BOS)")
    print("x fwd, x f+b, x MB: this row / ours (x MB: f+b MB, or fwd MB for forward-only flex)")
    print("memory: torch profiler, peak bytes of tensors made during the call\n")
    windows = [describe(c) for c in COMPARISONS]
    for w in windows:
        print(f"{w['comparison']:>10}  ours: {w['ours']}\n{'':>10}  peer: {w['peer']}")
    checks = parity()
    print(f"\nparity at {'x'.join(map(str, PARITY_GRID))}, our weights copied into the peer:")
    for p in checks:
        print(f"  kernel {p['kernel']}: peer vs dense over its window + BOS "
              f"{p['peer_vs_window_plus_bos']:.1e}; that window == our extent "
              f"{p['window_is_our_quadrant_extent']} quadrant: {p['window_equal']}; peer vs our "
              f"box {p['box_extent']} layer {p['peer_vs_ours_box']:.2f} (other keys); ours on "
              f"that window vs dense {p['ours_quadrant_vs_window']:.1e}")  # fmt: skip
    print("\n" + HEADER)
    rows: list[dict] = []
    for grid in grids:
        with_flex = not quick or grid == grids[-1]  # each new shape compiles anew (seconds-minutes)
        grid_rows = add_ratios(measure_grid(grid, repeats, with_flex))
        for r in grid_rows:
            _print_row(r)
        rows += grid_rows
    goals = targets(rows)
    print("\ntargets:")
    for t in goals:
        print(f"  [{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['value']}")
    for r in rows:
        if r["side"] == "flex":
            print(f"  flex {r['grid']}: compile {r['compile_s']} s, max |flex - ours| "
                  f"{r['max_abs_err']:.1e}, backward: {r['backward']}")  # fmt: skip
    flex_note = flex_status() or ("" if any(r["side"] == "flex" for r in rows) else "not run")
    if flex_note:
        print(f"  flex: {flex_note}")
    return {
        "config": {"dim": DIM, "heads": HEADS, "head_dim": HEAD_DIM, "batch": 1, "quick": quick,
                   "repeats": repeats, "threads": torch.get_num_threads(), "load": load,
                   "torch": torch.__version__, "peer": list(REQUIREMENTS),
                   "peer_dir": str(target)},
        "windows": windows,
        "parity": checks,
        "rows": rows,
        "targets": goals,
    }  # fmt: skip
