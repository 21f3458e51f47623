"""Shared plotting helpers for the notebooks and the CLI: image grids, frame strips, animations.

Images are (b, 3, h, w) floats in [0, 1]; class maps (sketches, b, h, w) are int64 and drawn with a
fixed palette (`sketch_to_rgb`), class 0 = background. Videos are (t, 3, h, w) or (b, t, 3, h, w).
Every function returns a matplotlib Figure (or an HTML animation) and never calls `plt.show()`, so
it works the same under papermill (Agg) and in JupyterLab. Other modules add their plots here.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import torch

# class 0 = background (dark), then well separated colours (matplotlib's tab10 order)
SKETCH_PALETTE = (
    (0.0, 0.0, 0.0),
    (0.12, 0.47, 0.71),
    (1.0, 0.5, 0.05),
    (0.17, 0.63, 0.17),
    (0.84, 0.15, 0.16),
    (0.58, 0.4, 0.74),
    (0.55, 0.34, 0.29),
    (0.89, 0.47, 0.76),
    (0.5, 0.5, 0.5),
    (0.74, 0.74, 0.13),
    (0.09, 0.75, 0.81),
)


def sketch_to_rgb(sketch: torch.Tensor) -> torch.Tensor:
    """Class map (..., h, w) int -> colours (..., 3, h, w) float in [0, 1] (classes wrap at 11)."""
    palette = torch.tensor(SKETCH_PALETTE, dtype=torch.float32)
    rgb = palette[sketch.long().cpu() % len(SKETCH_PALETTE)]  # (..., h, w, 3)
    return rgb.movedim(-1, -3)


def _as_rgb(x: torch.Tensor) -> torch.Tensor:
    """Images (…, 3, h, w) float or class maps (…, h, w) int -> (…, 3, h, w) float on the CPU."""
    x = x.detach().cpu()
    if not x.is_floating_point():
        return sketch_to_rgb(x)
    if x.dim() >= 3 and x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return x.float().clamp(0, 1)


def wrap_title(title: str | None, width: int) -> str:
    return "\n".join(textwrap.wrap(title or "", width))


def show_images(
    images: torch.Tensor | Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    *,
    size: float = 1.6,
    title_width: int = 22,
    fontsize: int = 7,
):
    """A grid of images (b, 3, h, w) or class maps (b, h, w); titles wrapped under `title_width`."""
    import matplotlib.pyplot as plt

    if isinstance(images, torch.Tensor):
        images = list(images)
    images = [_as_rgb(x) for x in images]
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images; give one per image")
    ncols = max(1, min(ncols, len(images)))
    nrows = (len(images) + ncols - 1) // ncols
    lines = max((len(wrap_title(t, title_width).split("\n")) for t in titles or []), default=0)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, (size + 0.14 * lines) * nrows), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k].permute(1, 2, 0).numpy(), interpolation="nearest")
            if titles is not None:
                ax.set_title(wrap_title(titles[k], title_width), fontsize=fontsize)
    fig.tight_layout()
    return fig


def caption_grid(images: torch.Tensor, captions: Sequence[str], ncols: int = 4, **kwargs):
    """Images titled with their (wrapped) captions: how to look at text-to-image output."""
    return show_images(images, titles=list(captions), ncols=ncols, **kwargs)


def show_frames(
    videos: torch.Tensor | Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    *,
    size: float = 1.3,
    fontsize: int = 7,
):
    """Videos as a still: one row per video (t, 3, h, w) or (t, h, w), one column per frame."""
    import matplotlib.pyplot as plt

    videos = [
        _as_rgb(v) for v in (videos if not isinstance(videos, torch.Tensor) else list(videos))
    ]
    if videos and videos[0].dim() == 3:  # a single video was given
        videos = [torch.stack(videos)]
    frames = max(v.shape[0] for v in videos)
    fig, axes = plt.subplots(
        len(videos),
        frames,
        figsize=(max(size * frames, 4.0), (size + 0.5) * len(videos)),
        squeeze=False,
    )
    for r, video in enumerate(videos):
        for t, ax in enumerate(axes[r]):
            ax.axis("off")
            if t < video.shape[0]:
                ax.imshow(video[t].permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_title(f"t={t}", fontsize=fontsize)
        if titles is not None:  # the caption above the row, left-aligned over its frames
            axes[r, 0].text(
                0, 1.22, titles[r], transform=axes[r, 0].transAxes, fontsize=fontsize + 1
            )
    fig.subplots_adjust(left=0.02, right=0.98, top=0.88, bottom=0.02, wspace=0.08, hspace=0.55)
    return fig


def animate(
    videos: torch.Tensor | Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    *,
    fps: int = 4,
    size: float = 2.0,
    title_width: int = 26,
):
    """An HTML animation (matplotlib `to_jshtml`) of video(s) (t, 3, h, w), side by side."""
    import matplotlib.pyplot as plt
    from IPython.display import HTML
    from matplotlib import animation

    if isinstance(videos, torch.Tensor) and videos.dim() == (
        4 if videos.is_floating_point() else 3
    ):
        videos = [videos]
    videos = [_as_rgb(v) for v in videos]
    frames = max(v.shape[0] for v in videos)
    fig, axes = plt.subplots(
        1, len(videos), figsize=(size * len(videos), size + 0.4), squeeze=False
    )
    shown = []
    for k, (ax, video) in enumerate(zip(axes[0], videos, strict=True)):
        ax.axis("off")
        shown.append(ax.imshow(video[0].permute(1, 2, 0).numpy(), interpolation="nearest"))
        if titles is not None:
            ax.set_title(wrap_title(titles[k], title_width), fontsize=7)
    fig.tight_layout()

    def draw(t: int):
        for image, video in zip(shown, videos, strict=True):
            image.set_data(video[min(t, video.shape[0] - 1)].permute(1, 2, 0).numpy())
        return shown

    anim = animation.FuncAnimation(fig, draw, frames=frames, interval=1000 // fps, blit=False)
    html = HTML(anim.to_jshtml(default_mode="loop"))
    plt.close(fig)
    return html


def _text_panel(ax, text: str, width: int = 20) -> None:
    ax.axis("off")
    ax.add_patch(_box(ax))
    ax.text(
        0.5, 0.5, wrap_title(f'"{text}"', width), ha="center", va="center", fontsize=7, wrap=True
    )


def _box(ax):
    from matplotlib.patches import FancyBboxPatch

    return FancyBboxPatch(
        (0.03, 0.03), 0.94, 0.94, boxstyle="round,pad=0.0", transform=ax.transAxes,
        facecolor="#f4f1e8", edgecolor="#999999",
    )  # fmt: skip


def task_examples(items: dict[str, dict], *, size: float = 1.5):
    """One row per task from `TaskDataset` items: what the task is given | what it must produce.

    Hidden (i2i) and edited (ti2i) regions are dimmed; for v2v / tv2v the given frames are the
    condition and every frame after them is the output.
    """
    import matplotlib.pyplot as plt

    frames = max(
        (it["pixels"].shape[0] for it in items.values() if it["pixels"].dim() == 4), default=1
    )
    ncols = 2 + frames
    fig, axes = plt.subplots(
        len(items), ncols, figsize=(size * ncols, size * len(items)), squeeze=False
    )
    for row, (task, item) in zip(axes, items.items(), strict=True):
        for ax in row:
            ax.axis("off")
        given: list[torch.Tensor] = []  # pictures in the condition column(s)
        text = item.get("new_caption", item.get("caption"))
        pixels = item.get("target", item["pixels"])
        if task in ("s2i", "s2v"):
            given = [item["sketch"] if task == "s2i" else item["sketch"][0]]
        elif task == "i2i":
            given = [item["pixels"] * item["visible"] + 0.5 * ~item["visible"]]
        elif task == "ti2i":
            given = [item["pixels"] * (1 - 0.6 * item["edit_region"].float())]
        elif task in ("v2v", "tv2v"):
            given = [item["pixels"][t] for t in range(item["given_frames"])]
        col = 0
        if text is not None and task not in ("ti2i", "tv2v"):
            _text_panel(row[col], text)
            col += 1
        for picture in given[: ncols - 2]:
            row[col].imshow(_as_rgb(picture).permute(1, 2, 0).numpy(), interpolation="nearest")
            col += 1
        if task in ("ti2i", "tv2v"):
            _text_panel(row[col], text)
            col += 1
        row[0].set_title(f"{task}: given", fontsize=8, loc="left")
        outputs = (
            [pixels]
            if pixels.dim() == 3
            else list(pixels[len(given) if task in ("v2v", "tv2v") else 0 :])
        )
        start = col
        for k, picture in enumerate(outputs[: ncols - col]):
            row[start + k].imshow(
                _as_rgb(picture).permute(1, 2, 0).numpy(), interpolation="nearest"
            )
        row[start].set_title("→ output", fontsize=8, loc="left")
    fig.tight_layout()
    return fig
