"""Task data sets for the eight tasks, and real data from a folder of images / videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nuwa_lab.config import make_config
from nuwa_lab.world import TASKS, FolderDataset, ShapesWorld, TaskDataset, collate


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(make_config("smoke").world)


EXPECTED = {
    "t2i": {"caption": str, "pixels": (3, 16, 16)},
    "s2i": {"sketch": (16, 16), "pixels": (3, 16, 16)},
    "i2i": {"pixels": (3, 16, 16), "visible": (16, 16)},
    "ti2i": {
        "pixels": (3, 16, 16),
        "new_caption": str,
        "target": (3, 16, 16),
        "edit_region": (16, 16),
        "changed": str,
    },
    "t2v": {"caption": str, "pixels": (2, 3, 16, 16)},
    "s2v": {"sketch": (2, 16, 16), "pixels": (2, 3, 16, 16)},
    "v2v": {"pixels": (2, 3, 16, 16), "given_frames": int},
    "tv2v": {
        "pixels": (2, 3, 16, 16),
        "new_caption": str,
        "target": (2, 3, 16, 16),
        "given_frames": int,
        "changed": str,
    },
}


@pytest.mark.parametrize("task", TASKS)
def test_every_task_yields_its_keys_with_the_right_shapes(world, task):
    data = TaskDataset(task, world, "train", 4)
    assert len(data) == 4
    item = data[1]
    assert item["task"] == task and item["seed"] == world.seeds("train")[1]
    assert isinstance(item["objects"], list) and item["objects"]
    for key, want in EXPECTED[task].items():
        value = item[key]
        if isinstance(want, tuple):
            assert tuple(value.shape) == want, (task, key)
        else:
            assert isinstance(value, want), (task, key)
    batch = collate([data[i] for i in range(4)])
    assert batch["pixels"].shape == (4, *EXPECTED[task]["pixels"])


def test_items_are_deterministic(world):
    a, b = TaskDataset("ti2i", world, "val", 3), TaskDataset("ti2i", world, "val", 3)
    assert (
        torch.equal(a[2]["target"], b[2]["target"]) and a[2]["new_caption"] == b[2]["new_caption"]
    )


def test_sketch_and_video_items_agree_with_the_world(world):
    item = TaskDataset("s2v", world, "test", 2)[0]
    sample = world.video(world.seeds("test")[0])
    assert torch.equal(item["sketch"], sample.sketch) and torch.equal(item["pixels"], sample.pixels)


def test_completion_hides_a_half_or_quadrant_that_covers_the_object(world):
    data = TaskDataset("i2i", world, "train", 20)
    size = world.cfg.image_size
    partial = 0
    for i in range(len(data)):
        item = data[i]
        hidden = ~item["visible"]
        assert hidden.sum().item() in (size * size // 2, size * size // 4)
        sketch = world.image(item["seed"]).sketch
        assert (hidden & (sketch > 0)).any()
        partial += bool((~hidden & (sketch > 0)).any())
    assert partial >= len(data) // 2  # usually part of the object stays visible


def test_unknown_task_lists_the_eight(world):
    with pytest.raises(ValueError, match="t2i, s2i, i2i, ti2i, t2v, s2v, v2v, tv2v"):
        TaskDataset("t2x", world, "train", 2)


def test_size_beyond_the_split_raises(world):
    with pytest.raises(ValueError, match="exceeds"):
        TaskDataset("t2i", world, "val", len(world.seeds("val")) + 1)


def _write_png(path: Path, colour, size=(20, 12)) -> None:
    Image.new("RGB", size, colour).save(path)


def _folder(tmp_path: Path, entries: list[dict]) -> Path:
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    return tmp_path


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    _write_png(tmp_path / "red.png", (255, 0, 0))
    frames = tmp_path / "clip"
    frames.mkdir()
    for t in range(3):
        _write_png(frames / f"{t:03d}.png", (0, 0, 80 * t))
    gif = [Image.new("RGB", (16, 16), (0, 40 * t, 0)) for t in range(3)]
    gif[0].save(tmp_path / "anim.gif", save_all=True, append_images=gif[1:], duration=100)
    return _folder(
        tmp_path,
        [
            {"file": "red.png", "caption": "a red picture"},
            {"file": "clip", "caption": "getting bluer"},
            {"file": "anim.gif", "caption": "getting greener"},
        ],
    )


def test_folder_of_images_frames_and_gifs_loads_as_samples(data_folder):
    cfg = make_config("smoke").world  # 16 px, 2 frames
    with pytest.warns(UserWarning, match=r"'getting' \(2\)"):  # words outside the grammar
        data = FolderDataset(data_folder, cfg)
    assert len(data) == 3 and data.skipped == 0
    image, clip, gif = data[0], data[1], data[2]
    assert image.kind == "image" and image.pixels.shape == (3, 16, 16)
    assert torch.allclose(image.pixels[:, 8, 8], torch.tensor([1.0, 0.0, 0.0]))
    assert image.caption == "a red picture" and image.sketch is None and image.objects == []
    assert clip.kind == "video" and clip.pixels.shape == (2, 3, 16, 16)
    assert clip.pixels[1, 2].mean() > clip.pixels[0, 2].mean()  # frames in file-name order
    assert gif.kind == "video" and gif.pixels.shape == (2, 3, 16, 16)
    assert gif.pixels[1, 1].mean() > gif.pixels[0, 1].mean()


def test_missing_file_raises_naming_it(tmp_path):
    _write_png(tmp_path / "a.png", (0, 255, 0))
    folder = _folder(
        tmp_path, [{"file": "a.png", "caption": "x"}, {"file": "gone.png", "caption": "y"}]
    )
    with pytest.raises(FileNotFoundError, match="gone.png"):
        FolderDataset(folder, make_config("smoke").world)


def test_skip_counts_missing_and_corrupt_files(tmp_path):
    _write_png(tmp_path / "a.png", (0, 255, 0))
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    folder = _folder(
        tmp_path,
        [
            {"file": "a.png", "caption": "green"},
            {"file": "gone.png", "caption": "missing"},
            {"file": "broken.png", "caption": "corrupt"},
        ],
    )
    with pytest.warns(UserWarning, match="skipped 2 of 3 entries: 1 missing file, 1 unreadable"):
        data = FolderDataset(folder, make_config("smoke").world, on_error="skip")
    assert len(data) == 1 and data.skipped == 2
    assert [e.file for e in data.errors] == ["gone.png", "broken.png"]


def test_corrupt_file_raises_naming_it(tmp_path):
    (tmp_path / "broken.png").write_bytes(np.arange(50, dtype=np.uint8).tobytes())
    folder = _folder(tmp_path, [{"file": "broken.png", "caption": "corrupt"}])
    with pytest.raises(ValueError, match="broken.png"):
        FolderDataset(folder, make_config("smoke").world)


def test_too_few_frames_and_bad_index_lines_raise(tmp_path):
    frames = tmp_path / "short"
    frames.mkdir()
    _write_png(frames / "0.png", (1, 2, 3))
    folder = _folder(tmp_path, [{"file": "short", "caption": "one frame"}])
    with pytest.raises(ValueError, match="1 frames but world.frames=2"):
        FolderDataset(folder, make_config("smoke").world)
    (tmp_path / "captions.jsonl").write_text('{"file": "short"}\n')
    with pytest.raises(ValueError, match="captions.jsonl:1"):
        FolderDataset(folder, make_config("smoke").world)
    with pytest.raises(FileNotFoundError, match="captions.jsonl"):
        FolderDataset(tmp_path / "short", make_config("smoke").world)
