"""Edit pairs in a data folder (`edits.jsonl`): read and checked, known answers of their measures,
and the digits' TV2V pairs.

Known answers: a changed 4×4 block gives a 6×6 edit region (one pixel of dilation); the target
itself scores the PSNR cap where it is kept and edited and reads moving the asked way; the
source, which moves another way, never does. Every malformed line names its line and the fix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nuwa_lab.config import make_config
from nuwa_lab.metrics import ink_directions
from nuwa_lab.recipes.finetune_data import task_pool
from nuwa_lab.tasks.folder_metrics import manipulation_scores
from nuwa_lab.tasks.metrics import PSNR_CAP_DB
from nuwa_lab.world.digits import (
    MOTION,
    VIDEOS_PER_SCAN,
    digit_video,
    digits_exported,
    ensure_digits,
    export_digits,
    load_scans,
    read_caption,
    turned_video,
)
from nuwa_lab.world.edits import DIFFERENCE, difference_region
from nuwa_lab.world.labels import class_indices, directions
from nuwa_lab.world.source import check_task, load_folder

SCANS = 8  # digit scans per split


def folder_cfg(folder: Path, preset: str = "smoke"):
    return make_config(preset, **{"world.source": f"folder:{folder}", "device": "cpu"})


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    export_digits(folder, split="all", limit=SCANS)
    return folder


def write_edits(folder: Path, lines: list) -> None:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    (folder / "edits.jsonl").write_text(text, encoding="utf-8")


@pytest.fixture
def editable(tmp_path, digits) -> Path:
    """A copy of the digits with two image files for image pairs: a scan and the same scan with
    a red 4×4 block at (8, 8)."""
    folder = tmp_path / "editable"
    shutil.copytree(digits, folder)
    source = folder / "images" / sorted(p.name for p in (folder / "images").iterdir())[0]
    pixels = np.asarray(Image.open(source).convert("RGB")).copy()
    pixels[8:12, 8:12] = (255, 0, 0)  # red: unlike the white paper and the dark ink
    Image.fromarray(pixels).save(folder / "edited.png")
    shutil.copy(source, folder / "source.png")
    return folder


IMAGE_PAIR = {"source": "source.png", "target": "edited.png", "caption": "a handwritten seven"}


# ---- the digits' pairs ----


def test_the_digits_have_one_tv2v_pair_per_test_video_turning_after_the_given_frame(digits):
    cfg = folder_cfg(digits, "tiny")
    source = load_folder(cfg.world, cfg.text)
    pairs = source.edits["video", "test"]
    assert len(pairs) == source.count("video", "test") == source.count_edits("video")
    assert source.count_edits("image") == 0 and ("video", "val") not in source.edits
    assert torch.equal(pairs.source[:, 0], pairs.target[:, 0])  # the given frame is shared
    asked = directions(source, "test", edits=True)
    assert ink_directions(pairs.target.float() / 255, start=0) == asked  # it turns the asked way
    assert ink_directions(pairs.source.float() / 255, start=0) != asked  # the source does not
    assert [read_caption(c)[1] for c in pairs.captions] == asked
    assert class_indices(source, "video", "test", edits=True).tolist() == [
        r["digit"] for r in pairs.records
    ]


@pytest.mark.parametrize("direction", list(MOTION))
def test_a_turned_video_keeps_the_given_frames_and_then_moves_the_new_way(direction) -> None:
    scan = load_scans()[0][0]
    turns = [t for t in MOTION if MOTION[t][0] != 0 and MOTION[direction][0] == 0]
    turns += [t for t in MOTION if MOTION[t][1] != 0 and MOTION[direction][1] == 0]
    for turn in turns:
        for given in (1, 2):
            clip = turned_video(scan, 32, 4, direction, turn, given_frames=given)
            straight = digit_video(scan, 32, 4, direction)
            video = torch.stack([torch.from_numpy(np.array(f)) for f in clip]).permute(0, 3, 1, 2)
            shared = zip(clip[:given], straight[:given], strict=True)
            assert all(np.array_equal(a, b) for a, b in shared)
            assert ink_directions(video[None].float() / 255, start=given - 1) == [turn]
            assert len({f.tobytes() for f in clip}) == 4  # every frame moves (GIF keeps it)


def test_an_older_export_is_replaced_and_other_data_is_refused(
    tmp_path, digits, monkeypatch
) -> None:
    import nuwa_lab.world.digits as module

    small = lambda folder, **kw: export_digits(folder, limit=SCANS, **kw)  # noqa: E731
    monkeypatch.setattr(module, "export_digits", small)
    folder = tmp_path / "old"
    shutil.copytree(digits, folder)  # an export without a record: made before records existed
    (folder / "edits.jsonl").unlink()
    shutil.rmtree(folder / "edits")
    stale = folder / "videos" / "train_0000_sideways.gif"
    stale.write_bytes(b"GIF89a")
    assert ensure_digits(folder, image_size=16, frames=2) is True
    assert (folder / "edits.jsonl").is_file() and not stale.exists()
    lines = (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines()
    videos = [json.loads(x) for x in lines if ".gif" in x]
    assert len({(v["file"].split("_")[1], v["direction"]) for v in videos}) == len(videos)
    assert len(videos) == VIDEOS_PER_SCAN * (len(lines) - len(videos))  # this version's videos
    assert digits_exported(folder, image_size=16, frames=2)
    assert not digits_exported(folder, image_size=64, frames=2)  # another size: exported again
    assert ensure_digits(folder, image_size=16, frames=2) is False  # this version: kept
    other = tmp_path / "mine"
    other.mkdir()
    (other / "captions.jsonl").write_text('{"file": "cat.png", "caption": "a cat"}\n')
    with pytest.raises(ValueError, match="not an export of the digits"):
        ensure_digits(other, image_size=16, frames=2)
    assert (other / "captions.jsonl").is_file()


# ---- image pairs and the region ----


def test_the_region_is_where_the_pair_differs_grown_by_one_pixel() -> None:
    source = torch.full((3, 16, 16), 200, dtype=torch.uint8)
    target = source.clone()
    target[:, 4:8, 6:10] = 0
    target[0, 0, 0] = 200 - DIFFERENCE  # within the tolerance: not an edit
    region = difference_region(source, target)
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[3:9, 5:11] = True
    assert torch.equal(region, expected)


def test_an_image_pair_reads_with_its_region_given_or_found(editable) -> None:
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:16] = 255
    Image.fromarray(mask).save(editable / "mask.png")
    write_edits(editable, [IMAGE_PAIR, {**IMAGE_PAIR, "region": "mask.png", "split": "val"}])
    cfg = folder_cfg(editable, "tiny")
    source = load_folder(cfg.world, cfg.text)
    found, given = source.edits["image", "test"], source.edits["image", "val"]
    assert found.regions[0].sum() == 36 and found.regions[0][7:13, 7:13].all()
    assert given.regions[0][:16].all() and not given.regions[0][16:].any()
    items = source.task_items("ti2i", "test", 1)
    assert items["new_caption"] == ["a handwritten seven"]
    assert items["pixels"].shape == items["target"].shape == (1, 3, 32, 32)
    assert torch.equal(items["edit_region"], found.regions[:1])
    check_task(cfg.world, cfg.text, "ti2i")
    with pytest.raises(ValueError, match="not fine-tuned on a data folder.*zero-shot on the T2I"):
        task_pool("ti2i", cfg, None, split="train", size=1, model=None)


# ---- the measures' known answers ----


def test_the_target_scores_the_cap_and_the_source_does_not(digits) -> None:
    cfg = folder_cfg(digits)
    pairs = load_folder(cfg.world, cfg.text).edits["video", "test"]
    source, target = pairs.source.float() / 255, pairs.target.float() / 255
    labels = torch.full((len(pairs),), -1)
    asked = [r["direction"] for r in pairs.records]
    edit = dict(given_frames=[1] * len(pairs), directions=asked)
    best = manipulation_scores(None, target, source, target, labels, reconstruction=source, **edit)
    assert best["psnr_kept_db"] == best["psnr_edit_db"] == pytest.approx(PSNR_CAP_DB)
    assert best["acc_direction"] == 1.0 and best["acc_direction_n"] == len(pairs)
    assert best["kept_gap_db"] == 0 and "acc_class" not in best
    unedited = manipulation_scores(None, source, source, target, labels, **edit)
    assert unedited["acc_direction"] == 0.0 and unedited["psnr_edit_db"] < PSNR_CAP_DB
    unlabelled = manipulation_scores(None, target, source, target, labels, given_frames=edit[
        "given_frames"])  # fmt: skip
    assert unlabelled["acc_direction"] == 1.0  # read from the target's own motion
    image_source = source[:, 0]
    image_target = image_source.clone()
    image_target[:, :, 4:8, 4:8] = 0
    region = torch.zeros(len(pairs), 16, 16, dtype=torch.bool)
    region[:, 3:9, 3:9] = True
    ti2i = manipulation_scores(None, image_target, image_source, image_target, labels,
                               edit_region=region)  # fmt: skip
    assert ti2i["psnr_kept_db"] == ti2i["psnr_edit_db"] == pytest.approx(PSNR_CAP_DB)
    with pytest.raises(ValueError, match="exactly one"):
        manipulation_scores(None, target, source, target, labels)


# ---- malformed lines ----

BAD_LINES = [
    ("not json", "not a JSON line"),
    ({"source": "source.png", "caption": "a handwritten seven"}, "source, target and caption"),
    ({**IMAGE_PAIR, "caption": 7}, '"caption" must be the caption of the target'),
    ({**IMAGE_PAIR, "caption": "a handwritten giraffe"}, "words no caption of captions.jsonl"),
    ({**IMAGE_PAIR, "split": "train"}, "never trained on"),
    ({**IMAGE_PAIR, "target": "nowhere.png"}, '"target": \'nowhere.png\' not found'),
    ({**IMAGE_PAIR, "target": "source.png"}, "the edit region is empty"),
    ({**IMAGE_PAIR, "target": "videos"}, "frame folder holds no images"),
    ({**IMAGE_PAIR, "region": "nowhere.png"}, '"region": \'nowhere.png\' not found'),
    ({**IMAGE_PAIR, "given_frames": 1}, '"given_frames" is for video pairs'),
    ({**IMAGE_PAIR, "target": "{video}"}, "the source is an image but the target a video"),
    ({"source": "{video}", "target": "{video}", "caption": "a seven moves up", "given_frames": 4},
     '"given_frames" must be a whole number of frames in 1..3'),
    ({"source": "{video}", "target": "{video}", "caption": "a seven moves up", "region": "x.png"},
     '"region" is for image pairs'),
]  # fmt: skip


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_bad_line_is_an_error_naming_its_line_and_the_fix(editable, line, message) -> None:
    video = sorted(p.name for p in (editable / "videos").iterdir())[0]
    if isinstance(line, dict):
        line = {k: v.replace("{video}", f"videos/{video}") if isinstance(v, str) else v
                for k, v in line.items()}  # fmt: skip
    write_edits(editable, [IMAGE_PAIR, line])
    cfg = folder_cfg(editable, "tiny")
    with pytest.raises(ValueError, match="edits.jsonl:2: ") as caught:
        check_task(cfg.world, cfg.text, "ti2i")
    assert message in str(caught.value)


def test_a_bad_edit_line_stops_the_edit_tasks_not_training(editable) -> None:
    write_edits(editable, [IMAGE_PAIR, "not json"])
    cfg = folder_cfg(editable, "tiny")
    source = load_folder(cfg.world, cfg.text)  # reads captions.jsonl, not edits.jsonl
    for task in ("t2i", "t2v", "v2v", "i2i"):
        source.check(task)
    assert source.count("image", "train") > 0
    for task in ("ti2i", "tv2v"):
        with pytest.raises(ValueError, match="edits.jsonl:2: not a JSON line"):
            source.check(task)
    write_edits(editable, [IMAGE_PAIR])  # mended: the next load reads the pairs again
    assert load_folder(cfg.world, cfg.text).count_edits("image") == 1


def test_a_task_without_pairs_of_its_kind_says_what_the_folder_has(tmp_path, digits) -> None:
    cfg = folder_cfg(digits)
    pairs = len((digits / "edits.jsonl").read_text(encoding="utf-8").splitlines())
    with pytest.raises(
        ValueError, match=rf"TI2I needs image edit pairs: .* has 0 \(and {pairs} video"
    ):
        check_task(cfg.world, cfg.text, "ti2i")
    bare = tmp_path / "bare"
    shutil.copytree(digits, bare)
    (bare / "edits.jsonl").unlink()
    cfg = folder_cfg(bare)
    with pytest.raises(ValueError, match="TV2V needs edit pairs .* write them to .*edits.jsonl"):
        check_task(cfg.world, cfg.text, "tv2v")
