"""`world.source = "folder:PATH"`: the recipes train on a folder of real images and videos.

The folder is built here from real pictures: scikit-learn's handwritten digit scans
(`export_digits`, a few per split) and matplotlib's bundled sample photos. Everything runs at the
smoke preset, with the artifacts in a temporary root.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import matplotlib.cbook
import pytest
import torch
from PIL import Image

from nuwa_lab.__main__ import main
from nuwa_lab.config import make_config
from nuwa_lab.recipes.cache import artifact_dir, get_or_train, load_meta
from nuwa_lab.recipes.finetune import finetune
from nuwa_lab.recipes.pretrain import pretrain, token_data
from nuwa_lab.recipes.tokenizers import training_batch
from nuwa_lab.world import ShapesWorld, TextTokenizer
from nuwa_lab.world.digits import export_digits
from nuwa_lab.world.source import (
    check_task,
    content_hash,
    data_source,
    load_folder,
    source_fingerprint,
    split_rows,
    text_tokenizer,
)

PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def add_photos(folder: Path) -> None:
    """Copy matplotlib's sample photos into `folder` and caption them (no split field: train)."""
    (folder / "photos").mkdir(exist_ok=True)
    lines = []
    for name in PHOTOS:
        shutil.copy(matplotlib.cbook.get_sample_data(name, asfileobj=False), folder / "photos")
        lines.append({"file": f"photos/{name}", "caption": f"a photo named {name.split('.')[0]}"})
    with open(folder / "captions.jsonl", "a", encoding="utf-8") as index:
        index.writelines(json.dumps(line) + "\n" for line in lines)


def folder_cfg(folder: Path, **overrides):
    return make_config(
        "smoke", **{"world.source": f"folder:{folder}", "device": "cpu"}, **overrides
    )


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """Six train and six test digit scans (an image and a GIF video each) and two photos."""
    folder = tmp_path_factory.mktemp("digits")
    export_digits(folder, split="all", limit=6)
    add_photos(folder)
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


def test_the_switch_is_checked_like_every_config_value() -> None:
    assert make_config("smoke").world.source == "shapes"
    assert make_config("smoke", **{"world.source": "folder:data/x"}).world.source == "folder:data/x"
    for bad in ("folder:", "folder:  ", "digits", "Shapes"):
        with pytest.raises(ValueError, match='world.source = .*must be "shapes" or "folder:"'):
            make_config("smoke", **{"world.source": bad})


def test_the_shapes_world_is_what_it_was() -> None:
    cfg = make_config("smoke")
    assert source_fingerprint(cfg.world) == {}  # artifact hashes: the config alone
    assert isinstance(data_source(cfg.world, cfg.text), ShapesWorld)
    assert text_tokenizer(cfg.world, cfg.text).itos == (
        TextTokenizer.from_config(cfg.world, cfg.text).itos
    )
    check_task(cfg.world, cfg.text, "s2i")  # the world has every task's data


def test_the_split_field_is_honoured_and_a_missing_split_is_carved_from_train(digits) -> None:
    cfg = folder_cfg(digits)
    source = load_folder(cfg.world, cfg.text)
    assert source.count("image", "test") == 6 and source.count("video", "test") == 6
    # 6 train scans + 2 photos; no entry says "val": a tenth of train (at least one) becomes val
    assert source.count("image", "train") + source.count("image", "val") == 8
    assert source.count("image", "val") == 1 and source.count("video", "val") == 1
    every = [f for (kind, _), files in source.files.items() if kind == "image" for f in files]
    assert sorted(every) == sorted(set(every)) and len(every) == 14
    assert source.pixels["image", "train"].shape[1:] == (3, 16, 16)  # smoke: 16 px
    assert source.pixels["video", "train"].shape[1:] == (2, 3, 16, 16)  # smoke: 2 frames
    # the carve depends on file names, not on line order
    names = [f"images/{i}.png" for i in range(20)]
    carved = split_rows(names, [None] * 20)
    again = split_rows(names[::-1], [None] * 20)
    assert {names[i] for i in carved["val"]} == {names[::-1][i] for i in again["val"]}
    assert len(carved["test"]) == len(carved["val"]) == 2


