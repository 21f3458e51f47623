"""`python -m nuwa_lab recipe WHAT`: train one recipe, or all of them, on one process or on many.

    python -m nuwa_lab recipe vqgan --preset tiny             # an artifact, through the cache
    python -m nuwa_lab recipe nuwa_finetuned_s2i --preset base
    python -m nuwa_lab recipe pipeline --preset base --max-steps 2 --max-batch 2   # every stage
    python -m nuwa_lab recipe ablation --attention nearby --out runs/nearby   # notebook 04's arm
    python -m nuwa_lab recipe mixture --mix t2v --budget time:t2v+t2i+v2v      # notebook 05's
    torchrun --standalone --nproc-per-node 2 -m nuwa_lab recipe nuwa --preset tiny

| WHAT | trains | into |
|---|---|---|
| an artifact kind (`vqgan`, `nuwa`, `nuwa_finetuned_<task>`, ...) | it and its inputs | the cache |
| `pipeline` | every artifact `--tasks` need, in order; samples and measures each task | the cache |
| `ablation` | notebook 04's S2V model, from scratch, `--attention` everywhere | `--out` |
| `mixture` | notebook 05's pretraining of `--mix` under `--budget` | the cache |

The cache is `data/artifacts` (or `$NUWA_LAB_ARTIFACTS`); `--out` gets `model.pt`,
`metrics.json` and `train/` (checkpoints: the same command resumes).

`--max-steps N` caps every stage at N steps and its pools and evaluation sets at a few items
(`nuwa_lab.recipes.pipeline.short_config`; `--max-batch B` also caps every batch size): a preset's
whole pipeline checked for config and shape errors in minutes. Those artifacts have their own
hashes, so they never stand in for fully trained ones.

Under torchrun every process runs the same command: they train each model together (data
parallel; gloo between CPU processes, NCCL between GPUs), rank 0 alone writes checkpoints and
artifacts and prints. Batch sizes must divide by the number of processes. See docs/gpu.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from nuwa_lab.config import Config, make_config
from nuwa_lab.device import resolve_device
from nuwa_lab.lab.bench.costs import pattern_costs
from nuwa_lab.lab.train_cli import add_overrides, overrides
from nuwa_lab.model.nuwa import PATTERNS
from nuwa_lab.recipes import registered_kinds
from nuwa_lab.recipes.ablation import ablation_config, equal_time_steps, train_from_scratch
from nuwa_lab.recipes.cache import artifact_dir, get_or_train, load_meta
from nuwa_lab.recipes.mixture_budget import budget_steps
from nuwa_lab.recipes.pipeline import ITEMS, run_pipeline, short_config
from nuwa_lab.recipes.pretrain import parse_task_mix
from nuwa_lab.tasks.spec import TASK_SPECS
from nuwa_lab.train.distributed import agree, group
from nuwa_lab.train.files import atomic_torch_save, atomic_write_json

RECIPES = ("pipeline", "ablation", "mixture")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        metavar="WHAT",
        help=f"an artifact kind (e.g. vqgan, nuwa, nuwa_finetuned_t2i) or {', '.join(RECIPES)}",
    )
    parser.add_argument("--preset", default="tiny", help="config preset (default: tiny)")
    add_overrides(parser)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--seed", type=int, default=None, help="cfg.seed (default: the preset's)")
    short = parser.add_argument_group("a short run (every stage a few steps)")
    short.add_argument("--max-steps", type=int, default=None, help="cap every stage's steps")
    short.add_argument("--max-batch", type=int, default=None, help="cap every batch size too")
    short.add_argument(
        "--items", type=int, default=ITEMS, help=f"pool and evaluation sizes (default {ITEMS})"
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASK_SPECS), help="pipeline: tasks")
    parser.add_argument("--no-sample", action="store_true", help="pipeline: train only")
    parser.add_argument("--attention", choices=PATTERNS, default="nearby", help="ablation")
    parser.add_argument("--steps", type=int, default=0, help="ablation / mixture: 0 = preset's")
    parser.add_argument("--batch", type=int, default=0, help="ablation: 0 = preset's")
    parser.add_argument("--downsample", type=int, default=0, help="ablation: 0 = preset's")
    parser.add_argument(
        "--budget",
        default="steps",
        help="ablation: steps | time; mixture: steps | t2v_examples:<mix> | time:<mix>",
    )
    parser.add_argument("--mix", default="t2v+t2i+v2v", help="mixture: the tasks, e.g. t2v+t2i")
    parser.add_argument("--out", default=None, help="ablation: the output folder")
    parser.add_argument("--retrain", action="store_true", help="train again, ignoring the cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def config_of(args: argparse.Namespace, **extra: Any) -> Config:
    """The preset with --set, --device, --seed and `extra` overrides, short when --max-steps."""
    settings = {**overrides(args.set), "device": args.device, **extra}
    if args.seed is not None:
        settings["seed"] = args.seed
    return make_config(args.preset, **settings)


def shortened(cfg: Config, args: argparse.Namespace) -> Config:
    if args.max_steps is None:
        return cfg
    return short_config(cfg, args.max_steps, batch=args.max_batch, items=args.items)


def ablation(args: argparse.Namespace, echo) -> None:
    """Notebook 04's arm: S2V from scratch; weights and metrics to --out (rank 0 writes)."""
    if args.out is None:
        raise SystemExit("recipe ablation needs --out DIR (its weights, metrics and checkpoints)")
    if args.budget not in ("steps", "time"):
        raise SystemExit(f"ablation --budget {args.budget!r}: steps or time")
    out = Path(args.out)
    base = shortened(config_of(args), args)
    sizes = dict(batch=args.batch, downsample=args.downsample)
    cfg = shortened(ablation_config(base, args.attention, steps=args.steps, **sizes), args)
    if args.budget == "time":  # full attention's time for these steps, measured by rank 0
        device = resolve_device(cfg.device)
        costs = pattern_costs(cfg) if group(device).is_main else []
        seconds = agree({r["pattern"]: r["sec_per_step"] for r in costs}, device)
        steps = equal_time_steps(seconds, args.attention, cfg.tasks.finetune_steps)
        cfg = shortened(ablation_config(base, args.attention, steps=steps, **sizes), args)
    model, metrics = train_from_scratch(cfg, workdir=out / "train", progress=not args.quiet)
    atomic_torch_save(out / "model.pt", model.state_dict(), sha256=True)
    metrics = {"attention": args.attention, "budget": args.budget, **metrics}
    atomic_write_json(out / "metrics.json", metrics, sha256=True)
    echo(
        f"ablation ({args.attention}): {metrics['steps']} steps, validation loss "
        f"{metrics['val_loss_pretrained']:.3f} -> {metrics['val_loss_finetuned']:.3f}; {out}"
    )


