"""What each attention pattern costs inside the whole model: one S2V training step per pattern.

- `pattern_costs(cfg)`: at the preset's grid, side by side in one process (notebook 04's table).
- `cost_curve(cfg, grids)`: as the sequence grows, beside the paper's complexity
  (`python -m nuwa_lab bench cost`, notebook 04's curves); `log_log_slope` reads the power law.

Every row is measured in this process on an untrained model and random codes, so ratios between
patterns are comparable; absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from nuwa_lab.attention import PATTERNS
from nuwa_lab.config import Config, make_config
from nuwa_lab.lab.bench.attention import peak_memory_mb
from nuwa_lab.model.condition import Condition
from nuwa_lab.model.counting import forward_flops
from nuwa_lab.model.nuwa import Nuwa
from nuwa_lab.model.sizes import model_sizes
from nuwa_lab.recipes.ablation import ablation_config

# ---------------------------------------------------------------- the attention ablation's costs


def random_s2v(cfg: Config, batch: int, g: torch.Generator) -> tuple[Condition, torch.Tensor]:
    sizes = model_sizes(cfg, text_vocab=8)
    grid = sizes["max_grid"]
    sketch = torch.randint(0, sizes["sketch_codebook_size"], (batch, *grid), generator=g)
    target = torch.randint(0, sizes["codebook_size"], (batch, *grid), generator=g)
    return Condition.video_sketch(sketch), target


def s2v_step_flops(cfg: Config, sizes: dict, batch: int) -> int:
    """Model FLOPs of one S2V training step (forward and backward = 3 forwards) on the max grid."""
    grid = sizes["max_grid"]
    return 3 * forward_flops(
        cfg.model,
        condition_kind="video_sketch",
        condition_grid=grid,
        target_grid=grid,
        codebook_size=sizes["codebook_size"],
        batch=batch,
    )


def training_step(model: Nuwa, condition: Condition, target: torch.Tensor):
    """One training step (forward, backward, AdamW) of `model` as a function of no arguments."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        _, loss = model(condition, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def step_cost(model: Nuwa, condition: Condition, target: torch.Tensor, *, repeats: int = 3):
    """Median seconds and peak tensor MB of one training step (forward, backward, AdamW)."""
    step = training_step(model, condition, target)
    step()  # warm-up (and the optimizer's state)
    mb, _ = peak_memory_mb(step)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"sec_per_step": statistics.median(times), "peak_mem_mb": mb}


def pattern_costs(
    cfg: Config, patterns=PATTERNS, *, batch: int | None = None, repeats: int = 5
) -> list[dict[str, Any]]:
    """Per pattern: decoder keys per query (causal mean), model GFLOP per training step, and the
    measured time and peak tensor memory of one S2V training step of an untrained model.

    The timed steps take turns (full, axial, block, nearby, full, ...; `repeats` rounds after a
    warm-up), and each pattern's time is its fastest step: other programs only ever add time to a
    step, so the minimum is the estimate least disturbed by them (measured on a shared 2-core
    machine: the medians of all four patterns came out 5-10x too slow while every minimum stayed
    within 6% of a quiet run's), and taking turns spreads a slow phase over every pattern. The
    ratios between patterns (the equal wall-clock budget of the ablation) then hold on a busy
    machine too. `sec_per_step_median` and `sec_per_step_spread` (min, max) are kept beside it."""
    batch = batch or cfg.tasks.finetune_batch_size
    rows, steps = [], []
    for pattern in patterns:
        arm = ablation_config(cfg, pattern)
        sizes = model_sizes(arm, text_vocab=8)
        torch.manual_seed(0)
        model = Nuwa(arm.model, **sizes)
        condition, target = random_s2v(arm, batch, torch.Generator().manual_seed(0))
        grid = sizes["max_grid"]
        keys = int(model.decoder_spec().mask(grid, grid).sum()) / (grid[0] * grid[1] * grid[2])
        step = training_step(model, condition, target)
        step()  # warm-up (and the optimizer's state)
        mb, _ = peak_memory_mb(step)
        steps.append(step)
        rows.append(
            {
                "pattern": pattern,
                "keys_per_query": round(keys, 1),
                "gflop_per_step": round(s2v_step_flops(arm, sizes, batch) / 1e9, 2),
                "peak_mem_mb": mb,
            }
        )
    times: list[list[float]] = [[] for _ in rows]
    for _ in range(repeats):
        for step, measured in zip(steps, times, strict=True):
            start = time.perf_counter()
            step()
            measured.append(time.perf_counter() - start)
    for row, measured in zip(rows, times, strict=True):
        row["sec_per_step"] = min(measured)
        row["sec_per_step_median"] = statistics.median(measured)
        row["sec_per_step_spread"] = (min(measured), max(measured))
    return with_time_vs_full(rows)