def test_the_vocabulary_is_the_folders_captions(digits) -> None:
    cfg = folder_cfg(digits)
    tok = text_tokenizer(cfg.world, cfg.text)
    assert {"handwritten", "moves", "photo", "hopper"} <= set(tok.itos)
    tok.encode_batch(load_folder(cfg.world, cfg.text).captions["image", "train"])
    assert tok.unknown_count == 0


def test_the_tokenizer_trains_on_the_folders_pictures(digits, root) -> None:
    cfg = folder_cfg(digits)
    source = load_folder(cfg.world, cfg.text)
    batch = training_batch(source, 0, 0, 8)
    pool = (
        torch.cat(
            [source.pixels["image", "train"], source.pixels["video", "train"].flatten(0, 1)]
        ).float()
        / 255
    )
    for picture in batch:  # every picture of a batch is a train image or a train video frame
        assert (pool - picture).abs().flatten(1).amax(1).min() == 0
    get_or_train("vqgan", cfg, root=root, progress=False)
    meta = load_meta("vqgan", cfg, root=root)
    assert meta["sections"]["world.source content"] == content_hash(digits)
    assert 0 < meta["metrics"]["val_psnr_db"] < 100
    with pytest.raises(ValueError, match="VQ-GAN-Seg needs segmentation maps: none found in"):
        training_batch(source, 0, 0, 8, sketch=True)


def test_pretraining_and_finetuning_train_on_the_folder(digits, root) -> None:
    cfg = folder_cfg(digits)
    model = get_or_train("nuwa", cfg, root=root, progress=False)
    vocab = text_tokenizer(cfg.world, cfg.text).vocab_size  # the folder's words, not the grammar's
    assert model.condition_embedding.text.num_embeddings == vocab
    metrics = load_meta("nuwa", cfg, root=root)["metrics"]
    for task in ("t2i", "t2v", "v2v"):
        assert 0 < metrics[f"val_nll_{task}"] < 10
    data = token_data(cfg, "train", cfg.pretrain.pool, root=root, progress=False)
    assert (data.count("t2i"), data.count("t2v")) == (7, 5)  # all of the train split
    # I2I's items come from the folder's images, with a half or a quadrant hidden
    _, scores = finetune("i2i", cfg, root=root, progress=False, max_steps=1)
    assert 0 < scores["val_loss_finetuned"] < 10


def test_a_changed_folder_has_another_hash_and_retrains(tmp_path) -> None:
    folder = tmp_path / "data"
    export_digits(folder, split="train", limit=3)
    cfg = folder_cfg(folder)
    before, dir_before = content_hash(folder), artifact_dir("vqvae", cfg, root=tmp_path)
    image = folder / "images" / sorted(os.listdir(folder / "images"))[0]
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    assert content_hash(folder) == before
    get_or_train("vqvae", cfg, root=tmp_path, progress=False)
    picture = Image.open(image).convert("RGB")
    picture.paste((255, 0, 0), (0, 0, 4, 4))  # a red corner: new bytes
    picture.save(image)
    assert content_hash(folder) != before
    dir_after = artifact_dir("vqvae", cfg, root=tmp_path)
    assert dir_after != dir_before and not (dir_after / "meta.json").exists()
    get_or_train("vqvae", cfg, root=tmp_path, progress=False)
    assert (dir_after / "meta.json").exists() and (dir_before / "meta.json").exists()


