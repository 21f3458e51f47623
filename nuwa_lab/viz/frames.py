"""Shared plotting helpers for the notebooks and the CLI: image grids, frame strips, animations.

Images are (b, 3, h, w) floats in [0, 1]; class maps (sketches, b, h, w) are int64 and drawn with a
fixed palette (`sketch_to_rgb`), class 0 = background. Videos are (t, 3, h, w) or (b, t, 3, h, w).
Every function returns a matplotlib Figure (or an `Animation`) and never calls `plt.show()`, so
it works the same under papermill (Agg) and in JupyterLab. Other modules add their plots here.

| thing | code |
|---|---|
| a video that plays (animated PNG, loops) | `animate(videos, titles)` -> `Animation` |
| the same video as a still, one column per frame | `show_frames(videos, titles)` -> Figure |
| the encoder alone | `encode_apng(frames, fps)` -> bytes |
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

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


@dataclass(frozen=True)
class Animation:
    """An animated PNG that Jupyter shows as an ordinary image (`image/png`).

    It starts by itself and loops, with no script, player or font to fetch, so it plays offline, in
    a reopened (untrusted) notebook, in nbconvert's HTML and wherever the PNG is copied; a viewer
    without APNG support shows the first frame.
    """

    png: bytes
    frames: int
    fps: float
    width: int
    height: int

    def _repr_png_(self) -> bytes:
        return self.png

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    def html(self) -> str:
        """An `<img>` tag that carries the animation in its `src`, for an HTML page."""
        return f'<img src="{self.data_uri()}" width="{self.width}" alt="animation">'

    def __repr__(self) -> str:
        return (
            f"Animation({self.frames} frames at {self.fps:g} fps, {self.width}x{self.height} px, "
            f"{len(self.png):,} bytes)"
        )


def encode_apng(frames: torch.Tensor, fps: float = 4.0) -> bytes:
    """Frames (t, 3, h, w) floats in [0, 1] -> animated PNG bytes: 1000 / fps ms a frame, looping.

    Lossless (the frames read back exactly). Identical consecutive frames are stored once with
    their durations added, so the playing time is always t / fps seconds.
    """
    if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
        raise ValueError(
            f"frames must be (t, 3, h, w) with t >= 1, got {tuple(frames.shape)}; "
            "convert class maps with sketch_to_rgb first"
        )
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    pixels = (frames.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8)
    images = [Image.fromarray(f.permute(1, 2, 0).contiguous().numpy()) for f in pixels]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="PNG",
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=0,  # forever
    )
    return buffer.getvalue()


def _title_font(size: int):
    """Matplotlib's DejaVu Sans (the figures' font) at `size` px, or Pillow's built-in font."""
    from matplotlib import font_manager

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:
        return ImageFont.load_default()


def animate(
    videos: torch.Tensor | Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    *,
    fps: float = 4,
    scale: int | None = None,
    ncols: int = 4,
    title_width: int | None = None,
) -> Animation:
    """Video(s) (t, 3, h, w) or class maps (t, h, w), side by side, as one looping `Animation`.

    Each video is enlarged `scale` times (default: about 128 px high) without smoothing, with its
    title wrapped above it; `ncols` videos a row. A shorter video holds its last frame.
    """
    if isinstance(videos, torch.Tensor) and videos.dim() == (
        4 if videos.is_floating_point() else 3
    ):
        videos = [videos]
    videos = [_as_rgb(v) for v in videos]
    if not videos:
        raise ValueError("no videos to animate")
    if titles is not None and len(titles) != len(videos):
        raise ValueError(f"{len(titles)} titles for {len(videos)} videos; give one per video")
    height, width = max(v.shape[-2] for v in videos), max(v.shape[-1] for v in videos)
    scale = scale or max(1, 128 // height)
    gap, font_px = 6, 11
    cell_w, cell_h = width * scale, height * scale
    wrap = title_width or max(8, int(cell_w / (0.6 * font_px)))
    lines = [wrap_title(t, wrap) for t in titles or []]
    band = max((len(t.split("\n")) for t in lines), default=0) * (font_px + 3)
    ncols = max(1, min(ncols, len(videos)))
    nrows = (len(videos) + ncols - 1) // ncols
    canvas_w = ncols * cell_w + (ncols + 1) * gap
    canvas_h = nrows * (band + cell_h) + (nrows + 1) * gap
    background = Image.new("RGB", (canvas_w, canvas_h), "white")
    draw, font = ImageDraw.Draw(background), _title_font(font_px)
    corners = []  # top-left pixel of each video on the canvas
    for k in range(len(videos)):
        x = gap + (k % ncols) * (cell_w + gap)
        y = gap + (k // ncols) * (band + cell_h + gap)
        if lines:
            draw.multiline_text((x, y), lines[k], fill=(34, 34, 34), font=font, spacing=3)
        corners.append((x, y + band))
    base = torch.from_numpy(np.array(background)).permute(2, 0, 1).float() / 255
    frames = max(v.shape[0] for v in videos)
    canvas = base.repeat(frames, 1, 1, 1)  # (t, 3, H, W)
    for (x, y), video in zip(corners, videos, strict=True):
        big = video.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        for t in range(frames):
            frame = big[min(t, video.shape[0] - 1)]
            canvas[t, :, y : y + frame.shape[-2], x : x + frame.shape[-1]] = frame
    return Animation(encode_apng(canvas, fps), frames, fps, canvas_w, canvas_h)


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
