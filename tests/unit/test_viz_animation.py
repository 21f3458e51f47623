"""Animations are animated PNGs that read back exactly: frames, size, loop, durations, pixels."""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from nuwa_lab.viz.frames import Animation, animate, encode_apng

matplotlib.use("Agg")


def decode(png: bytes) -> tuple[Image.Image, list[torch.Tensor], list[float]]:
    """The image, its frames as (3, h, w) uint8 tensors, and each frame's duration in ms."""
    image = Image.open(io.BytesIO(png))
    frames, durations = [], []
    for k in range(getattr(image, "n_frames", 1)):
        image.seek(k)
        frames.append(torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1))
        durations.append(image.info["duration"])
    image.seek(0)
    return image, frames, durations


def as_bytes(frames: torch.Tensor) -> torch.Tensor:
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8)


def test_encoded_frames_read_back_exactly_and_loop_forever() -> None:
    frames = torch.rand(5, 3, 6, 7, generator=torch.Generator().manual_seed(0))
    image, decoded, durations = decode(encode_apng(frames, fps=5))
    assert image.format == "PNG" and image.is_animated
    assert image.n_frames == 5
    assert image.size == (7, 6)
    assert image.info["loop"] == 0  # 0 = forever
    assert durations == [200.0] * 5
    for got, want in zip(decoded, as_bytes(frames), strict=True):
        assert torch.equal(got, want)


def test_repeated_frames_keep_the_playing_time() -> None:
    a, b = torch.zeros(3, 4, 4), torch.ones(3, 4, 4)
    image, decoded, durations = decode(encode_apng(torch.stack([a, a, b]), fps=4))
    assert image.n_frames == 2  # the repeated frame is stored once ...
    assert sum(durations) == 3 * 250  # ... for twice as long
    assert torch.equal(decoded[1], as_bytes(b))


def test_encode_rejects_what_is_not_a_stack_of_rgb_frames() -> None:
    with pytest.raises(ValueError, match=r"\(t, 3, h, w\)"):
        encode_apng(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="fps"):
        encode_apng(torch.zeros(2, 3, 8, 8), fps=0)


def test_animate_places_each_video_enlarged_and_holds_the_shorter_ones_last_frame() -> None:
    g = torch.Generator().manual_seed(1)
    long, short = torch.rand(3, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    anim = animate([long, short], fps=2, scale=5)
    image, decoded, durations = decode(anim.png)
    assert (anim.frames, anim.width, anim.height) == (3, image.width, image.height)
    assert image.n_frames == 3 and durations == [500.0] * 3 and image.info["loop"] == 0
    gap, cell = 6, 20  # 6 px between videos, 4 px x scale 5
    assert image.size == (2 * cell + 3 * gap, cell + 2 * gap)
    for t in range(3):
        for k, video in enumerate([long, short]):
            x = gap + k * (cell + gap)
            panel = decoded[t][:, gap : gap + cell, x : x + cell]
            want = as_bytes(video[min(t, len(video) - 1)])
            assert torch.equal(panel, want.repeat_interleave(5, 1).repeat_interleave(5, 2))


def test_animate_writes_titles_above_the_videos_and_draws_class_maps_in_colour() -> None:
    sketch = torch.zeros(2, 4, 4, dtype=torch.long)
    sketch[1, 1:3, 1:3] = 3
    plain = animate(sketch, scale=4)
    titled = animate(sketch, titles=["a sketch with a long title to wrap"], scale=4, title_width=8)
    assert titled.height > plain.height  # a band of wrapped title lines
    _, frames, _ = decode(titled.png)
    band = titled.height - plain.height
    assert (frames[0][:, :band] < 128).any()  # dark text on white
    _, plain_frames, _ = decode(plain.png)
    assert not torch.equal(plain_frames[0], plain_frames[1])  # the square appears in frame 1
    with pytest.raises(ValueError, match="2 titles for 1 videos"):
        animate(sketch, titles=["a", "b"])


def test_an_animation_is_shown_as_a_png_with_a_short_text_repr() -> None:
    from IPython.core.formatters import DisplayFormatter

    anim = animate(torch.rand(3, 3, 4, 4))
    data, _ = DisplayFormatter().format(anim)
    assert set(data) == {"image/png", "text/plain"}  # no HTML: shown even when not trusted
    png = data["image/png"]
    png = base64.b64decode(png) if isinstance(png, str) else png
    assert png == anim.png
    assert data["text/plain"].startswith("Animation(3 frames at 4 fps")
    assert anim.data_uri().startswith("data:image/png;base64,")
    assert base64.b64decode(anim.html().split('src="data:image/png;base64,')[1].split('"')[0]) == (
        anim.png
    )


def fake_evaluation(task: str, frames: int) -> SimpleNamespace:
    truth = torch.rand(3, frames, 3, 4, 4) if frames else torch.rand(3, 3, 4, 4)
    return SimpleNamespace(
        task=task,
        inputs={"pixels": truth, "seed": [1, 2, 3]},
        output=SimpleNamespace(pixels=truth.flip(0)),
    )


def test_the_comparison_animation_plays_generated_beside_truth() -> None:
    from nuwa_lab.viz.tasks import comparison_animation

    ev = fake_evaluation("v2v", frames=3)
    anim = comparison_animation(ev, count=2, scale=2)
    assert isinstance(anim, Animation) and anim.frames == 3
    image, _, _ = decode(anim.png)
    assert image.n_frames == 3
    with pytest.raises(ValueError, match="makes images"):
        comparison_animation(fake_evaluation("i2i", frames=0))


def test_the_report_keeps_an_animation_playing_and_shrinks_a_still(tmp_path) -> None:
    from PIL import Image

    from nuwa_lab.lab.experiment.document import FIGURE_MAX_PX, Document
    from nuwa_lab.viz.frames import encode_apng

    frames = torch.rand(3, 3, 8, 8)
    moving = tmp_path / "run" / "figures" / "1.png"
    moving.parent.mkdir(parents=True)
    moving.write_bytes(encode_apng(frames, fps=4))
    still = tmp_path / "run" / "figures" / "2.png"
    Image.new("RGB", (FIGURE_MAX_PX * 2, 10)).save(still)
    doc = Document(base=tmp_path, figure_dir=tmp_path / "figures")
    doc.figures([moving, still])
    with Image.open(tmp_path / "figures" / "run-1.png") as copy:
        assert copy.is_animated and copy.n_frames == 3
    with Image.open(tmp_path / "figures" / "run-2.png") as copy:
        assert copy.width == FIGURE_MAX_PX