@pytest.fixture
def photos_only(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    add_photos(folder)
    export_digits(tmp_path / "d", split="train", limit=2)  # two more real images, no videos
    for line in (tmp_path / "d" / "captions.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["file"].startswith("images/"):
            (folder / "images").mkdir(exist_ok=True)
            shutil.copy(tmp_path / "d" / entry["file"], folder / entry["file"])
            with open(folder / "captions.jsonl", "a") as index:
                index.write(json.dumps({"file": entry["file"], "caption": entry["caption"]}) + "\n")
    return folder


def test_missing_data_is_a_clear_error_naming_the_task(photos_only, tmp_path) -> None:
    cfg = folder_cfg(photos_only)
    with pytest.raises(
        ValueError, match=f"S2I needs segmentation maps: none found in {photos_only}"
    ):
        check_task(cfg.world, cfg.text, "s2i")
    with pytest.raises(ValueError, match="TV2V needs edit pairs"):
        check_task(cfg.world, cfg.text, "tv2v")
    with pytest.raises(ValueError, match=f"T2V needs captioned videos: {photos_only} has 0"):
        check_task(cfg.world, cfg.text, "t2v")
    with pytest.raises(ValueError, match="V2V needs videos: .* has 0; leave V2V out of train"):
        pretrain(cfg, root=tmp_path / "artifacts", progress=False)  # the default mix has V2V
    with pytest.raises(ValueError, match="S2V needs segmentation maps"):
        finetune("s2v", cfg, root=tmp_path / "artifacts", progress=False)
    assert not (tmp_path / "artifacts").exists()  # nothing was trained before the error


def test_malformed_folders_give_clear_errors(tmp_path, digits) -> None:
    with pytest.raises(FileNotFoundError, match="which does not exist"):
        load_folder(folder_cfg(tmp_path / "nowhere").world, make_config("smoke").text)
    with pytest.raises(FileNotFoundError, match="captions.jsonl not found"):
        content_hash(tmp_path)
    with pytest.raises(SystemExit, match="error: .*captions.jsonl not found"):  # the command line
        main(["train", "--data", str(tmp_path), "--preset", "smoke", "--quiet"])
    bad = tmp_path / "bad"
    shutil.copytree(digits, bad)
    lines = (bad / "captions.jsonl").read_text().splitlines()
    entry = json.loads(lines[2]) | {"split": "validation"}
    (bad / "captions.jsonl").write_text("\n".join([*lines[:2], json.dumps(entry), *lines[3:]]))
    cfg = folder_cfg(bad)
    with pytest.raises(ValueError, match=r"captions.jsonl:3: 'split' must be one of train, val"):
        load_folder(cfg.world, cfg.text)
    (bad / "captions.jsonl").write_text("\n".join([*lines[:4], "{not json", *lines[5:]]))
    with pytest.raises(ValueError, match=r"captions.jsonl:5: not valid JSON"):
        load_folder(cfg.world, cfg.text)


def test_the_train_command_exports_and_trains_on_a_folder(tmp_path, monkeypatch, capsys) -> None:
    import nuwa_lab.lab.train_cli as cli

    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(tmp_path / "artifacts"))
    small = lambda folder, **kw: export_digits(folder, split="all", limit=3)  # noqa: E731
    monkeypatch.setattr(cli, "ensure_digits", small)
    folder = tmp_path / "digits"
    args = ["train", "--data", str(folder), "--preset", "smoke", "--device", "cpu", "--quiet"]
    assert main([*args, "--export-digits"]) == 0
    out = capsys.readouterr().out
    assert "exporting scikit-learn's handwritten digits" in out
    assert "PSNR" in out and "t2i" in out and "t2v" in out and "v2v" in out
    assert str(tmp_path / "artifacts" / "nuwa-") in out
    assert "classes of the field 'digit')" in out  # the label probe
    assert main(args) == 0  # unchanged folder: the tokenizer, the label probe and the model load
    assert capsys.readouterr().out.count("loaded from the cache") == 3


def test_the_train_command_on_a_folder_without_videos_trains_t2i_only(
    photos_only, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(tmp_path / "artifacts"))
    args = ["train", "--data", str(photos_only), "--preset", "smoke", "--device", "cpu"]
    assert main([*args, "--quiet", "--set", "train.steps=2"]) == 0
    out = capsys.readouterr().out
    assert "task mix: t2i (t2v, v2v left out: no data)" in out
    assert "validation NLL per task" in out and "t2v" not in out.split("NLL")[1]
