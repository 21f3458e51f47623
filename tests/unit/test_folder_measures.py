"""Measuring a data folder without world ground truth: its labels, the label probe trained on its
real scans, the ink's direction of motion, the tasks evaluated on it, and bad folders.

The folder is built here from scikit-learn's real handwritten digits (`export_digits`); everything
runs at the smoke preset with the artifacts in a temporary root. Known answers: a Fréchet distance
of a set with itself is 0, a perfect reconstruction or prediction scores the PSNR cap and the
probe's own accuracy, blobs moved one way are read moving that way.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nuwa_lab.__main__ import main
from nuwa_lab.config import make_config
from nuwa_lab.metrics import fid_if_cached, ink_centroids, ink_directions
from nuwa_lab.metrics import frechet as frechet_module
from nuwa_lab.metrics.label_probe import LabelProbe, class_accuracy
from nuwa_lab.recipes.cache import artifact_dir, get_or_train, load_meta
from nuwa_lab.recipes.finetune import pretrained_model
from nuwa_lab.recipes.kit import load_kit
from nuwa_lab.recipes.label_probe import labelled_pixels
from nuwa_lab.tasks import evaluate_task, folder_reconstruction
from nuwa_lab.tasks.folder_metrics import (
    completion_scores,
    label_frechet,
    prediction_scores,
    rate_scores,
    reconstruction_scores,
    text_to_video_scores,
)
from nuwa_lab.tasks.metrics import PSNR_CAP_DB
from nuwa_lab.world.digits import MOTION, digit_video, export_digits, load_scans
from nuwa_lab.world.labels import class_field, class_indices, class_names, directions
from nuwa_lab.world.source import load_folder

SCANS = 40  # digit scans per split: enough for a probe that reads well above chance


def folder_cfg(folder: Path, **overrides):
    return make_config(
        "smoke", **{"world.source": f"folder:{folder}", "device": "cpu"}, **overrides
    )


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    export_digits(folder, split="all", limit=SCANS)
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def probe_cfg(digits):
    """The smoke preset with a probe that trains long enough to learn the digits."""
    return folder_cfg(digits, **{"probe.steps": 150, "probe.batch_size": 32})


@pytest.fixture(scope="module")
def probe(probe_cfg, root) -> LabelProbe:
    return get_or_train("label_probe", probe_cfg, root=root, progress=False)


# ---- the folder's labels ----


def test_the_digits_classes_and_directions_come_from_their_records(digits) -> None:
    cfg = folder_cfg(digits)
    source = load_folder(cfg.world, cfg.text)
    assert class_field(source) == "digit"
    assert class_names(source) == tuple(str(d) for d in range(10))  # by value, not as text
    _, labels = load_scans()
    for kind in ("image", "video"):
        got = class_indices(source, kind, "test")
        files = source.files[kind, "test"]
        truth = [int(labels[int(Path(f).stem.split("_")[1])]) for f in files]
        assert got.tolist() == truth  # the index of "7" is 7
    moves = directions(source, "test")
    assert moves == [Path(f).stem.split("_")[2] for f in source.files["video", "test"]]


def test_a_label_field_wins_and_bad_values_are_named(tmp_path, digits) -> None:
    folder = tmp_path / "labelled"
    shutil.copytree(digits, folder)
    lines = [json.loads(x) for x in (folder / "captions.jsonl").read_text().splitlines()]
    for i, line in enumerate(lines):
        line["label"] = "odd" if line["digit"] % 2 else "even"
        if i == 1:
            line["direction"] = "north"
    (folder / "captions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = folder_cfg(folder)
    source = load_folder(cfg.world, cfg.text)
    assert class_field(source) == "label" and class_names(source) == ("even", "odd")
    with pytest.raises(ValueError, match="has direction 'north'; a direction is one of left"):
        directions(source, "train")
    lines[0]["label"] = [1, 2]
    (folder / "captions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    source = load_folder(cfg.world, cfg.text)
    with pytest.raises(ValueError, match="a class must be a string or an integer"):
        class_names(source)


# ---- the ink's motion ----


def blob_video(direction: str, *, frames: int = 4, size: int = 16, paper=1.0, ink=(0.1, 0.2, 0.9)):
    """A 4x4 blob of `ink` on `paper`, moving 2 px per frame `direction` (or standing still)."""
    dx, dy = MOTION.get(direction, (0, 0))
    video = torch.full((frames, 3, size, size), float(paper))
    for t in range(frames):
        x, y = 6 + 2 * dx * t, 6 + 2 * dy * t
        video[t, :, y : y + 4, x : x + 4] = torch.tensor(ink)[:, None, None]
    return video


@pytest.mark.parametrize("paper", [1.0, 0.0])
def test_ink_moving_each_way_is_read_moving_that_way(paper) -> None:
    names = ["left", "right", "up", "down", "still"]
    videos = torch.stack([blob_video(n, paper=paper) for n in names])
    assert ink_directions(videos) == names
    centres = ink_centroids(videos)  # (5, 4, 2): the blob's centre, 7.5 at rest
    assert centres[4].tolist() == [[7.5, 7.5]] * 4
    assert centres[0, :, 0].tolist() == [7.5, 5.5, 3.5, 1.5]  # x falls: left
    assert ink_directions(videos, start=2) == names  # from a later frame, the same
    blank = torch.full((1, 2, 3, 16, 16), paper)
    assert ink_directions(blank) == ["none"]  # no ink, no direction
    with pytest.raises(ValueError, match="from a frame before the last"):
        ink_directions(videos, start=3)


def test_real_digit_videos_are_read_moving_the_way_their_captions_say() -> None:
    scans, _ = load_scans()
    names = list(MOTION)
    clips = [digit_video(scans[i], 32, 4, names[i % 4]) for i in range(40)]
    videos = torch.stack(
        [torch.stack([torch.from_numpy(np.array(f)).permute(2, 0, 1) for f in c]) for c in clips]
    )
    assert ink_directions(videos.float() / 255) == [names[i % 4] for i in range(40)]


# ---- the label probe ----


def test_the_probe_learns_the_real_digits_and_its_key_holds_the_folder(
    digits, probe, probe_cfg, root, tmp_path
) -> None:
    scores = load_meta("label_probe", probe_cfg, root=root)["metrics"]
    assert scores["test_acc_images_n"] == SCANS and scores["chance"] == 0.1
    # unseen real scans, ten classes: well above chance, and the interval says so
    assert scores["test_acc_images"] >= 0.5 and scores["test_acc_images_low"] > 0.1
    assert (
        scores["test_acc_images_low"] <= scores["test_acc_images"] <= scores["test_acc_images_high"]
    )
    # the key holds the folder's content hash: the same path with other bytes, another probe
    copy = tmp_path / "copy"
    shutil.copytree(digits, copy)
    cfg = folder_cfg(copy, **{"probe.steps": 150, "probe.batch_size": 32})
    kinds = ("label_probe", "probe", "video_probe")  # the world's probes depend on the world too
    before = {kind: artifact_dir(kind, cfg, root=root) for kind in kinds}
    for kind in (*kinds, "vqgan", "nuwa"):  # the same bytes elsewhere: the same artifacts
        assert artifact_dir(kind, cfg, root=root) == artifact_dir(kind, probe_cfg, root=root)
    image = sorted((copy / "images").iterdir())[0]
    Image.open(image).rotate(90).save(image)
    for kind in kinds:
        assert artifact_dir(kind, cfg, root=root) != before[kind]
    again = get_or_train("label_probe", probe_cfg, root=root, progress=False)  # loaded
    assert again.classes == probe.classes


def test_the_probe_trains_on_images_and_every_video_frame(digits) -> None:
    cfg = folder_cfg(digits)
    source = load_folder(cfg.world, cfg.text)
    pixels, labels = labelled_pixels(source, "train")
    images, videos = source.count("image", "train"), source.count("video", "train")
    assert len(pixels) == images + cfg.world.frames * videos == len(labels)
    assert labels[images : images + cfg.world.frames].unique().numel() == 1  # one video, one class


def test_a_perfect_reconstruction_scores_the_cap_and_the_probes_own_accuracy(
    probe, probe_cfg
) -> None:
    source = load_folder(probe_cfg.world, probe_cfg.text)
    originals = source.pixels["image", "test"].float() / 255
    labels = class_indices(source, "image", "test")
    scores = reconstruction_scores(probe, originals.clone(), originals, labels)
    assert scores["psnr_db"] == pytest.approx(PSNR_CAP_DB) and scores["ssim"] == pytest.approx(1)
    assert scores["acc_class_recon"] == scores["acc_class_originals"] >= 0.5
    assert scores["label_fid"] == pytest.approx(0, abs=1e-6)  # a set with itself
    noise = torch.randn(originals.shape, generator=torch.Generator().manual_seed(0))
    noisy = (originals + 0.3 * noise).clamp(0, 1)
    worse = reconstruction_scores(probe, noisy, originals, labels)
    assert worse["psnr_db"] < 20 and worse["label_fid"] > scores["label_fid"] + 1e-3
    assert worse["label_fid_low"] <= worse["label_fid"] <= worse["label_fid_high"]


def test_class_accuracy_counts_only_labelled_samples() -> None:
    probe = LabelProbe(classes=("a", "b"), channels=4)
    x = torch.rand(6, 3, 16, 16)
    read = probe.predict(x)
    labels = torch.tensor([int(read[0]), 1 - int(read[1]), -1, -1, int(read[4]), int(read[5])])
    scores = class_accuracy(probe, x, labels)
    assert scores["acc_n"] == 4 and scores["acc"] == 0.75
    assert 0 < scores["acc_low"] < 0.75 < scores["acc_high"] <= 1
    assert math.isnan(class_accuracy(probe, x, torch.full((6,), -1))["acc"])
    assert rate_scores([True, None, False], "r")["r_n"] == 2


def test_the_label_probe_needs_a_folder_with_classes(tmp_path, digits) -> None:
    with pytest.raises(ValueError, match="reads a data folder's own classes"):
        get_or_train("label_probe", make_config("smoke", device="cpu"), root=tmp_path)
    bare = tmp_path / "bare"
    shutil.copytree(digits, bare)
    lines = [json.loads(x) for x in (bare / "captions.jsonl").read_text().splitlines()]
    kept = [{"file": x["file"], "caption": x["caption"]} for x in lines]
    (bare / "captions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in kept))
    with pytest.raises(ValueError, match="needs a class per entry .* has none; add the field"):
        get_or_train("label_probe", folder_cfg(bare), root=tmp_path, progress=False)


def test_fid_is_computed_only_from_cached_inception_weights(tmp_path, monkeypatch) -> None:
    from torchvision.models import inception_v3

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    x = torch.rand(4, 3, 16, 16)
    value, backbone = fid_if_cached(x[:2], x[2:])
    assert math.isnan(value) and backbone.startswith("unavailable: ImageNet Inception-v3")
    path = frechet_module.inception_weights_path()
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    value, backbone = fid_if_cached(x[:2], x[:2], dims=64)
    assert value == pytest.approx(0, abs=1e-6) and backbone.startswith("inception_v3 (ImageNet")


# ---- known answers of the task measures ----


def test_the_truth_itself_scores_perfectly_on_every_video_measure(probe, probe_cfg) -> None:
    source = load_folder(probe_cfg.world, probe_cfg.text)
    truth = source.pixels["video", "test"].float() / 255
    labels = class_indices(source, "video", "test")
    moves = directions(source, "test")
    t2v = text_to_video_scores(probe, truth, labels, moves, real=truth)
    assert t2v["acc_direction"] == 1.0 and t2v["acc_direction_real"] == 1.0
    # an 8-pixel digit on a 16-pixel canvas, a probe of 150 steps: above chance (0.1), not perfect
    assert t2v["acc_all"] == t2v["acc_class"] and t2v["acc_class_low"] > 0.1
    assert t2v["label_fid_frames"] == pytest.approx(0, abs=1e-6)
    wrong = [{"left": "right", "right": "left", "up": "down", "down": "up"}[m] for m in moves]
    assert text_to_video_scores(probe, truth, labels, wrong)["acc_direction"] == 0.0
    v2v = prediction_scores(probe, truth, truth, 1, labels)
    assert v2v["psnr_db"] == pytest.approx(PSNR_CAP_DB) and v2v["acc_direction"] == 1.0
    assert v2v["psnr_gain_db"] > 0 and v2v["psnr_gain_db_low"] > 0  # copy-last is worse
    still = truth[:, :1].expand_as(truth)  # the first frame held: no motion predicted
    assert prediction_scores(probe, still, truth, 1, labels)["acc_direction"] == 0.0
    images = source.pixels["image", "test"].float() / 255
    visible = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool)
    visible[..., : images.shape[-1] // 2] = True
    i2i = completion_scores(probe, images, images, visible, class_indices(source, "image", "test"))
    assert i2i["psnr_hidden_db"] == pytest.approx(PSNR_CAP_DB)


def test_label_frechet_of_a_set_with_itself_is_zero(probe, probe_cfg) -> None:
    source = load_folder(probe_cfg.world, probe_cfg.text)
    x = source.pixels["image", "test"][:30].float() / 255
    same = label_frechet(probe, x, x, "fd")
    assert same["fd"] == pytest.approx(0, abs=1e-6) and same["fd_low"] >= 0
    other = label_frechet(probe, x, source.pixels["image", "train"][:30].float() / 255, "fd")
    blank = label_frechet(probe, x, torch.ones_like(x) + 0.01 * torch.rand_like(x) - 0.01, "fd")
    assert 0 < other["fd"] < blank["fd"]  # other real digits are closer than blank paper


# ---- the tasks on a folder, end to end ----


@pytest.mark.parametrize("task", ["t2i", "t2v", "v2v", "i2i", "tv2v"])
def test_the_tasks_run_and_are_measured_on_the_real_digits(task, probe, probe_cfg, root) -> None:
    cfg = probe_cfg
    kit = load_kit(cfg, task, root=root, progress=False)
    assert kit.folder is not None and kit.label_probe is not None and kit.probe is None
    model = pretrained_model(cfg, root=root, progress=False)
    ev = evaluate_task(task, model, kit, n=3)
    m = ev.metrics
    assert m["n_items"] == 3 and ev.output.pixels.shape == ev.inputs["pixels"].shape
    if task in ("t2i", "t2v"):
        assert 0 <= m["acc_class_low"] <= m["acc_class"] <= m["acc_class_high"] <= 1
        assert m["acc_class_n"] == 3
    if task == "t2i":
        assert m["label_fid"] >= 0
    if task == "t2v":
        assert {"acc_direction", "acc_all", "label_fid_frames"} <= set(m)
        assert m["acc_direction_real"] == 1.0  # the instrument reads the true videos right
    if task == "v2v":
        assert m["given_tokens_kept"] == 1.0 and m["psnr_db_low"] <= m["psnr_db"]
        assert "psnr_copy_last_frame1_db" in m and "acc_direction" in m
    if task == "i2i":
        assert m["given_tokens_kept"] == 1.0 and m["psnr_hidden_db"] < PSNR_CAP_DB
    if task == "tv2v":  # the digits' edit pairs: the given frame kept, the turn asked
        assert m["given_tokens_kept"] == 1.0 and m["acc_direction_n"] == 3
        assert m["kept_gap_db_low"] <= m["kept_gap_db"] <= m["kept_gap_db_high"]
        assert re.match(r"an? \w+ moves", ev.inputs["new_caption"][0]) and m["acc_class_n"] == 3


def test_ti2i_runs_on_an_image_pair_of_the_folder(probe_cfg, probe, root, tmp_path) -> None:
    folder = tmp_path / "with_image_pairs"  # the same content hash: the same artifacts
    shutil.copytree(probe_cfg.world.source.removeprefix("folder:"), folder)
    first = sorted((folder / "images").iterdir())[0]
    pixels = np.asarray(Image.open(first).convert("RGB")).copy()
    pixels[:16] = 255  # the top half's ink rubbed out
    Image.fromarray(pixels).save(folder / "edited.png")
    pair = {"source": f"images/{first.name}", "target": "edited.png",
            "caption": "a handwritten seven", "digit": 7}  # fmt: skip
    (folder / "edits.jsonl").write_text(json.dumps(pair) + "\n")
    cfg = folder_cfg(folder, **{"probe.steps": 150, "probe.batch_size": 32})
    assert artifact_dir("label_probe", cfg, root=root) == artifact_dir("label_probe", probe_cfg,
                                                                       root=root)  # fmt: skip
    kit = load_kit(cfg, "ti2i", root=root, progress=False)
    ev = evaluate_task("ti2i", pretrained_model(cfg, root=root, progress=False), kit, n=4)
    m = ev.metrics
    assert m["n_items"] == 1 and ev.output.pixels.shape == (1, 3, 16, 16)
    assert m["acc_class_n"] == 1 and "acc_direction" not in m
    assert {"psnr_kept_db", "psnr_kept_tokenizer_db", "kept_gap_db", "psnr_edit_db"} <= set(m)


def test_the_tokenizer_is_measured_on_the_folders_test_pictures(probe_cfg, probe, root) -> None:
    kit = load_kit(probe_cfg, "t2i", root=root, progress=False)
    scores, originals, recon = folder_reconstruction(kit, lpips=True)
    assert scores["n_pictures"] == min(SCANS, probe_cfg.tokenizer.eval_samples) == len(originals)
    assert originals.shape == recon.shape and scores["kind"] == "image"
    assert scores["psnr_db_low"] <= scores["psnr_db"] <= scores["psnr_db_high"]
    assert "lpips" in scores and "ImageNet" in scores["lpips_backbone"]
    assert {"acc_class_recon", "acc_class_originals", "label_fid"} <= set(scores)


def test_a_task_the_folder_lacks_the_data_of_is_a_clear_error(probe_cfg, root, tmp_path) -> None:
    kit = load_kit(probe_cfg, "t2i", root=root, progress=False)
    model = pretrained_model(probe_cfg, root=root, progress=False)
    for task, message in (
        ("ti2i", "TI2I needs image edit pairs"),
        ("s2i", "S2I needs segmentation maps: none found in"),
    ):
        with pytest.raises(ValueError, match=message):
            evaluate_task(task, model, kit, n=2)
        with pytest.raises(ValueError, match=message):
            load_kit(probe_cfg, task, root=root, progress=False)
    unlabelled = load_kit(probe_cfg, "t2i", root=root, progress=False, probes=False)
    with pytest.raises(ValueError, match="T2I on a data folder is measured by the label probe"):
        evaluate_task("t2i", model, unlabelled, n=2)


# ---- bad entries: raise, or skip with a count ----


@pytest.fixture
def damaged(tmp_path, digits) -> Path:
    """The digits with one unreadable image and one missing file."""
    folder = tmp_path / "damaged"
    shutil.copytree(digits, folder)
    images = sorted((folder / "images").iterdir())
    images[0].write_bytes(b"not a png at all")
    images[1].unlink()
    return folder


def test_bad_entries_raise_or_are_skipped_with_a_count(damaged) -> None:
    with pytest.raises(
        ValueError, match=r"captions.jsonl:\d+: .*unreadable image.*on_error='skip'"
    ):
        cfg = folder_cfg(damaged)
        load_folder(cfg.world, cfg.text)
    cfg = folder_cfg(damaged, **{"world.on_error": "skip"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = load_folder(cfg.world, cfg.text)
    said = " ".join(str(w.message) for w in caught)
    assert "skipped 2 of" in said and "1 unreadable image" in said and "1 missing file" in said
    assert source.skipped == 2 and "2 bad entries skipped" in source.summary()
    assert source.count("image") == 2 * SCANS - 2 and source.count("video") == 2 * SCANS
    for key, files in source.files.items():  # each record stays beside its own pixels
        assert [r["file"] for r in source.records[key]] == files
    with pytest.raises(ValueError, match="world.on_error = 'maybe'"):
        folder_cfg(damaged, **{"world.on_error": "maybe"})


def test_the_train_command_skips_bad_entries_when_asked(damaged, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(tmp_path / "artifacts"))
    args = ["train", "--data", str(damaged), "--preset", "smoke", "--device", "cpu", "--quiet"]
    with pytest.raises(SystemExit, match="unreadable image.*on the command line: --on-error skip"):
        main(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args, "--on-error", "skip", "--set", "train.steps=1"]) == 0
    out = capsys.readouterr().out
    assert "2 bad entries skipped (--on-error skip" in out
    assert "label probe (10 classes of the field 'digit')" in out
    assert "the label probe reads the test pictures right" in out
