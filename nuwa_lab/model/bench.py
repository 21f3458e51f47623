"""`python -m nuwa_lab bench model [--json OUT] [--quick]`: NÜWA training and sampling speed.

Three ratios, each measured within this one process (at the tiny preset; `--quick`: smoke):

| ratio | target | how |
|---|---|---|
| model FLOP/s / fp32 matmul FLOP/s | >= 0.6 | training steps (fwd, bwd, AdamW), pretraining mix |
| uncached / KV-cached sampling time | >= 5 | one tiny video batch, text condition, same seed |
| token time, last tenth / first | <= 1.5 | cached decoding, nearby; median step time per tenth |

Model FLOPs are `nuwa_lab.model.counting.forward_flops` x 3 (matmuls only; attention counted by the
pairs the pattern needs), so the ratio is a model-FLOP utilisation: work the implementation spends
beyond that (softmax, norms, the optimizer, padding of local-attention tiles) lowers it. The data
are random codes: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from nuwa_lab.config import make_config
from nuwa_lab.model.condition import Condition
from nuwa_lab.model.counting import forward_flops
from nuwa_lab.model.nuwa import Nuwa, model_sizes


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
    cfg, sizes: dict, g: torch.Generator
) -> dict[str, tuple[Condition, torch.Tensor]]:
    from nuwa_lab.pretrain import task_counts

    t, h, w = sizes["max_grid"]
    k, vocab, length = sizes["codebook_size"], sizes["text_vocab"], sizes["text_length"]
    out = {}
    for task, n in task_counts(cfg.train.task_mix, cfg.train.batch_size).items():
        shape = (n, h, w) if task == "t2i" else (n, t, h, w)
        target = torch.randint(0, k, shape, generator=g)
        text = Condition.text(torch.randint(5, vocab, (n, length), generator=g))
        out[task] = (Condition.none(n) if task == "v2v" else text, target)
    return out


def training_throughput(cfg, *, steps: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Median seconds per training step of the pretraining mixture, and its model FLOP/s."""
    from nuwa_lab.train import make_adamw

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
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = sum(model(cond, target)[1] for cond, target in batches.values())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    sec = statistics.median(times)
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


def sampling_speed(cfg, *, batch: int = 4) -> dict[str, Any]:
    """Cached vs uncached sampling of one video batch, and the per-token time profile (nearby)."""
    from nuwa_lab.sample import sample

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
    from nuwa_lab.sample import _one_cpu_thread

    with _one_cpu_thread():  # as `sample` decodes with the cache
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