def mixture(args: argparse.Namespace, echo) -> None:
    """Notebook 05's arm: the "nuwa" artifact of --mix with the steps of --budget."""
    mix = {"train.task_mix": parse_task_mix(args.mix)}
    cfg = shortened(config_of(args, **mix), args)
    steps = budget_steps(cfg, args.mix, args.budget, args.steps or cfg.train.steps)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))
    cfg = shortened(cfg, args)
    artifact(args, cfg, "nuwa", echo)


def artifact(args: argparse.Namespace, cfg: Config, kind: str, echo) -> None:
    start = time.perf_counter()
    get_or_train(kind, cfg, progress=not args.quiet, retrain=args.retrain)
    metrics = load_meta(kind, cfg).get("metrics", {})
    shown = [f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))][:6]
    echo(f"{kind}: {artifact_dir(kind, cfg)} ({time.perf_counter() - start:.0f} s)")
    if shown:
        echo(f"  {', '.join(shown)}")


def run(args: argparse.Namespace) -> int:
    main = group(resolve_device(args.device)).is_main  # joins torchrun's processes, if any
    args.quiet = args.quiet or not main

    def echo(line: str) -> None:
        if main:
            print(line, flush=True)

    if args.what == "ablation":
        ablation(args, echo)
    elif args.what == "mixture":
        mixture(args, echo)
    elif args.what == "pipeline":
        cfg = shortened(config_of(args), args)
        run_pipeline(
            cfg, args.tasks, sample=not args.no_sample, progress=not args.quiet,
            retrain=args.retrain, echo=echo,
        )  # fmt: skip
    elif args.what in registered_kinds():
        artifact(args, shortened(config_of(args), args), args.what, echo)
    else:
        raise SystemExit(
            f"recipe {args.what!r}: not a recipe; choose {', '.join(RECIPES)} or an artifact "
            f"kind: {', '.join(registered_kinds())}"
        )
    return 0
