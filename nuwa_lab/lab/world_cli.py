"""`python -m nuwa_lab world`: look at the Shapes World and measure how fast it renders.

    python -m nuwa_lab world --preview out.png [--preset tiny] [--seed 0]
    python -m nuwa_lab world --rate [--count 10000]

The preview is one figure: a row of images with their captions, the row of their sketches, then a
few videos frame by frame with their sketches. The rate is images/s and videos/s of
`world.images(seeds)` and `world.videos(seeds)` for `--count` consecutive train seeds, best of
`--repeat` runs.
"""

from __future__ import annotations

import argparse
import time

from nuwa_lab.config import make_config
from nuwa_lab.viz.frames import sketch_to_rgb, wrap_title
from nuwa_lab.world import ShapesWorld


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preview", metavar="OUT", help="draw a grid of samples to this image file"
    )
    parser.add_argument("--rate", action="store_true", help="measure images/s and videos/s")
    parser.add_argument("--preset", default="tiny", help="config preset (default: tiny)")
    parser.add_argument("--seed", type=int, default=0, help="first seed of the preview")
    parser.add_argument("--split", default="train", help="split to draw seeds from (train, ...)")
    parser.add_argument("--count", type=int, default=10_000, help="samples per rate measurement")
    parser.add_argument("--repeat", type=int, default=3, help="rate: best of this many runs")


def preview_figure(world: ShapesWorld, seeds, n_images: int = 8, n_videos: int = 3):
    """Images + sketches (captions as titles) and videos + sketches frame by frame."""
    import matplotlib.pyplot as plt

    images = world.images(seeds[:n_images])
    videos = world.videos(seeds[n_images : n_images + n_videos])
    frames = world.cfg.frames
    ncols = max(n_images, frames)
    nrows = 2 + 2 * len(videos)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 1.9 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k in range(len(images)):
        axes[0, k].imshow(images.pixels[k].permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[0, k].set_title(wrap_title(images.captions[k], 22), fontsize=6)
        axes[1, k].imshow(sketch_to_rgb(images.sketch[k]).permute(1, 2, 0).numpy())
    axes[1, 0].set_title("sketches", fontsize=7, loc="left")
    for v in range(len(videos)):
        row = 2 + 2 * v
        for t in range(frames):
            axes[row, t].imshow(
                videos.pixels[v, t].permute(1, 2, 0).numpy(), interpolation="nearest"
            )
            axes[row + 1, t].imshow(sketch_to_rgb(videos.sketch[v, t]).permute(1, 2, 0).numpy())
            axes[row, t].set_title(f"t={t}", fontsize=6)
        axes[row, 0].text(
            0, 1.25, videos.captions[v], transform=axes[row, 0].transAxes, fontsize=8, va="bottom"
        )
    fig.subplots_adjust(left=0.02, right=0.98, top=0.95, bottom=0.02, wspace=0.1, hspace=0.7)
    return fig


def measure_rate(world: ShapesWorld, count: int, repeat: int = 3) -> dict[str, float]:
    """Best-of-`repeat` images/s and videos/s for `count` consecutive train seeds."""
    seeds = world.seeds("train")[:count]
    rates = {}
    for kind, make in (("images_per_sec", world.images), ("videos_per_sec", world.videos)):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            make(seeds)
            best = min(best, time.perf_counter() - start)
        rates[kind] = len(seeds) / best
    return rates


def run(args: argparse.Namespace) -> int:

    if not args.preview and not args.rate:
        raise SystemExit("nothing to do: pass --preview OUT.png and/or --rate")
    cfg = make_config(args.preset, seed=args.seed)
    world = ShapesWorld(cfg.world)
    if args.preview:
        import matplotlib

        matplotlib.use("Agg")
        from pathlib import Path

        import matplotlib.pyplot as plt

        seeds = world.seeds(args.split)[args.seed : args.seed + 11]
        fig = preview_figure(world, seeds)
        Path(args.preview).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.preview, dpi=150)
        plt.close(fig)
        print(f"wrote {args.preview} ({args.preset} preset, {args.split} seeds from {seeds[0]})")
    if args.rate:
        size = cfg.world.image_size
        rates = measure_rate(world, args.count, args.repeat)
        print(
            f"{args.count} samples, {size}x{size}, {cfg.world.frames} frames per video, "
            f"best of {args.repeat}: {rates['images_per_sec']:,.0f} images/s, "
            f"{rates['videos_per_sec']:,.0f} videos/s"
        )
    return 0
