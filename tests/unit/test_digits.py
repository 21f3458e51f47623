"""scikit-learn's real digit scans exported as a captioned folder, read back by FolderDataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nuwa_lab import make_config
from nuwa_lab.world.digits import (
    DIGIT_WORDS,
    IMAGE_TEMPLATES,
    VIDEO_TEMPLATE,
    VIDEOS_PER_SCAN,
    digit_image,
    digit_video,
    export_digits,
    load_scans,
    read_caption,
    split_indices,
    with_article,
)
from nuwa_lab.world.folders import FolderDataset


def test_the_scans_are_the_real_data_set_and_the_split_is_per_class_and_disjoint() -> None:
    scans, labels = load_scans()
    assert scans.shape == (1797, 8, 8) and scans.dtype == np.uint8 and scans.max() == 255
    assert sorted(set(labels.tolist())) == list(range(10))
    parts = split_indices(labels)
    train, test = set(parts["train"].tolist()), set(parts["test"].tolist())
    assert not train & test and len(train | test) == 1797
    for digit in range(10):  # about a fifth of every digit's scans is test
        mine = np.flatnonzero(labels == digit)
        share = len(set(mine.tolist()) & test) / len(mine)
        assert share == pytest.approx(0.2, abs=0.01)


def test_an_image_is_the_scan_scaled_with_dark_ink_on_white() -> None:
    scans, _ = load_scans()
    picture = np.asarray(digit_image(scans[0], 32))
    assert picture.shape == (32, 32, 3)
    back = np.asarray(digit_image(scans[0], 8))[..., 0]  # at 8 px: the scan itself, inverted
    assert np.abs(255 - back.astype(int) - scans[0].astype(int)).max() <= 1


def centroid(frame) -> np.ndarray:
    ink = 255 - np.asarray(frame)[..., 0].astype(float)
    ys, xs = np.mgrid[: ink.shape[0], : ink.shape[1]]
    return np.array([(xs * ink).sum(), (ys * ink).sum()]) / ink.sum()


@pytest.mark.parametrize(
    "direction, step", [("left", (-4, 0)), ("right", (4, 0)), ("up", (0, -4)), ("down", (0, 4))]
)
def test_a_video_moves_the_digit_four_pixels_per_frame_the_named_way(direction, step) -> None:
    scans, _ = load_scans()
    frames = digit_video(scans[3], 32, 4, direction, speed=4)
    centres = [centroid(f) for f in frames]
    for a, b in zip(centres, centres[1:], strict=False):
        assert b - a == pytest.approx(step, abs=1e-6)
    with pytest.raises(ValueError, match="leaves a 32-pixel canvas"):
        digit_video(scans[3], 32, 8, direction, speed=4)
    with pytest.raises(ValueError, match="direction must be one of"):
        digit_video(scans[3], 32, 4, "sideways")


def test_captions_name_the_digit_and_the_direction() -> None:
    assert read_caption("a handwritten seven") == (7, None)
    assert read_caption("the digit zero") == (0, None)
    assert read_caption("a nine moves to the left") == (9, "left")
    assert read_caption("a two moves up") == (2, "up")
    assert read_caption("a cat") == (None, None)
    assert read_caption("an eight moves to the right") == (8, "right")


def test_the_captions_take_an_before_eight_and_a_before_the_other_digits() -> None:
    assert [with_article(w) for w in ("one", "eight", "seven")] == ["a one", "an eight", "a seven"]
    for template in (*IMAGE_TEMPLATES, VIDEO_TEMPLATE):
        caption = template.format(digit="eight", a_digit=with_article("eight"), direction="up")
        assert "a eight" not in caption


def test_the_exported_folder_reads_back_as_captioned_images_and_videos(tmp_path) -> None:
    index = export_digits(tmp_path / "digits", split="test")
    lines = [json.loads(x) for x in index.read_text().splitlines()]
    scans, labels = load_scans()
    n_test = len(split_indices(labels)["test"])
    assert len(lines) == (1 + VIDEOS_PER_SCAN) * n_test  # an image and its videos per scan
    assert {line["split"] for line in lines} == {"test"}
    for line in lines:
        digit, direction = read_caption(line["caption"])
        assert digit == line["digit"] and direction == line.get("direction")
    world = make_config("tiny").world
    with pytest.warns(UserWarning, match="unknown"):  # "handwritten", "digit"... not Shapes words
        data = FolderDataset(tmp_path / "digits", world)
    assert len(data) == len(lines) and data.skipped == 0
    kinds = [data[i].kind for i in range(len(data))]
    assert kinds.count("image") == n_test and kinds.count("video") == VIDEOS_PER_SCAN * n_test
    video = next(data[i] for i in range(len(data)) if data[i].kind == "video")
    assert video.pixels.shape == (world.frames, 3, world.image_size, world.image_size)
    assert not torch.equal(video.pixels[0], video.pixels[1])  # it moves
    image = data[0]
    assert image.caption == lines[0]["caption"]
    first = int(lines[0]["file"].split("_")[1].split(".")[0])
    expected = torch.from_numpy(np.array(digit_image(scans[first], world.image_size))).float()
    got = image.pixels.permute(1, 2, 0) * 255
    assert (got - expected).abs().max() <= 1.0
    assert DIGIT_WORDS[lines[0]["digit"]] in image.caption


def test_four_videos_per_scan_move_each_scan_every_way(tmp_path) -> None:
    index = export_digits(tmp_path / "digits", split="test", limit=5, videos_per_scan=4)
    lines = [json.loads(x) for x in index.read_text().splitlines()]
    ways: dict[str, list] = {}
    for line in lines:
        if "direction" in line:
            ways.setdefault(line["file"].split("_")[1], []).append(line["direction"])
    assert len(ways) == 5 and len(lines) == 5 * (1 + 4)
    assert all(sorted(w) == ["down", "left", "right", "up"] for w in ways.values())
    with pytest.raises(ValueError, match="videos_per_scan must be 1 to 4"):
        export_digits(tmp_path / "five", split="test", limit=1, videos_per_scan=5)
