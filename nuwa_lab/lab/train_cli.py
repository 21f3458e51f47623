"""`python -m nuwa_lab train --data PATH`: the tokenizer, then the pretrained NÜWA, on your folder.

    python -m nuwa_lab train --data data/digits --export-digits          # real handwriting, tiny
    python -m nuwa_lab train --data my_photos --preset smoke --set train.steps=20
    python -m nuwa_lab train --data my_photos --on-error skip       # leave unreadable files out

PATH is a folder of captioned images and videos (`captions.jsonl`, see `nuwa_lab.world.folders`);
`--export-digits` first writes scikit-learn's handwritten digits there when it has no
captions.jsonl. The command sets `world.source = "folder:PATH"`, keeps the preset's task mix
to the tasks the folder has data for (T2I needs images, T2V and V2V videos), trains (or loads)
the tokenizer and the pretrained model with progress bars, and prints where the artifacts are and
how good they are: the tokenizer's reconstruction PSNR / SSIM on the folder's test images and the
model's validation NLL per task. When the folder's records carry a class (a "label", "class" or
"digit" field, as the digits do) it also trains the label probe on the folder's own classes and
prints its accuracy on the test pictures and on their reconstructions, each with its 95% interval.
Every artifact is keyed by the folder's content hash, so a changed folder trains again and an
unchanged one loads.

`--on-error skip` (`world.on_error = "skip"`) leaves bad entries out (unreadable or missing
files, malformed lines) with a warning that counts them, instead of stopping at the first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from nuwa_lab.config import make_config, parse_overrides
from nuwa_lab.recipes.cache import artifact_dir, get_or_train, is_trained, load_meta
from nuwa_lab.recipes.kit import load_kit
from nuwa_lab.recipes.label_probe import KIND as LABEL_PROBE
from nuwa_lab.recipes.pretrain import PRETRAIN_TASKS
from nuwa_lab.tasks.folder_evaluate import folder_reconstruction
from nuwa_lab.world.digits import digits_exported, ensure_digits
from nuwa_lab.world.labels import class_field, class_names
from nuwa_lab.world.source import load_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="the data folder (with captions.jsonl)")
    parser.add_argument("--preset", default="tiny", help="config preset (default: tiny)")
    parser.add_argument(
        "--export-digits",
        action="store_true",
        help="first export scikit-learn's handwritten digits to --data if it has no captions.jsonl",
    )
    add_overrides(parser)
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="bad entries of the folder: raise (stop at the first, the default) or skip them "
        "with a warning that counts them (world.on_error)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--retrain", action="store_true", help="train again, ignoring the cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """--set KEY=VALUE (repeatable), read by `overrides`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override, e.g. --set train.steps=200 (repeatable)",
    )


def overrides(pairs: list[str]) -> dict[str, Any]:
    """{"train.steps": 200} from ["train.steps=200"] (`config.parse_overrides`)."""
    try:
        return parse_overrides(pairs)
    except ValueError as e:
        raise SystemExit(f"--set: {e}") from None


def export_if_asked(folder: Path, cfg_world, wanted: bool) -> None:
    """Export the digits to `folder` (sized for the preset) when asked, unless they are there."""
    if not wanted or digits_exported(
        folder, image_size=cfg_world.image_size, frames=cfg_world.frames
    ):
        return
    print(f"exporting scikit-learn's handwritten digits to {folder} ...", flush=True)
    start = time.perf_counter()
    ensure_digits(folder, image_size=cfg_world.image_size, frames=cfg_world.frames)
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def interval(scores: dict[str, Any], key: str, unit: str = "") -> str:
    """'31.2 dB [30.8, 31.6]' or '97.5% [95.1, 98.8]' from `key`, `key_low`, `key_high`."""
    scale, digits = (100, 1) if unit == "%" else (1, 3 if abs(scores[key]) < 10 else 2)
    low, value, high = (scale * scores[k] for k in (f"{key}_low", key, f"{key}_high"))
    return f"{value:.{digits}f}{unit} [{low:.{digits}f}, {high:.{digits}f}]"


def timed(kind: str, cfg, args) -> tuple[Any, str]:
    """The artifact `kind` (trained or loaded) and 'trained in 12 s' / 'loaded'."""
    trained_before = is_trained(kind, cfg) and not args.retrain
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
    settings["world.on_error"] = args.on_error
    cfg = make_config(args.preset, **settings)
    try:
        source = load_folder(cfg.world, cfg.text)
    except (FileNotFoundError, ValueError) as e:  # a missing or malformed folder: say what is wrong
        hint = " (on the command line: --on-error skip)" if "on_error='skip'" in str(e) else ""
        raise SystemExit(f"error: {e}{hint}") from None
    print(f"data: {source.summary()}")
    if source.skipped:
        print(f"  {source.skipped:,} bad entries skipped (--on-error skip; the warning names why)")
    try:
        mix = source.trainable_mix(cfg.train.task_mix)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if mix != cfg.train.task_mix:  # e.g. a folder without videos: T2I only
        left = sorted({t for t, _ in cfg.train.task_mix} - {t for t, _ in mix})
        cfg = make_config(args.preset, **{**settings, "train.task_mix": mix})
        print(f"task mix: {'+'.join(t for t, _ in mix)} ({', '.join(left)} left out: no data)")

    kind = cfg.tokenizer.kind
    _, how = timed(kind, cfg, args)
    print(f"tokenizer ({kind}): {artifact_dir(kind, cfg)} ({how})")
    labelled = len(class_names(source)) >= 2
    if labelled:
        _, how = timed(LABEL_PROBE, cfg, args)
        print(
            f"label probe ({len(class_names(source))} classes of the field "
            f"{class_field(source)!r}): {artifact_dir(LABEL_PROBE, cfg)} ({how})"
        )
    kit = load_kit(cfg, progress=not args.quiet, probes=labelled)
    scores, _, _ = folder_reconstruction(kit, lpips=False)
    print(
        f"  reconstruction of {scores['n_pictures']:,} test {scores['kind']}s: PSNR "
        f"{interval(scores, 'psnr_db', ' dB')}, SSIM {interval(scores, 'ssim')}, codebook usage "
        f"{100 * scores['codebook_usage']:.0f}%"
    )
    if labelled:
        print(
            f"  the label probe reads the test pictures right: "
            f"{interval(scores, 'acc_class_originals', '%')}, their reconstructions: "
            f"{interval(scores, 'acc_class_recon', '%')} (95% intervals)"
        )

    _, how = timed("nuwa", cfg, args)
    print(f"model (nuwa, {'+'.join(t for t, _ in mix)}): {artifact_dir('nuwa', cfg)} ({how})")
    metrics = load_meta("nuwa", cfg)["metrics"]
    nll = [
        f"{t} {metrics[f'val_nll_{t}']:.3f}" for t in PRETRAIN_TASKS if f"val_nll_{t}" in metrics
    ]
    print(f"  validation NLL per task (nats per token, val split): {', '.join(nll)}")
    return 0
