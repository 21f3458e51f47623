"""`python -m nuwa_lab bench attention [--json OUT] [--quick]`: dense, efficient and flex.

Per pattern (causal decoder self-attention, raster rule) and grid (up to 16×32×32 = 16,384 tokens),
4 heads, e = 64, batch 1: forward ms (under no_grad), forward+backward ms, peak memory, the speed-up
over the dense oracle, and the keys each query sees (the paper's complexity term and the exact mean
under the causal mask). All numbers come from one process, so their ratios are comparable.

Memory is measured with the torch profiler (`profile_memory=True`): the peak, over the call, of the
bytes held by tensors allocated during it (inputs excluded, outputs and saved activations included).
It is tensor memory, not process RSS. FlexAttention is forward-only on CPU (no backward kernel), is
compiled with `torch.compile`, and its compile and block-mask times are reported separately.
The dense oracle's forward+backward is skipped above `DENSE_BACKWARD_MAX` tokens (at 16,384 tokens
it needs four 16k×16k×4 float tensors at once, ~17 GB); its forward runs once per size there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nuwa_lab.attention.api import attend
from nuwa_lab.attention.axial import line_masks
from nuwa_lab.attention.block import block_plan
from nuwa_lab.attention.flex import (
    compiled_flex_attention,
    flex_attend,
    flex_block_mask,
    flex_status,
)
from nuwa_lab.attention.masks import keys_per_query as counted
from nuwa_lab.attention.masks import make_spec
from nuwa_lab.attention.nearby import DEFAULT_TILE, tile_plan

HEADS, HEAD_DIM = 4, 64
GRIDS = ((2, 32, 32), (4, 32, 32), (8, 32, 32), (16, 32, 32))
QUICK_GRIDS = ((2, 4, 4), (4, 4, 4))
PATTERN_ARGS: dict[str, dict[str, Any]] = {
    "full": {},
    "axial": {},
    "block": {"block": (1, 4, 4)},
    "nearby": {"extent": (1, 1, 1)},
}
DENSE_BACKWARD_MAX = 8192  # tokens
DENSE_REPEAT_MAX = 2048  # above this the dense oracle runs once per measurement
FLEX_ALL_SIZES = ("nearby",)  # other patterns: flex at the largest grid only (compiling is slow)


@contextlib.contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the block: silences logs written by C++ code
    (which `contextlib.redirect_stderr` cannot reach, and which notebooks would show)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(fn) -> tuple[float, Any]:
    """(peak MB of tensors allocated during fn(), fn's result), from profiler memory events."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with native_stderr_silenced():  # the profiler's C++ logs "USDT: profiler_start" lines
        prof.start()
    try:
        result = fn()
    finally:
        with native_stderr_silenced():
            prof.stop()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    deltas = sorted((e["ts"], e["args"]["Bytes"]) for e in events if e.get("name") == "[memory]")
    held = peak = 0
    for _, nbytes in deltas:
        held += nbytes
        peak = max(peak, held)
    return peak / 2**20, result


def _timed(fn) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def measure(fn, repeats: int) -> dict[str, float]:
    """ms (best of `repeats` after a profiled run) and peak MB; one profiled run if repeats=0."""
    if repeats == 0:
        start = time.perf_counter()
        mb, _ = peak_memory_mb(fn)
        return {"ms": (time.perf_counter() - start) * 1000, "mb": mb}
    mb, _ = peak_memory_mb(fn)
    return {"ms": min(_timed(fn)[0] for _ in range(repeats)), "mb": mb}


def keys_per_query(pattern: str, grid, args: dict) -> dict[str, float]:
    """The paper's per-query cost term (non-causal) and the exact mean under the causal mask."""

    n = math.prod(grid)
    spec = make_spec(pattern, grid, None, True, **args)
    if pattern == "full":
        paper, pairs = n, n * (n + 1) // 2
    elif pattern == "axial":
        paper = sum(grid)
        ar = [torch.arange(a) for a in grid]
        pairs = int(line_masks(spec, *ar, "cpu").sum())
    elif pattern == "block":
        paper, pairs = math.prod(spec.block), block_plan(spec, "cpu").visible_pairs()
    else:
        paper = math.prod(2 * e + 1 for e in spec.extent)
        pairs = tile_plan(spec, DEFAULT_TILE, "cpu").visible_pairs()
    return {"keys_paper": paper, "keys_causal_mean": round(pairs / n, 2)}


def _flex_cell(pattern, grid, args, q, k, v, reference) -> dict[str, Any]:

    spec = make_spec(pattern, grid, None, True, **args)
    n = q.shape[2]
    mask_ms, block_mask = _timed(lambda: flex_block_mask(spec, n, n, None, "cpu"))
    compiled_flex_attention()
    with torch.no_grad():
        first_ms, out = _timed(lambda: flex_attend(q, k, v, spec, block_mask=block_mask))
        fwd = measure(lambda: flex_attend(q, k, v, spec, block_mask=block_mask), repeats=3)
    return {
        "fwd_ms": fwd["ms"],
        "fwd_mb": fwd["mb"],
        "fwdbwd_ms": None,
        "fwdbwd_mb": None,
        "max_abs_err": float((out - reference).abs().max()),
        "compile_s": round((first_ms - fwd["ms"]) / 1000, 1),
        "block_mask_ms": mask_ms,
    }


def _cell(pattern, grid, args, backend, q, k, v, repeats) -> dict[str, Any]:
    kwargs = dict(pattern=pattern, q_grid=grid, causal=True, backend=backend, **args)
    n = q.shape[2]
    reps = repeats if backend != "dense" or n <= DENSE_REPEAT_MAX else 0
    with torch.no_grad():
        fwd = measure(lambda: attend(q, k, v, **kwargs), reps)
    row: dict[str, Any] = {"fwd_ms": fwd["ms"], "fwd_mb": fwd["mb"]}
    if backend == "dense" and n > DENSE_BACKWARD_MAX:
        row.update(
            fwdbwd_ms=None, fwdbwd_mb=None, note=f"fwd+bwd skipped above {DENSE_BACKWARD_MAX}"
        )
        return row
    qg, kg, vg = (x.detach().requires_grad_() for x in (q, k, v))
    d_out = torch.ones_like(q)

    def step():
        out = attend(qg, kg, vg, **kwargs)
        return torch.autograd.grad(out, (qg, kg, vg), d_out)

    both = measure(step, reps)
    row.update(fwdbwd_ms=both["ms"], fwdbwd_mb=both["mb"])
    return row


def fmt(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def _print_row(r: dict) -> None:
    print(
        f"{r['pattern']:>7} {'x'.join(map(str, r['grid'])):>8} {r['tokens']:>6} "
        f"{r['keys_paper']:>6} {r['keys_causal_mean']:>8} {r['backend']:>9} "
        f"{fmt(r['fwd_ms']):>10} {fmt(r['fwdbwd_ms']):>10} {fmt(r['fwd_mb']):>9} "
        f"{fmt(r['fwdbwd_mb']):>9} {fmt(r.get('speedup_fwd')):>8} "
        f"{fmt(r.get('speedup_fwdbwd')):>8}",
        flush=True,
    )


HEADER = (
    f"{'pattern':>7} {'grid':>8} {'tokens':>6} {'k/q ppr':>6} {'k/q caus':>8} {'backend':>9} "
    f"{'fwd ms':>10} {'f+b ms':>10} {'fwd MB':>9} {'f+b MB':>9} {'x fwd':>8} {'x f+b':>8}"
)


def _targets(rows: list[dict], largest) -> list[dict[str, Any]]:
    def get(pattern, backend, grid=largest):
        return next(
            (
                r
                for r in rows
                if (r["pattern"], r["backend"], tuple(r["grid"])) == (pattern, backend, grid)
            ),
            None,
        )

    out = []
    near, dense, flex = get("nearby", "efficient"), get("nearby", "dense"), get("nearby", "flex")
    if near and dense:
        out.append({"target": "nearby fwd speed-up over dense >= 30", "value": near["speedup_fwd"],
                    "met": near["speedup_fwd"] >= 30})  # fmt: skip
    if near and flex:
        ratio = flex["fwd_ms"] / near["fwd_ms"]
        out.append({"target": "nearby fwd no slower than compiled flex (flex/efficient >= 1)",
                    "value": round(ratio, 2), "met": ratio >= 1})  # fmt: skip
    half = (largest[0] // 2, *largest[1:])
    small = get("nearby", "efficient", half)
    if near and small:
        for key in ("fwd_mb", "fwdbwd_mb"):
            ratio = near[key] / small[key]
            doubling = f"{half[0]}->{largest[0]}"
            out.append({"target": f"nearby {key} grows <= 2.2x when T doubles {doubling}",
                        "value": round(ratio, 2), "met": ratio <= 2.2})  # fmt: skip
    for pattern in ("axial", "block"):
        eff = get(pattern, "efficient")
        if eff and get(pattern, "dense"):
            out.append({"target": f"{pattern} fwd speed-up over dense >= 10",
                        "value": eff["speedup_fwd"], "met": eff["speedup_fwd"] >= 10})  # fmt: skip
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every pattern × grid × backend, print the table and the targets, return them."""

    quick = bool(getattr(args, "quick", False))
    grids = QUICK_GRIDS if quick else GRIDS
    repeats = 1 if quick else 3
    flex_reason = "skipped in --quick (compiling takes about a minute per shape)" if quick else ""
    flex_reason = flex_reason or flex_status()
    torch.manual_seed(0)
    print(f"attention bench: {HEADS} heads, e={HEAD_DIM}, batch 1, causal (raster), "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    print("memory: torch profiler, peak bytes of tensors allocated during the call")
    print(HEADER)
    rows: list[dict[str, Any]] = []
    for pattern, pattern_args in PATTERN_ARGS.items():
        for grid in grids:
            n = math.prod(grid)
            q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM) for _ in range(3))
            base = {"pattern": pattern, "grid": list(grid), "tokens": n, **pattern_args,
                    **keys_per_query(pattern, grid, pattern_args)}  # fmt: skip
            with torch.no_grad():
                reference = attend(
                    q, k, v, pattern=pattern, q_grid=grid, causal=True, **pattern_args
                )
            cells = {b: _cell(pattern, grid, pattern_args, b, q, k, v, repeats)
                     for b in ("dense", "efficient")}  # fmt: skip
            with torch.no_grad():
                dense_out = attend(q, k, v, pattern=pattern, q_grid=grid, causal=True,
                                   backend="dense", **pattern_args)  # fmt: skip
            cells["efficient"]["max_abs_err"] = float((reference - dense_out).abs().max())
            del dense_out
            if not flex_reason and (pattern in FLEX_ALL_SIZES or grid == grids[-1]):
                try:
                    cells["flex"] = _flex_cell(pattern, grid, pattern_args, q, k, v, reference)
                except Exception as error:  # noqa: BLE001 - report, do not hide
                    flex_reason = f"flex failed: {type(error).__name__}: {error}"[:300]
            for backend, cell in cells.items():
                row = {**base, "backend": backend, **cell}
                for key, name in (("fwd_ms", "speedup_fwd"), ("fwdbwd_ms", "speedup_fwdbwd")):
                    if row.get(key) and cells["dense"].get(key):
                        row[name] = round(cells["dense"][key] / row[key], 2)
                rows.append(row)
                _print_row(row)
    targets = _targets(rows, grids[-1])
    print("\ntargets (measured at the largest grid):")
    for t in targets:
        print(f"  [{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['value']}")
    for r in rows:
        if r["backend"] == "flex":
            print(f"  flex {r['pattern']} {r['grid']}: compile {r['compile_s']} s, "
                  f"block mask {r['block_mask_ms']:.0f} ms, max |flex - efficient| "
                  f"{r['max_abs_err']:.1e}")  # fmt: skip
    if flex_reason:
        print(f"  flex: {flex_reason}")
    return {
        "config": {"heads": HEADS, "head_dim": HEAD_DIM, "batch": 1, "causal_rule": "raster",
                   "threads": torch.get_num_threads(), "torch": torch.__version__,
                   "quick": quick, "dense_backward_max_tokens": DENSE_BACKWARD_MAX},
        "memory_method": "torch.profiler profile_memory: peak bytes of tensors made in the call",
        "flex_status": flex_reason or "measured (compiled, forward only: no CPU backward)",
        "rows": rows,
        "targets": targets,
    }  # fmt: skip


PAPER_COST = {"full": "N", "axial": "T+H+W", "block": "bt·bh·bw", "nearby": "(2et+1)(2eh+1)(2ew+1)"}


def complexity_table(
    grid,
    *,
    extent=(1, 1, 1),
    block=(1, 4, 4),
    heads: int = 2,
    head_dim: int = 16,
    seconds: float = 0.2,
) -> list[dict[str, Any]]:
    """The paper's per-query cost beside keys counted on the mask and timings (notebook 03).

    Each (pattern, backend) is timed with `torch.utils.benchmark.Timer.blocked_autorange` for at
    least `seconds`: blocks of calls long enough to dwarf the timer, whose median and quartiles
    are kept. `speedup` is dense / efficient at the medians; `speedup_range` pairs the quartiles
    the pessimistic and optimistic way (dense q25 / efficient q75 .. dense q75 / efficient q25),
    and `faster` names a winner only when the whole range is on one side of 1, so a stall of the
    machine cannot crown one. Uses dense masks, so keep `grid` small (a few thousand tokens).
    """
    import logging

    # torch.utils.benchmark imports cpp_extension, which logs a CUDA warning on CPU-only machines
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer  # only where timings are taken

    n = math.prod(grid)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, head_dim, generator=g) for _ in range(3))
    paper = {"full": n, "axial": sum(grid), "block": math.prod(block),
             "nearby": math.prod(2 * e + 1 for e in extent)}  # fmt: skip
    rows = []
    for pattern in PAPER_COST:
        args = {"extent": extent, "block": block}
        row = {"pattern": pattern, "paper_cost": PAPER_COST[pattern], "paper_keys": paper[pattern]}
        for causal in (False, True):
            keys = counted(make_spec(pattern, grid, None, causal, **args)).float()
            row["keys_causal" if causal else "keys"] = round(float(keys.mean()), 2)
        quartiles = {}
        for backend in ("dense", "efficient"):
            kwargs = dict(pattern=pattern, q_grid=grid, causal=True, backend=backend, **args)
            with torch.no_grad():
                attend(q, k, v, **kwargs)  # warm-up (plans are cached)
                timer = Timer(
                    "attend(q, k, v, **kwargs)",
                    globals={"attend": attend, "q": q, "k": k, "v": v, "kwargs": kwargs},
                    num_threads=torch.get_num_threads(),
                )
                measured = timer.blocked_autorange(min_run_time=seconds)
            times = sorted(measured.times)
            q25, q75 = (times[round(f * (len(times) - 1))] for f in (0.25, 0.75))
            quartiles[backend] = (q25, measured.median, q75)
            row[f"{backend}_ms"] = round(measured.median * 1e3, 3)
            row[f"{backend}_iqr_ms"] = round((q75 - q25) * 1e3, 3)
        dense, efficient = quartiles["dense"], quartiles["efficient"]
        row["speedup"] = round(dense[1] / efficient[1], 2)
        low, high = dense[0] / efficient[2], dense[2] / efficient[0]
        low, high = round(low, 2), round(high, 2)
        row["speedup_range"] = (low, high)
        row["faster"] = "efficient" if low > 1 else "dense" if high < 1 else "within the spread"
        rows.append(row)
    return rows