def with_time_vs_full(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pattern's step time over full attention's, with a range and a verdict.

    `time_vs_full` divides the fastest steps; `time_vs_full_range` pairs each side's fastest and
    median step the pessimistic and the optimistic way, and `cheaper_than_full` says "yes" or "no"
    only when the whole range is on one side of 1 ("within the spread" otherwise), so two runs on
    one machine never name opposite answers because of a stall."""
    full = next((r for r in rows if r["pattern"] == "full"), None)
    if full is None:
        return rows
    for row in rows:
        low = row["sec_per_step"] / full["sec_per_step_median"]
        high = row["sec_per_step_median"] / full["sec_per_step"]
        row["time_vs_full"] = round(row["sec_per_step"] / full["sec_per_step"], 2)
        row["time_vs_full_range"] = (round(low, 2), round(high, 2))
        row["cheaper_than_full"] = "yes" if high < 1 else "no" if low > 1 else "within the spread"
    return rows


# ---------------------------------------------------------------- cost as the sequence grows

# token grids (t, h, w) of the cost curve: 256 ... 8,192 tokens, one grid for the condition sketch
# and one for the video (S2V, the paper's ablation task)
COST_GRIDS = ((4, 8, 8), (4, 16, 16), (8, 16, 16), (16, 16, 16), (8, 32, 32))
QUICK_COST_GRIDS = ((2, 4, 4), (4, 4, 4))
# the paper's complexity per layer (NÜWA §3.2): N queries times the keys each one sees
PAPER_COMPLEXITY = {
    "full": "O(N²)",
    "axial": "O(N(T+H+W))",
    "block": "O(N·b^t·b^h·b^w)",
    "nearby": "O(N·e^t·e^h·e^w)",
}


def paper_keys_per_query(pattern: str, grid, extent, block) -> int:
    """Keys per query in the paper's complexity term (no causal mask, no border effects)."""
    t, h, w = grid
    return {
        "full": t * h * w,
        "axial": t + h + w,
        "block": math.prod(block),
        "nearby": math.prod(2 * e + 1 for e in extent),
    }[pattern]


def grid_config(cfg: Config, grid) -> Config:
    """`cfg` with a world whose videos tokenize to `grid` (t, h, w), h = w."""
    t, h, w = grid
    if h != w:
        raise ValueError(f"the Shapes World is square: grid {grid} needs h = w")
    world = dataclasses.replace(cfg.world, frames=t, image_size=h * cfg.tokenizer.downsample)
    return dataclasses.replace(cfg, world=world)


def cost_curve(
    cfg: Config,
    grids=COST_GRIDS,
    patterns=PATTERNS,
    *,
    batch: int = 1,
    repeats: int = 2,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Per token grid and pattern: one S2V training step of the whole (untrained) model.

    Rows: tokens N, pattern, the paper's complexity and its keys per query, the keys per query the
    causal decoder mask really leaves (counted on grids up to 4,096 tokens), model GFLOP per step,
    median seconds per step and peak tensor memory (MB). Every row is measured in this process, so
    the ratios between patterns are comparable; absolute times depend on the machine.
    """
    rows = []
    cells = [(grid, pattern) for grid in grids for pattern in patterns]
    for grid, pattern in tqdm(cells, desc="cost curve", disable=not progress):
        arm = ablation_config(grid_config(cfg, grid), pattern)
        sizes = model_sizes(arm, text_vocab=8)
        torch.manual_seed(0)
        model = Nuwa(arm.model, **sizes)
        condition, target = random_s2v(arm, batch, torch.Generator().manual_seed(0))
        n = math.prod(grid)
        keys = None
        if n <= 4096:  # the dense mask is N x N booleans
            keys = round(int(model.decoder_spec().mask(grid, grid).sum()) / n, 1)
        flops = s2v_step_flops(arm, sizes, batch)
        rows.append(
            {
                "tokens": n,
                "grid": "×".join(map(str, grid)),
                "pattern": pattern,
                "paper_complexity": PAPER_COMPLEXITY[pattern],
                "paper_keys_per_query": paper_keys_per_query(
                    pattern, grid, arm.model.extent, arm.model.block
                ),
                "causal_keys_per_query": keys,
                "gflop_per_step": round(flops / 1e9, 2),
                **step_cost(model, condition, target, repeats=repeats),
            }
        )
    return rows


def relative_to(rows: list[dict[str, Any]], baseline: str = "nearby") -> list[dict[str, Any]]:
    """Each row's time and memory as a multiple of the `baseline` pattern's at the same N."""
    base = {r["tokens"]: r for r in rows if r["pattern"] == baseline}
    out = []
    for r in rows:
        b = base.get(r["tokens"])
        out.append(
            {
                **r,
                f"time_vs_{baseline}": round(r["sec_per_step"] / b["sec_per_step"], 2)
                if b
                else None,
                f"memory_vs_{baseline}": round(r["peak_mem_mb"] / b["peak_mem_mb"], 2)
                if b
                else None,
            }
        )
    return out


def run_cost_curve(args: argparse.Namespace) -> dict[str, Any]:
    """`bench cost`: the whole model's step time and memory per pattern as the sequence grows."""
    cfg = make_config("tiny", device="cpu")
    grids = QUICK_COST_GRIDS if args.quick else COST_GRIDS
    rows = relative_to(cost_curve(cfg, grids, repeats=1 if args.quick else 2))
    print(
        f"bench cost: tiny model (width {cfg.model.dim}, {cfg.model.enc_layers}+"
        f"{cfg.model.dec_layers} layers), S2V, batch 1, {torch.get_num_threads()} threads"
    )
    print(
        f"  {'N':>6} {'pattern':<7} {'paper':<17} {'keys/q':>7} {'s/step':>8} {'MB':>8} "
        f"{'t/nearby':>9}"
    )
    for r in rows:
        print(
            f"  {r['tokens']:>6} {r['pattern']:<7} {r['paper_complexity']:<17} "
            f"{r['paper_keys_per_query']:>7} {r['sec_per_step']:>8.3f} {r['peak_mem_mb']:>8.0f} "
            f"{r['time_vs_nearby']:>9}"
        )
    return {"preset": cfg.preset, "threads": torch.get_num_threads(), "rows": rows}


def cost_grids(cfg: Config, doublings: int = 3) -> list[tuple[int, int, int]]:
    """The preset's video grid, then the sequence doubled or quadrupled `doublings` times:
    (t, h, w), (t, 2h, 2w), (2t, 2h, 2w), (4t, 2h, 2w), ... (tiny: 256 ... 4,096 tokens)."""
    side = cfg.world.image_size // cfg.tokenizer.downsample
    grids = [(cfg.world.frames, side, side), (cfg.world.frames, 2 * side, 2 * side)]
    while len(grids) < doublings + 1:
        t, h, w = grids[-1]
        grids.append((2 * t, h, w))
    return grids[: doublings + 1]


def log_log_slope(rows: list[dict[str, Any]], pattern: str, key: str = "sec_per_step") -> float:
    """The least-squares slope of log(key) against log(tokens) for one pattern: ~2 for a cost
    that grows as N², ~1 for a linear one (fixed overheads pull it lower on small grids)."""
    points = [(math.log(r["tokens"]), math.log(r[key])) for r in rows if r["pattern"] == pattern]
    if len(points) < 2:
        raise ValueError(f"need two sizes of pattern {pattern!r} for a slope")
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
