"""`python -m nuwa_lab probe`: train (or load) the probes and print how well they read the world.

    python -m nuwa_lab probe --preset tiny               # all three: probe, video_probe, segmenter
    python -m nuwa_lab probe --preset tiny --kind probe --retrain

For each probe: accuracy per attribute (and "all") on clean test samples, on held-out-pair samples,
and on uniform noise (which should sit near chance, printed beside it); for the segmenter: pixel and
foreground pixel accuracy. Also says which LPIPS backbone and which FID network the lab would use.
"""

from __future__ import annotations

import argparse
import time

from nuwa_lab.config import make_config
from nuwa_lab.metrics.frechet import inception_backbone
from nuwa_lab.metrics.perceptual import lpips_backbone
from nuwa_lab.recipes.cache import get_or_train, load_meta
from nuwa_lab.recipes.probes import evaluate

KINDS = ("probe", "video_probe", "segmenter")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="config preset (default: tiny)")
    parser.add_argument(
        "--kind", choices=[*KINDS, "all"], default="all", help="which probe (default: all)"
    )
    parser.add_argument("--n", type=int, default=None, help="samples scored (cfg.probe.eval_size)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--retrain", action="store_true", help="train again, ignoring the cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def format_table(kind: str, scores: dict[str, float]) -> str:
    """A text table: one row per attribute, one column per split (accuracy in %)."""
    splits = [
        s
        for s in ("test", "held_out", "noise", "chance")
        if any(k.startswith(s + "/") for k in scores)
    ]
    rows = sorted({k.split("/", 1)[1] for k in scores}, key=_row_order)
    names = {
        "test": "clean test",
        "held_out": "held-out pairs",
        "noise": "noise",
        "chance": "chance",
    }
    lines = [f"{kind}", f"  {'':<20}" + "".join(f"{names[s]:>16}" for s in splits)]
    for row in rows:
        cells = [scores.get(f"{s}/{row}") for s in splits]
        lines.append(
            f"  {row:<20}"
            + "".join(f"{100 * v:>15.2f}%" if v is not None else f"{'':>16}" for v in cells)
        )
    return "\n".join(lines)


def _row_order(name: str) -> tuple[int, str]:
    order = ["shape", "colour", "size", "position", "direction", "all"]
    return (order.index(name) if name in order else len(order), name)


def run(args: argparse.Namespace) -> int:

    cfg = make_config(args.preset, device=args.device)
    kinds = KINDS if args.kind == "all" else (args.kind,)
    for kind in kinds:
        start = time.perf_counter()
        model = get_or_train(kind, cfg, progress=not args.quiet, retrain=args.retrain)
        loaded = time.perf_counter() - start
        meta = load_meta(kind, cfg)
        scores = evaluate(kind, model, cfg, n=args.n)
        n = args.n or cfg.probe.eval_size
        print(format_table(kind, scores))
        print(
            f"  scored on {n} samples per split; trained in {meta['train_seconds']:.0f} s "
            f"({meta['metrics'].get('sec_per_step', float('nan')):.3f} s/step); this call took "
            f"{loaded:.1f} s to {'train' if loaded > 0.5 * meta['train_seconds'] else 'load'}"
        )
        print()
    print(f"LPIPS backbone: {lpips_backbone()}")
    print(f"FID network:    {inception_backbone()}")
    return 0
