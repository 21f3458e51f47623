"""`python -m nuwa_lab train --data PATH`: the tokenizer, then the pretrained NÜWA, on your folder.

    python -m nuwa_lab train --data data/digits --export-digits          # real handwriting, tiny
    python -m nuwa_lab train --data my_photos --preset smoke --set train.steps=20

PATH is a folder of captioned images and videos (`captions.jsonl`, see `nuwa_lab.world.folders`);
`--export-digits` first writes scikit-learn's handwritten digits there when it has no
captions.jsonl. The command sets `world.source = "folder:PATH"`, keeps the preset's task mix
to the tasks the folder has data for (T2I needs images, T2V and V2V videos), trains (or loads)
the tokenizer and the pretrained model with progress bars, and prints where the artifacts are and
how good they are: the tokenizer's reconstruction PSNR / SSIM on the folder's test images and the
model's validation NLL per task. Both artifacts are keyed by the folder's content hash, so a
changed folder trains again and an unchanged one loads.
"""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path
from typing import Any

from nuwa_lab.config import make_config
from nuwa_lab.recipes.cache import artifact_dir, get_or_train, load_meta
from nuwa_lab.recipes.pretrain import PRETRAIN_TASKS
from nuwa_lab.tokenizer.evaluate import folder_pixels, reconstruction_metrics
from nuwa_lab.world.digits import export_digits
from nuwa_lab.world.source import CAPTIONS, NEEDS, load_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="the data folder (with captions.jsonl)")
    parser.add_argument("--preset", default="tiny", help="config preset (default: tiny)")
    parser.add_argument(
        "--export-digits",
        action="store_true",
        help="first export scikit-learn's handwritten digits to --data if it has no captions.jsonl",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override, e.g. --set train.steps=200 (repeatable)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--retrain", action="store_true", help="train again, ignoring the cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def overrides(pairs: list[str]) -> dict[str, Any]:
    """{"train.steps": 200} from ["train.steps=200"]: values read as Python literals, else text."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set {pair!r}: write KEY=VALUE, e.g. --set train.steps=200")
        try:
            out[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key.strip()] = text
    return out


def export_if_asked(folder: Path, cfg_world, wanted: bool) -> None:
    """Export the digits to `folder` (sized for the preset) when asked and it has no captions."""
    if not wanted or (folder / CAPTIONS).is_file():
        return
    size, frames = max(32, cfg_world.image_size), max(4, cfg_world.frames)
    print(f"exporting scikit-learn's handwritten digits to {folder} ...", flush=True)
    start = time.perf_counter()
    export_digits(folder, split="all", size=size, frames=frames)
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def timed(kind: str, cfg, args) -> tuple[Any, str]:
    """The artifact `kind` (trained or loaded) and 'trained in 12 s' / 'loaded'."""
    trained_before = (artifact_dir(kind, cfg) / "meta.json").is_file() and not args.retrain
    module = get_or_train(kind, cfg, progress=not args.quiet, retrain=args.retrain)
    if trained_before:
        return module, "loaded from the cache"
    return module, f"trained in {load_meta(kind, cfg)['train_seconds']:.0f} s"


def run(args: argparse.Namespace) -> int:
    folder = Path(args.data).expanduser()
    settings = overrides(args.set)
    base = make_config(args.preset, **settings)
    export_if_asked(folder, base.world, args.export_digits)
    settings |= {"world.source": f"folder:{folder}", "device": args.device}
    cfg = make_config(args.preset, **settings)
    try:
        source = load_folder(cfg.world, cfg.text)
    except (FileNotFoundError, ValueError) as e:  # a missing or malformed folder: say what is wrong
        raise SystemExit(f"error: {e}") from None
    print(f"data: {source.summary()}")
    mix = tuple((t, r) for t, r in cfg.train.task_mix if source.count(NEEDS[t][0], "train"))
    if not mix:
        raise SystemExit(
            f"{folder}: no train images or videos for any task of train.task_mix "
            f"({', '.join(t for t, _ in cfg.train.task_mix)})"
        )
    if mix != cfg.train.task_mix:  # e.g. a folder without videos: T2I only
        left = sorted({t for t, _ in cfg.train.task_mix} - {t for t, _ in mix})
        cfg = make_config(args.preset, **{**settings, "train.task_mix": mix})
        print(f"task mix: {'+'.join(t for t, _ in mix)} ({', '.join(left)} left out: no data)")

    kind = cfg.tokenizer.kind
    vq, how = timed(kind, cfg, args)
    print(f"tokenizer ({kind}): {artifact_dir(kind, cfg)} ({how})")
    pixels = folder_pixels(source, "test", cfg.tokenizer.eval_samples)
    scores, _ = reconstruction_metrics(vq, pixels, lpips=False)
    print(
        f"  reconstruction of {len(pixels):,} test images: PSNR {scores['psnr_db']:.2f} dB, "
        f"SSIM {scores['ssim']:.3f}, codebook usage {100 * scores['codebook_usage']:.0f}%"
    )

    _, how = timed("nuwa", cfg, args)
    print(f"model (nuwa, {'+'.join(t for t, _ in mix)}): {artifact_dir('nuwa', cfg)} ({how})")
    metrics = load_meta("nuwa", cfg)["metrics"]
    nll = [
        f"{t} {metrics[f'val_nll_{t}']:.3f}" for t in PRETRAIN_TASKS if f"val_nll_{t}" in metrics
    ]
    print(f"  validation NLL per task (nats per token, val split): {', '.join(nll)}")
    return 0
