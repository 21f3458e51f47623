"""The probes: shapes, targets, the accuracy rules, learning, training through the cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.metrics import (
    ImageProbe,
    Segmenter,
    VideoProbe,
    attribute_accuracy,
    lab_fid,
    lab_fvd,
    pixel_accuracy,
)
from nuwa_lab.metrics.probe import canonical_order
from nuwa_lab.recipes.cache import get_or_train, load_meta
from nuwa_lab.world import ObjectAttributes, ShapesWorld


@pytest.fixture(scope="module")
def cfg():
    return make_config("smoke", device="cpu")


def test_probe_outputs_have_one_head_per_attribute_and_slot(cfg):
    world = ShapesWorld(cfg.world)
    images, videos = world.images(range(3)), world.videos(range(3))
    probe, video_probe = (
        ImageProbe(world=cfg.world, channels=4),
        VideoProbe(world=cfg.world, channels=4),
    )
    logits = probe(images.pixels)
    assert {a: tuple(v.shape) for a, v in logits.items()} == {
        "shape": (3, 1, 5),
        "colour": (3, 1, 7),
        "size": (3, 1, 3),
        "position": (3, 1, 10),
    }
    assert video_probe(videos.pixels)["direction"].shape == (3, 1, 5)
    assert probe.features(images.pixels).shape == (3, 32)
    with pytest.raises(ValueError, match="VideoProbe reads videos"):
        video_probe(images.pixels)
    segmenter = Segmenter(world=cfg.world, channels=4)
    assert segmenter(images.pixels).shape == (3, 5, 16, 16)
    assert segmenter.predict(videos.pixels).shape == videos.sketch.shape


def test_targets_follow_the_canonical_slot_order_with_absent_slots():
    world_cfg = make_config("smoke", **{"world.max_objects": 3}).world
    probe = ImageProbe(world=world_cfg, channels=4)
    a = ObjectAttributes("square", "blue", "large", "bottom right", 14.0, 14.0)
    b = ObjectAttributes("circle", "red", "small", "top left", 2.0, 2.0)
    assert canonical_order([a, b]) == [b, a]
    y = probe.targets([[a, b]])  # (1, 3 slots, 4 attributes)
    assert y[0, 0].tolist() == [0, 0, 0, 0]  # circle red small "top left"
    assert y[0, 1].tolist() == [1, 2, 1, 8]  # square blue large "bottom right"
    assert y[0, 2].tolist() == [4, 6, 2, 9]  # absent: index n_classes in every head


class _FixedReader:
    """A stand-in probe whose readings are given, to test the scoring rules exactly."""

    classes = {"shape": (), "colour": (), "size": (), "position": ()}

    def __init__(self, readings):
        self.readings = readings

    def read(self, pixels, batch_size=256):
        return self.readings


def _obj(shape, colour, size="small", position="center"):
    return ObjectAttributes(shape, colour, size, position, 8.0, 8.0)


def test_attribute_accuracy_scores_each_attribute_and_all():
    asked = [_obj("circle", "red"), _obj("square", "blue"), _obj("circle", "green")]
    read = [
        [{"shape": "circle", "colour": "red", "size": "small", "position": "center"}],
        [{"shape": "circle", "colour": "blue", "size": "small", "position": "center"}],
        [{"shape": "circle", "colour": "green", "size": "large", "position": "left"}],
    ]
    acc = attribute_accuracy(_FixedReader(read), torch.zeros(3, 3, 16, 16), asked)
    assert acc == {"shape": 2 / 3, "colour": 1.0, "size": 2 / 3, "position": 2 / 3, "all": 1 / 3}


def test_attribute_accuracy_matches_sets_and_checks_binding():
    asked = [[_obj("circle", "red", position="left"), _obj("square", "blue", position="right")]]
    same_swapped = [
        [
            {"shape": "square", "colour": "blue", "size": "small", "position": "right"},
            {"shape": "circle", "colour": "red", "size": "small", "position": "left"},
        ]
    ]
    rebound = [
        [
            {"shape": "circle", "colour": "blue", "size": "small", "position": "left"},
            {"shape": "square", "colour": "red", "size": "small", "position": "right"},
        ]
    ]
    missing = [same_swapped[0][:1]]
    pixels = torch.zeros(1, 3, 16, 16)
    assert attribute_accuracy(_FixedReader(same_swapped), pixels, asked)["all"] == 1.0
    rebound_acc = attribute_accuracy(_FixedReader(rebound), pixels, asked)
    assert rebound_acc["shape"] == rebound_acc["colour"] == 1.0 and rebound_acc["all"] == 0.0
    assert attribute_accuracy(_FixedReader(missing), pixels, asked) == dict.fromkeys(
        ["shape", "colour", "size", "position", "all"], 0.0
    )
    # an asked object may name only some attributes (a parsed caption): the rest are not checked
    partial = attribute_accuracy(
        _FixedReader(same_swapped), pixels, [[{"shape": "circle"}, {"colour": "blue"}]]
    )
    assert partial["all"] == 1.0


def test_pixel_accuracy_of_known_maps():
    target = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 0]])
    assert pixel_accuracy(pred, target) == 6 / 8
    assert pixel_accuracy(pred, target, ignore_background=True) == 3 / 4
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_accuracy(pred[0], target)


def test_image_probe_learns_to_read_a_fixed_batch(cfg):
    torch.manual_seed(0)
    batch = ShapesWorld(cfg.world).images(range(24))
    probe = ImageProbe(world=cfg.world, channels=8)
    targets = probe.targets(batch.objects)
    opt = torch.optim.Adam(probe.parameters(), lr=3e-3)
    before = attribute_accuracy(probe, batch.pixels, batch.objects)["all"]
    for _ in range(40):
        loss, _ = probe.loss(batch.pixels, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = attribute_accuracy(probe, batch.pixels, batch.objects)
    assert before < 0.2 and after["all"] == 1.0, after


def test_probes_train_through_the_loop_and_the_cache(cfg, tmp_path):
    probe = get_or_train("probe", cfg, root=tmp_path, progress=False)
    assert isinstance(probe, ImageProbe) and not probe.training
    folder = next(tmp_path.glob("probe-*"))
    assert (folder / "train" / "checkpoint.pt").is_file()  # nuwa_lab.train.loop wrote checkpoints
    meta = load_meta("probe", cfg, root=tmp_path)
    expected = {
        f"{s}/{a}"
        for s in ("test", "held_out", "noise")
        for a in ("shape", "colour", "size", "position", "all")
    }
    assert expected <= set(meta["metrics"])
    again = get_or_train("probe", cfg, root=tmp_path, progress=False)
    assert all(
        torch.equal(p, q) for p, q in zip(probe.parameters(), again.parameters(), strict=True)
    )
    # the probe is an instrument: the experiment seed and the NÜWA training config do not matter
    other = dataclasses.replace(cfg, seed=5, train=dataclasses.replace(cfg.train, lr=0.5))
    assert get_or_train("probe", other, root=tmp_path, progress=False) is not None
    assert len(list(tmp_path.glob("probe-*"))) == 1


def test_lab_fid_and_fvd_use_probe_features(cfg):
    world = ShapesWorld(cfg.world)
    probe = ImageProbe(world=cfg.world, channels=4)
    video_probe = VideoProbe(world=cfg.world, channels=4)
    a, b = world.images(range(40)), world.images(range(40, 80))
    assert lab_fid(probe, a.pixels, a.pixels) == pytest.approx(0.0, abs=1e-6)
    assert lab_fid(probe, a.pixels, torch.rand_like(b.pixels)) > lab_fid(probe, a.pixels, b.pixels)
    va, vb = world.videos(range(40)), world.videos(range(40, 80))
    assert lab_fvd(video_probe, va.pixels, vb.pixels) >= 0
    with pytest.raises(ValueError, match="lab_fvd takes videos"):
        lab_fvd(video_probe, a.pixels, b.pixels)


def test_a_probe_trained_twice_is_the_same_whatever_the_global_generator_holds(cfg, tmp_path):
    # the initial weights follow cfg.probe.seed alone, as the batches do: a probe trained after
    # other work (which moves the global generator) equals one trained first
    from nuwa_lab.metrics.probe import build
    from nuwa_lab.recipes.probes import ProbeTrainable, fit_probe, train_config

    train_cfg = dataclasses.replace(train_config("segmenter", cfg.probe), steps=1, ckpt_every=0)
    trained = []
    for run, seed in enumerate((1, 2)):
        torch.manual_seed(seed)
        model, _ = fit_probe(
            lambda: build("segmenter", cfg),
            lambda m: ProbeTrainable("segmenter", m, cfg, train_cfg),
            train_cfg,
            cfg,
            workdir=tmp_path / str(run),
            progress=False,
            desc="segmenter",
        )
        trained.append(model)
    for p, q in zip(trained[0].parameters(), trained[1].parameters(), strict=True):
        assert torch.equal(p, q)
