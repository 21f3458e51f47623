r"""NÜWA training and sampling speed: `python -m nuwa_lab bench model` and `bench step`.

`bench model [--json OUT] [--quick]`: three ratios, each measured within this one process (at the
tiny preset; `--quick`: smoke):

| ratio | target | how |
|---|---|---|
| model FLOP/s / fp32 matmul FLOP/s | (shown) | training steps (fwd, bwd, AdamW), pretraining mix |
| uncached / KV-cached sampling time | >= 5 | one tiny video batch, text condition, same seed |
| token time, last tenth / first | <= 1.5 | cached decoding, nearby; median step time per tenth |

Model FLOPs are `nuwa_lab.model.counting.forward_flops` x 3 (matmuls only; attention counted by the
pairs the pattern needs), so the ratio is a model-FLOP utilisation: work the implementation spends
beyond that (softmax, norms, the optimizer, padding of local-attention tiles) lowers it. It has no
goal: the 1024³ rate is out of reach of the tiny model's own matmuls (`bench step` measures the
step against those instead). The data are random codes: speed does not depend on their values.

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
cache, unlike the 1024³ reference). The goal is measured against that in-place work: a step should
take at most `STEP_OVER_MATMULS_GOAL` (1.3) times its own matmuls,

$$ \frac{t_{step}}{t_{mm}} \le 1.3 \quad\Longleftrightarrow\quad \frac{t_{mm}}{t_{step}} \ge 0.77 $$

so everything but the matmuls (attention kernels, GELU, LayerNorm, copies, autograd) has to fit in
$0.3\, t_{mm}$. The model-FLOP utilisation $U$ and its ceiling $U_{max}$ (only the matmuls left,
at their in-place rate) are printed beside it:

$$ U \le U_{max} = \frac{F_{model}}{t_{mm} \, R_{1024}} $$

$t_{step}$ and $t_{mm}$ come from the same profiled steps (the sum of their groups' times, and
the matmul group's): one measurement, so a host that speeds up or slows down between two timings
cannot move the ratio. The profiler adds a little to every operator, which makes the ratio
slightly pessimistic. The unprofiled step, timed apart in the same run, gives $U$ and is printed
beside them; dividing it by the profiled matmul time mixed two timings and read 1.22 to 1.89 in
three runs on one host, where the profiled ratio read 1.62 to 1.65.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from nuwa_lab.config import Config, make_config
from nuwa_lab.lab.bench.attention import native_stderr_silenced
from nuwa_lab.model.condition import Condition
from nuwa_lab.model.counting import forward_flops
from nuwa_lab.model.nuwa import Nuwa, model_sizes
from nuwa_lab.model.sample import one_cpu_thread, sample
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
        ("  / matmul rate", f"{results['train_utilisation']:.2f}", ""),
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
STEP_OVER_MATMULS_GOAL = 1.3  # a tiny step's time over its own matmuls' (docs/performance.md)


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


def step_bounds(
    *,
    model_flops: float,
    step_s: float,
    profiled_step_s: float,
    matmul_s: float,
    rate: float,
    goal: float,
) -> dict[str, float]:
    """The profiled step against its own matmuls (t_step / t_mm, both from the profiled steps, and
    the time `goal` leaves for all but the matmuls), and the model-FLOP utilisation U of the
    unprofiled step with its ceiling U_max (only the matmuls left, at their in-place rate)
    against the 1024³ rate."""
    return {
        "step_over_matmuls": profiled_step_s / matmul_s,
        "non_matmul_s": profiled_step_s - matmul_s,
        "non_matmul_budget_s": (goal - 1) * matmul_s,
        "utilisation": model_flops / step_s / rate,
        "utilisation_max": model_flops / matmul_s / rate,
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
    bounds = step_bounds(
        model_flops=prof["model_flops"],
        step_s=prof["step_s"],
        profiled_step_s=prof["profiled_step_s"],
        matmul_s=matmul_s,
        rate=rate,
        goal=STEP_OVER_MATMULS_GOAL,
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
    goal = STEP_OVER_MATMULS_GOAL
    print(
        f"  profiled step / its own matmuls           {bounds['step_over_matmuls']:.2f}"
        f"   (goal <= {goal}: all but the matmuls in {bounds['non_matmul_budget_s'] * 1000:.0f}"
        f" ms, now {bounds['non_matmul_s'] * 1000:.0f} ms)"
    )
    print(f"  utilisation U (model FLOP/s / 1024^3 rate)  {bounds['utilisation']:.2f}")
    print(f"  U_max, if only the matmuls took time        {bounds['utilisation_max']:.2f}")
    return results
