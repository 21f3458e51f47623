r"""NÜWA training and sampling speed: `python -m nuwa_lab bench model` and `bench step`.

`bench model [--json OUT] [--quick]`: three ratios, each measured within this one process (at the
tiny preset; `--quick`: smoke):

| ratio | target | how |
|---|---|---|
| model FLOP/s / fp32 matmul FLOP/s | >= 0.6 | training steps (fwd, bwd, AdamW), pretraining mix |
| uncached / KV-cached sampling time | >= 5 | one tiny video batch, text condition, same seed |
| token time, last tenth / first | <= 1.5 | cached decoding, nearby; median step time per tenth |

Model FLOPs are `nuwa_lab.model.counting.forward_flops` x 3 (matmuls only; attention counted by the
pairs the pattern needs), so the ratio is a model-FLOP utilisation: work the implementation spends
beyond that (softmax, norms, the optimizer, padding of local-attention tiles) lowers it. The data
are random codes: speed does not depend on their values.

`bench step [--json OUT] [--quick]`: where that training step's time goes. The utilisation is

$$ U = \frac{F_{model} / t_{step}}{R_{1024}} $$

(model FLOPs per step over the step time, against the fp32 rate $R_{1024}$ of a 1024³ matmul in
the same process). The same steps run under `torch.profiler`, and the operators' own CPU time is
split into groups:

| group | operators |
|---|---|
| matmul | `aten::mm`, `addmm`, `bmm`, `baddbmm`: the projections, the MLP, the logits |
| attention | the `scaled_dot_product_attention` kernels, forward and backward |
| other kernels | every other `aten::` kernel: GELU, LayerNorm, adds, copies, fills, softmax |
| optimizer | AdamW's fused update and its step |
| framework | autograd nodes and tensor views (bookkeeping, no arithmetic) |

The matmuls' FLOPs come from `torch.utils.flop_counter` over one step, so their time gives the
rate they run at in place, $R_{mm} = F_{mm} / t_{mm}$ (their operands come from memory, not from
cache, unlike the 1024³ reference). That bounds the utilisation even if every other operator took
no time at all:

$$ U \le U_{max} = \frac{F_{model}}{t_{mm} \, R_{1024}} $$

The group times are those of the profiled steps (the profiler adds a little to every operator);
the unprofiled step, measured in the same run, is printed beside them.
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
from nuwa_lab.lab.bench.attention import native_stderr_silenced, peak_memory_mb
from nuwa_lab.model.condition import Condition
from nuwa_lab.model.counting import forward_flops
from nuwa_lab.model.nuwa import Nuwa, model_sizes
from nuwa_lab.model.sample import one_cpu_thread, sample
from nuwa_lab.recipes.ablation import ablation_config
from nuwa_lab.recipes.pretrain import task_counts
from nuwa_lab.train.loop import make_adamw


def matmul_rate(n: int = 1024, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of an (n x n) @ (n x n) matmul on the CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _task_batches(
    cfg: Config, sizes: dict, g: torch.Generator
) -> dict[str, tuple[Condition, torch.Tensor]]:

    t, h, w = sizes["max_grid"]
    k, vocab, length = sizes["codebook_size"], sizes["text_vocab"], sizes["text_length"]
    out = {}
    for task, n in task_counts(cfg.train.task_mix, cfg.train.batch_size).items():
        shape = (n, h, w) if task == "t2i" else (n, t, h, w)
        target = torch.randint(0, k, shape, generator=g)
        text = Condition.text(torch.randint(5, vocab, (n, length), generator=g))
        out[task] = (Condition.none(n) if task == "v2v" else text, target)
    return out


def _mixture_step(cfg: Config):
    """A fresh model, its AdamW and one batch of the pretraining mixture.

    Returns (step, model FLOPs per step): `step()` runs forward, backward and the optimizer once.
    """

    sizes = model_sizes(cfg)
    torch.manual_seed(0)
    model = Nuwa(cfg.model, **sizes).train()
    opt = make_adamw(model, cfg.train)
    batches = _task_batches(cfg, sizes, torch.Generator().manual_seed(0))
    flops = 3 * sum(
        forward_flops(
            cfg.model,
            condition_kind=cond.kind,
            condition_grid=cond.grid,
            target_grid=model_grid(target),
            codebook_size=sizes["codebook_size"],
            batch=target.shape[0],
        )
        for cond, target in batches.values()
    )

    def step() -> None:
        loss = sum(model(cond, target)[1] for cond, target in batches.values())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, flops


def _median_seconds(fn, *, steps: int, warmup: int) -> float:
    """Median wall time of `steps` calls of fn() after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_throughput(cfg: Config, *, steps: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Median seconds per training step of the pretraining mixture, and its model FLOP/s."""
    step, flops = _mixture_step(cfg)
    sec = _median_seconds(step, steps=steps, warmup=warmup)
    return {"sec_per_step": sec, "train_flops_per_step": flops, "model_flops_per_sec": flops / sec}


def model_grid(target: torch.Tensor) -> tuple[int, int, int]:
    shape = tuple(target.shape[1:])
    return (1, *shape) if len(shape) == 2 else shape


@torch.no_grad()
def per_token_times(model: Nuwa, condition: Condition, grid) -> list[float]:
    """Seconds of each cached decoding step (teacher-forced zeros: the cost is the same).

    A short warm-up decode first, so that one-off costs (allocator, thread pool) do not land on
    the first tenth.
    """
    n = grid[0] * grid[1] * grid[2]
    inputs = torch.zeros(condition.batch, 1, dtype=torch.long)
    warm = model.start(condition, grid)
    for i in range(min(n, 8)):
        model.step(warm, inputs, torch.tensor([i]))
    state = model.start(condition, grid)
    times = []
    for i in range(n):
        start = time.perf_counter()
        model.step(state, inputs, torch.tensor([i]))
        times.append(time.perf_counter() - start)
    return times


def sampling_speed(cfg: Config, *, batch: int = 4) -> dict[str, Any]:
    """Cached vs uncached sampling of one video batch, and the per-token time profile (nearby)."""

    sizes = model_sizes(cfg)
    grid = sizes["max_grid"]
    torch.manual_seed(0)
    model = Nuwa(cfg.model, **sizes).eval()
    g = torch.Generator().manual_seed(0)
    cond = Condition.text(
        torch.randint(5, sizes["text_vocab"], (batch, sizes["text_length"]), generator=g)
    )
    start = time.perf_counter()
    cached = sample(model, cond, grid, generator=1)
    cached_s = time.perf_counter() - start
    start = time.perf_counter()
    uncached = sample(model, cond, grid, generator=1, use_cache=False)
    uncached_s = time.perf_counter() - start

    nearby_cfg = cfg.model if cfg.model.attention == "nearby" else None
    if nearby_cfg is None:
        import dataclasses

        nearby_cfg = dataclasses.replace(cfg.model, attention="nearby")
    torch.manual_seed(0)
    nearby = Nuwa(nearby_cfg, **sizes).eval()

    with one_cpu_thread():  # as `sample` decodes with the cache
        times = per_token_times(nearby, cond, grid)
    tenth = max(1, len(times) // 10)
    first, last = statistics.median(times[:tenth]), statistics.median(times[-tenth:])
    return {
        "grid": list(grid),
        "batch": batch,
        "cached_s": cached_s,
        "uncached_s": uncached_s,
        "cache_speedup": uncached_s / cached_s,
        "same_tokens": bool(torch.equal(cached, uncached)),
        "token_ms_first_tenth": first * 1000,
        "token_ms_last_tenth": last * 1000,
        "last_over_first": last / first,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = make_config("smoke" if args.quick else "tiny", device="cpu")
    rate_before = matmul_rate()
    train = training_throughput(cfg, steps=2 if args.quick else 5)
    rate = max(rate_before, matmul_rate())
    sampling = sampling_speed(cfg, batch=2 if args.quick else 4)
    results = {
        "preset": cfg.preset,
        "threads": torch.get_num_threads(),
        "attention": cfg.model.attention,
        "matmul_gflops": rate / 1e9,
        **{k: v for k, v in train.items()},
        "model_gflops": train["model_flops_per_sec"] / 1e9,
        "train_utilisation": train["model_flops_per_sec"] / rate,
        **sampling,
    }
    rows = [
        ("fp32 matmul rate", f"{rate / 1e9:.1f} GFLOP/s", ""),
        ("training step (mixture)", f"{train['sec_per_step']:.3f} s", ""),
        ("model FLOP/s", f"{results['model_gflops']:.1f} GFLOP/s", ""),
        ("  / matmul rate", f"{results['train_utilisation']:.2f}", ">= 0.60"),
        ("sampling, KV cache", f"{sampling['cached_s']:.2f} s", ""),
        ("sampling, no cache", f"{sampling['uncached_s']:.2f} s", ""),
        ("  speed-up", f"{sampling['cache_speedup']:.1f}x", ">= 5"),
        ("  identical tokens", str(sampling["same_tokens"]), "True"),
        ("per token, first tenth", f"{sampling['token_ms_first_tenth']:.2f} ms", ""),
        ("per token, last tenth", f"{sampling['token_ms_last_tenth']:.2f} ms", ""),
        ("  last / first", f"{sampling['last_over_first']:.2f}", "<= 1.5"),
    ]
    print(f"bench model: preset {cfg.preset}, {results['threads']} threads, {cfg.model.attention}")
    for name, value, target in rows:
        print(f"  {name:<26} {value:>16}   {target}")
    return results


GROUPS = ("matmul", "attention", "other kernels", "optimizer", "framework")
MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"})
# operators that only make views or empty tensors: no arithmetic, bookkeeping time
VIEW_OPS = frozenset(
    "aten::" + name
    for name in (
        "view as_strided transpose t reshape permute slice select expand unsqueeze squeeze "
        "_unsafe_view empty empty_strided empty_like detach alias split chunk unbind narrow "
        "contiguous matmul linear result_type resolve_conj resolve_neg _reshape_alias"
    ).split()
)
TARGET_UTILISATION = 0.60  # a goal for U at the tiny preset (docs/performance.md)


def op_group(name: str) -> str:
    """The group (one of `GROUPS`) of a profiler event name."""
    if name in MATMUL_OPS:
        return "matmul"
    if "scaled_dot_product" in name or "flash_attention" in name:
        return "attention"
    if "adam" in name.lower() or name.startswith("Optimizer."):
        return "optimizer"
    if name.startswith("aten::") and name not in VIEW_OPS:
        return "other kernels"
    return "framework"


def utilisation_bounds(
    *, model_flops: float, step_s: float, matmul_s: float, rate: float, target: float
) -> dict[str, float]:
    """U now, its ceiling U_max (only the matmuls left, at their in-place rate), and the step
    time the target needs, with what that leaves for everything but the matmuls."""
    needed_s = model_flops / (target * rate)
    return {
        "utilisation": model_flops / step_s / rate,
        "utilisation_max": model_flops / matmul_s / rate,
        "step_needed_s": needed_s,
        "non_matmul_budget_s": needed_s - matmul_s,
    }


def profile_training_step(cfg: Config, *, steps: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Median unprofiled step time, the profiled group times per step and the matmul FLOPs."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    step, model_flops = _mixture_step(cfg)
    step_s = _median_seconds(step, steps=steps, warmup=warmup)

    with FlopCounterMode(display=False) as counter:
        step()
    matmul_flops = sum(
        n
        for op, n in counter.get_flop_counts()["Global"].items()
        if f"aten::{op.__name__}" in MATMUL_OPS  # op: an OpOverloadPacket such as aten.mm
    )

    prof = profile(activities=[ProfilerActivity.CPU])
    with native_stderr_silenced():  # the profiler's C++ logs "USDT: profiler_start" lines
        prof.start()
    try:
        for _ in range(steps):
            step()
    finally:
        with native_stderr_silenced():
            prof.stop()
    own_us: dict[str, float] = dict.fromkeys(GROUPS, 0.0)
    kernels: dict[str, float] = {}
    for event in prof.key_averages():
        group = op_group(event.key)
        own_us[group] += event.self_cpu_time_total
        if group == "other kernels":
            kernels[event.key] = event.self_cpu_time_total
    group_s = {g: us / 1e6 / steps for g, us in own_us.items()}
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:5]
    return {
        "step_s": step_s,
        "profiled_step_s": sum(group_s.values()),
        "model_flops": model_flops,
        "matmul_flops": matmul_flops,
        "group_s": group_s,
        "top_other_kernels_s": {name: us / 1e6 / steps for name, us in top},
    }


def run_step_profile(args: argparse.Namespace) -> dict[str, Any]:
    """`bench step`: the training step's time by operator group, and what it bounds."""
    cfg = make_config("smoke" if args.quick else "tiny", device="cpu")
    rate_before = matmul_rate()
    prof = profile_training_step(cfg, steps=2 if args.quick else 5, warmup=1 if args.quick else 2)
    rate = max(rate_before, matmul_rate())
    matmul_s = prof["group_s"]["matmul"]
    bounds = utilisation_bounds(
        model_flops=prof["model_flops"],
        step_s=prof["step_s"],
        matmul_s=matmul_s,
        rate=rate,
        target=TARGET_UTILISATION,
    )
    inplace = prof["matmul_flops"] / matmul_s
    results = {
        "preset": cfg.preset,
        "threads": torch.get_num_threads(),
        "attention": cfg.model.attention,
        "matmul_gflops": rate / 1e9,
        "matmul_inplace_gflops": inplace / 1e9,
        "matmul_inplace_over_rate": inplace / rate,
        **prof,
        **bounds,
    }

    print(
        f"bench step: preset {cfg.preset}, {results['threads']} threads, {cfg.model.attention}; "
        f"a training step of the pretraining mixture, profiled"
    )
    print(
        f"  step {prof['step_s'] * 1000:.0f} ms unprofiled ({prof['profiled_step_s'] * 1000:.0f}"
        f" ms under the profiler), fp32 1024^3 matmul {rate / 1e9:.0f} GFLOP/s"
    )
    print(f"  {'group':<16} {'ms / step':>10} {'share':>7}")
    for group, seconds in prof["group_s"].items():
        print(f"  {group:<16} {seconds * 1000:>10.1f} {seconds / prof['profiled_step_s']:>7.0%}")
    print(
        "  the largest other kernels: "
        + ", ".join(
            f"{name.removeprefix('aten::')} {s * 1000:.1f} ms"
            for name, s in prof["top_other_kernels_s"].items()
        )
    )
    print(
        f"  matmuls: {prof['matmul_flops'] / 1e9:.2f} GFLOP in {matmul_s * 1000:.1f} ms = "
        f"{inplace / 1e9:.0f} GFLOP/s in place ({results['matmul_inplace_over_rate']:.2f} of the "
        f"1024^3 rate)"
    )
    print(f"  utilisation U now                               {bounds['utilisation']:.2f}")
    print(f"  U_max, if only the matmuls took time            {bounds['utilisation_max']:.2f}")
    print(
        f"  for U = {TARGET_UTILISATION:.2f}: a step of {bounds['step_needed_s'] * 1000:.0f} ms,"
        f" leaving {bounds['non_matmul_budget_s'] * 1000:.0f} ms for all but the matmuls"
        f" (now {(prof['profiled_step_s'] - matmul_s) * 1000:.0f} ms)"
    )
    return results


# ---------------------------------------------------------------- the attention ablation's costs


def random_s2v(cfg: Config, batch: int, g: torch.Generator) -> tuple[Condition, torch.Tensor]:
    sizes = model_sizes(cfg, text_vocab=8)
    grid = sizes["max_grid"]
    sketch = torch.randint(0, sizes["sketch_codebook_size"], (batch, *grid), generator=g)
    target = torch.randint(0, sizes["codebook_size"], (batch, *grid), generator=g)
    return Condition.video_sketch(sketch), target


def step_cost(model: Nuwa, condition: Condition, target: torch.Tensor, *, repeats: int = 3):
    """Median seconds and peak tensor MB of one training step (forward, backward, AdamW)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        _, loss = model(condition, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up (and the optimizer's state)
    mb, _ = peak_memory_mb(step)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"sec_per_step": statistics.median(times), "peak_mem_mb": mb}


def pattern_costs(
    cfg: Config, patterns=PATTERNS, *, batch: int | None = None, repeats: int = 3
) -> list[dict[str, Any]]:
    """Per pattern: decoder keys per query (causal mean), model GFLOP per training step, and the
    measured time and peak tensor memory of one S2V training step of an untrained model."""
    batch = batch or cfg.tasks.finetune_batch_size
    rows = []
    for pattern in patterns:
        arm = ablation_config(cfg, pattern)
        sizes = model_sizes(arm, text_vocab=8)
        torch.manual_seed(0)
        model = Nuwa(arm.model, **sizes)
        condition, target = random_s2v(arm, batch, torch.Generator().manual_seed(0))
        grid = sizes["max_grid"]
        keys = int(model.decoder_spec().mask(grid, grid).sum()) / (grid[0] * grid[1] * grid[2])
        flops = 3 * forward_flops(
            arm.model,
            condition_kind="video_sketch",
            condition_grid=grid,
            target_grid=grid,
            codebook_size=sizes["codebook_size"],
            batch=batch,
        )
        rows.append(
            {
                "pattern": pattern,
                "keys_per_query": round(keys, 1),
                "gflop_per_step": round(flops / 1e9, 2),
                **step_cost(model, condition, target, repeats=repeats),
            }
        )
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
        flops = 3 * forward_flops(
            arm.model,
            condition_kind="video_sketch",
            condition_grid=grid,
            target_grid=grid,
            codebook_size=sizes["codebook_size"],
            batch=batch,
        )
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
