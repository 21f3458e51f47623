"""Figures of the tasks: what is given, which tokens are fixed, what is generated, and the truth.

`mechanism_figure(ev)` draws one sample of a `TaskEvaluation` as a row per frame (one row for an
image): the condition the encoder reads (caption, sketch, or the input), the token grid over the
input with fixed tokens kept and generated ones hatched in red, the output, and the ground truth.
`comparison_figure(ev)` puts several outputs beside their ground truth. Both return a matplotlib
Figure and never call `plt.show()`. For video tasks, `comparison_animation(ev)` and
`segmentation_animation(ev)` show the same videos playing (an `Animation`, see `viz.frames`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import torch

from nuwa_lab.tasks.report import breakdown
from nuwa_lab.tasks.spec import get_task
from nuwa_lab.viz.frames import Animation, animate, show_frames, show_images, sketch_to_rgb


def _image(ax: Any, x: torch.Tensor) -> None:
    if not x.is_floating_point():
        x = sketch_to_rgb(x)
    ax.imshow(
        x.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest"
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(ax: Any, fixed: torch.Tensor, f: int) -> None:
    """Token boundaries, and a red hatch over each generated (not fixed) token of (h, w)."""
    from matplotlib.patches import Rectangle

    h, w = fixed.shape
    for i in range(h):
        for j in range(w):
            rect = dict(xy=(j * f - 0.5, i * f - 0.5), width=f, height=f)
            if fixed[i, j]:
                ax.add_patch(Rectangle(**rect, fill=False, edgecolor="white", lw=0.3, alpha=0.6))
            else:
                ax.add_patch(
                    Rectangle(
                        **rect, facecolor=(1, 0, 0, 0.35), edgecolor="red", hatch="///", lw=0.3
                    )
                )


def _condition_text(spec: Any, inputs: dict, i: int) -> str | None:
    if spec.condition == "text":
        return inputs["caption"][i]
    if spec.condition == "new_caption":
        return inputs["new_caption"][i]
    if spec.condition == "none":
        return "<none>"
    return None


def mechanism_figure(ev: Any, index: int = 0, *, size: float = 1.8) -> Any:
    """Given -> fixed-token grid -> generated -> truth, for sample `index` of a `TaskEvaluation`."""
    import matplotlib.pyplot as plt

    spec, inputs, out = get_task(ev.task), ev.inputs, ev.output
    truth = inputs[spec.target][index]
    generated = out.pixels[index]
    fixed = out.fixed[index]
    source = inputs["pixels"][index] if "pixels" in inputs else None
    if not spec.video:
        truth, generated, fixed = truth[None], generated[None], fixed[None]
        source = None if source is None else source[None]
    sketch = inputs.get("sketch")
    sketch = None if sketch is None else (sketch[index] if spec.video else sketch[index][None])
    frames = truth.shape[0]
    fig, axes = plt.subplots(frames, 4, figsize=(4 * size, frames * size + 0.6), squeeze=False)
    titles = ["encoder reads", "decoder tokens (red: generated)", "generated", "ground truth"]
    for t in range(frames):
        ax = axes[t]
        if sketch is not None:
            _image(ax[0], sketch[t])
        else:
            ax[0].axis("off")
            if t == 0:
                text = _condition_text(spec, inputs, index) or ""
                ax[0].text(
                    0.5,
                    0.5,
                    "\n".join(textwrap.wrap(text, 18)),
                    ha="center",
                    va="center",
                    fontsize=7,
                    transform=ax[0].transAxes,
                )
        base = source[t] if source is not None else torch.zeros_like(generated[t])
        if spec.fixed == "visible":  # what the model is given: the visible part only
            base = base * inputs["visible"][index][None].float()
        _image(ax[1], base)
        _grid(ax[1], fixed[t], out.downsample)
        if spec.fixed == "outside_edit" and t == 0:
            ax[1].contour(
                inputs["edit_region"][index].float().numpy(),
                levels=[0.5],
                colors="yellow",
                linewidths=0.8,
            )
        _image(ax[2], generated[t])
        _image(ax[3], truth[t])
        if spec.video:
            ax[0].set_ylabel(f"t={t}", fontsize=7)
            ax[1].set_ylabel(f"t={t}", fontsize=7)
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title, fontsize=7)
    fig.suptitle(f"{spec.name.upper()}: {spec.title}; generates {spec.generates}", fontsize=8)
    fig.tight_layout()
    return fig


def _comparison(ev: Any, count: int, items: Sequence[int] | None) -> tuple[list, list[str]]:
    """(generated, truth) pairs of the chosen items, and their titles, in showing order."""
    spec = get_task(ev.task)
    chosen = list(range(len(ev.output.pixels)) if items is None else items)[:count]
    if not chosen:
        raise ValueError("no items to show: `items` is empty")
    every_label = _labels(spec, ev.inputs, len(ev.output.pixels))
    pictures, titles = [], []
    for i in chosen:
        label = every_label[i]
        pictures += [ev.output.pixels[i], ev.inputs[spec.target][i]]
        titles += (
            [f"generated: {label}", f"truth: {label}"] if spec.video else [f"gen: {label}", "truth"]
        )
    return pictures, titles


def comparison_figure(
    ev: Any, count: int = 8, *, items: Sequence[int] | None = None, **kwargs: Any
) -> Any:
    """Outputs beside their ground truth (images: pairs; videos: frame strips): the first `count`,
    or the first `count` of `items` (indices into the evaluated batch, e.g. its misses)."""
    pictures, titles = _comparison(ev, count, items)
    if get_task(ev.task).video:
        return show_frames(pictures, titles=titles, **kwargs)
    return show_images(pictures, titles=titles, ncols=min(8, len(pictures)), **kwargs)


def comparison_animation(
    ev: Any, count: int = 4, *, items: Sequence[int] | None = None, **kwargs: Any
) -> Animation:
    """The videos of `comparison_figure`, playing: generated beside truth, two pairs a row."""
    _need_video(ev, "comparison_figure")
    pictures, titles = _comparison(ev, count, items)
    return animate(pictures, titles=titles, ncols=4, **kwargs)


def _need_video(ev: Any, still: str) -> None:
    if not get_task(ev.task).video:
        raise ValueError(f"task {ev.task!r} makes images, which do not move: use {still}")


def _labels(spec: Any, inputs: dict, count: int) -> list[str]:
    if spec.condition in ("text", "new_caption"):
        return list(inputs["caption" if spec.condition == "text" else "new_caption"][:count])
    return [f"seed {s}" for s in inputs["seed"][:count]]


def breakdown_figure(ev: Any, *, size: tuple[float, float] = (4.5, 2.6)) -> Any:
    """The numeric columns of `nuwa_lab.tasks.report.breakdown(ev)` against its first column."""
    import matplotlib.pyplot as plt

    rows = breakdown(ev)
    fig, ax = plt.subplots(figsize=size)
    if not rows:
        ax.axis("off")
        ax.text(0.5, 0.5, "nothing to break down", ha="center", va="center")
        return fig
    label = next(iter(rows[0]))
    numeric = [k for k, v in rows[0].items() if isinstance(v, float) and k != label]
    x = list(range(len(rows)))
    for k, key in enumerate(numeric):
        width = 0.8 / len(numeric)
        values = [r[key] for r in rows]
        ax.bar([i + (k - (len(numeric) - 1) / 2) * width for i in x], values, width, label=key)
    ax.set_xticks(x, [str(r[label]) for r in rows], rotation=30, ha="right", fontsize=7)
    ax.set_xlabel(label, fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"{ev.task.upper()} on {ev.split}", fontsize=9)
    fig.tight_layout()
    return fig


def _segmentation(ev: Any, count: int) -> tuple[list, list[str]]:
    """(sketch, generated, segmenter's reading) of the first `count` items, and their titles."""
    if ev.segmentation is None:
        raise ValueError(f"task {ev.task!r} has no segmentation; this figure is for s2i / s2v")
    count = min(count, len(ev.output.pixels))
    sketch, seg, gen = ev.inputs["sketch"], ev.segmentation, ev.output.pixels
    pictures = [x for i in range(count) for x in (sketch[i], gen[i], seg[i])]
    return pictures, ["sketch", "generated", "segmenter reads"] * count


def segmentation_figure(ev: Any, count: int = 4, **kwargs: Any) -> Any:
    """S2I / S2V: input sketch, output, and the segmenter's reading of the output (Detected PA)."""
    pictures, titles = _segmentation(ev, count)
    if get_task(ev.task).video:
        return show_frames(pictures, titles=titles, **kwargs)
    return show_images(pictures, titles=titles, ncols=6, **kwargs)


def segmentation_animation(ev: Any, count: int = 2, **kwargs: Any) -> Animation:
    """S2V's `segmentation_figure`, playing: sketch, output, the segmenter's reading; a row each."""
    _need_video(ev, "segmentation_figure")
    pictures, titles = _segmentation(ev, count)
    return animate(pictures, titles=titles, ncols=3, **kwargs)
