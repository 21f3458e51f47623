"""The Shapes World: determinism, truth consistent with pixels, motion, splits, manipulation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.world import REGIONS, ObjectAttributes, ShapesWorld, attribute_index, parse_caption
from nuwa_lab.world.render import BACKGROUND, PALETTE


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(make_config("tiny").world)


@pytest.fixture(scope="module")
def smoke_world() -> ShapesWorld:
    return ShapesWorld(make_config("smoke").world)


def test_same_seed_gives_identical_tensors_and_different_seeds_differ(world):
    a, b = world.images(range(16)), world.images(range(16))
    assert torch.equal(a.pixels, b.pixels) and torch.equal(a.sketch, b.sketch)
    assert a.captions == b.captions and a.objects == b.objects
    c = world.images(range(16, 32))
    assert not torch.equal(a.pixels, c.pixels)
    assert len(set(a.captions + c.captions)) > 20


def test_single_sample_equals_its_row_in_a_batch(world):
    batch = world.videos([3, 7, 11])
    sample = world.video(7)
    assert torch.equal(sample.pixels, batch.pixels[1]) and sample.caption == batch.captions[1]


def test_image_is_frame_zero_of_the_video_of_the_same_seed(world):
    for seed in range(5):
        assert torch.equal(world.image(seed).pixels, world.video(seed).pixels[0])


def test_shapes_dtypes_and_range(world):
    cfg = world.cfg
    s = cfg.image_size
    images, videos = world.images(range(8)), world.videos(range(8))
    assert images.pixels.shape == (8, 3, s, s) and images.pixels.dtype == torch.float32
    assert images.sketch.shape == (8, s, s) and images.sketch.dtype == torch.int64
    assert videos.pixels.shape == (8, cfg.frames, 3, s, s)
    assert videos.sketch.shape == (8, cfg.frames, s, s)
    assert images.pixels.min() >= 0 and images.pixels.max() <= 1
    assert images.sketch.max() <= len(cfg.shapes)
    assert all(o.direction is None for objs in images.objects for o in objs)
    assert all(o.direction in cfg.directions for objs in videos.objects for o in objs)


def test_background_exactly_where_sketch_is_zero(world):
    batch = world.videos(range(32))
    bg = torch.tensor(BACKGROUND).view(1, 1, 3, 1, 1)
    is_bg = (batch.pixels == bg).all(dim=2)
    assert torch.equal(is_bg, batch.sketch == 0)


def test_attributes_match_pixels(world):
    cfg = world.cfg
    cell = cfg.image_size / 3
    batch = world.images(range(64))
    for k, objs in enumerate(batch.objects):
        (obj,) = objs  # tiny: one object per scene
        region = REGIONS[int(obj.y // cell) * 3 + int(obj.x // cell)]
        assert region == obj.position
        mask = batch.sketch[k] > 0
        assert (batch.sketch[k][mask] == 1 + cfg.shapes.index(obj.shape)).all()
        colour = torch.tensor(PALETTE[obj.colour]).view(3, 1)
        assert (batch.pixels[k][:, mask] == colour).all()
        ys, xs = torch.nonzero(mask, as_tuple=True)  # the object's pixels surround its centre
        assert xs.min() < obj.x < xs.max() + 1 and ys.min() < obj.y < ys.max() + 1


def test_large_objects_cover_more_pixels_than_small(world):
    batch = world.images(range(200))
    area = {"small": [], "large": []}
    for k, objs in enumerate(batch.objects):
        area[objs[0].size].append((batch.sketch[k] > 0).sum().item())
    assert max(area["small"]) < min(area["large"])


def test_centres_keep_a_margin_from_region_borders(world):
    cell = world.cfg.image_size / 3
    for objs in world.images(range(300)).objects:
        for o in objs:
            for v in (o.x, o.y):
                frac = v / cell - int(v / cell)
                assert 0.09 < frac < 0.91


def test_video_moves_in_its_direction_then_bounces():
    cfg = make_config("tiny", **{"world.frames": 12}).world
    world = ShapesWorld(cfg)
    # one move (4 px) from its start it is still clear of the wall, then it bounces off it
    obj = ObjectAttributes("square", "red", "small", "left", 9.0, 16.0, "left")
    assert world.extent(obj) + world.speed < obj.x
    pixels, sketch = world.render([[obj]], frames=12)
    xs = [
        torch.nonzero(sketch[0, t] > 0, as_tuple=True)[1].float().mean().item() for t in range(12)
    ]
    assert xs[1] < xs[0]  # moves left first
    assert xs[-1] > xs[1]  # then bounced off the left wall and came back
    assert min(xs) >= world.extent(obj) - 1  # never left the image
    batch = world.videos(range(40))
    for k, (o,) in enumerate(batch.objects):
        c0 = torch.nonzero(batch.sketch[k, 0] > 0).float().mean(0)  # (row, col)
        c1 = torch.nonzero(batch.sketch[k, 1] > 0).float().mean(0)
        step = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[o.direction]
        moved = (c1 - c0) * torch.tensor(step, dtype=torch.float32)
        assert moved.sum() > 0  # the first move is along the caption's direction, always


def test_an_object_starting_near_a_wall_heads_away_from_it():
    # against a wall, "into it" and "away from it" render the same video: the world only makes
    # the second, so the direction label is a function of the pixels
    world = ShapesWorld(make_config("tiny").world)
    videos = world.videos(range(600))
    walls = 0
    for (o,) in videos.objects:  # objects that start within one move of a wall head away from it
        lo, hi = world.extent(o), world.cfg.image_size - world.extent(o)
        vx, vy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[o.direction]
        p, v = (o.x, vx) if vx else (o.y, vy)
        assert (p + v * world.speed <= hi) and (p + v * world.speed >= lo)
        walls += min(p - lo, hi - p) < world.speed
    assert walls > 0  # the rule was exercised
    assert world.videos(range(600)).objects == videos.objects  # and is deterministic


def test_train_excludes_held_out_pairs_and_held_out_split_always_has_one(world):
    held = set(world.held_out)
    train = world.images(world.seeds("train")[:300])
    assert not any((o.shape, o.colour) in held for objs in train.objects for o in objs)
    held_batch = world.images(world.seeds("held_out")[:100])
    assert all(any((o.shape, o.colour) in held for o in objs) for objs in held_batch.objects)


def test_splits_are_disjoint_consecutive_ranges(world):
    ranges = [world.seeds(s) for s in ("train", "val", "test", "held_out")]
    for a, b in zip(ranges, ranges[1:], strict=False):
        assert a.stop == b.start
    assert len(ranges[3]) == len(ranges[2])
    with pytest.raises(ValueError, match="valid splits"):
        world.seeds("training")


def test_captions_parse_back_to_the_attributes(world):
    for kind in ("image", "video"):
        batch = world.images(range(200)) if kind == "image" else world.videos(range(200))
        for caption, objs in zip(batch.captions, batch.objects, strict=True):
            (parsed,) = parse_caption(caption)
            (o,) = objs
            want = {"shape": o.shape, "colour": o.colour, "size": o.size, "position": o.position}
            if kind == "video":
                want["direction"] = o.direction
            assert parsed == want, caption


def test_multiple_objects_are_joined_with_and_and_parse_back():
    world = ShapesWorld(make_config("base").world)
    batch = world.images(range(40))
    counts = [len(o) for o in batch.objects]
    assert set(counts) == {1, 2}
    for caption, objs in zip(batch.captions, batch.objects, strict=True):
        assert caption.count(" and ") == len(objs) - 1
        parsed = parse_caption(caption)
        assert [p["shape"] for p in parsed] == [o.shape for o in objs]
        assert len({o.position for o in objs}) == len(objs)


def test_caption_grammar_has_word_order_variety(world):
    captions = world.images(range(100)).captions
    assert any(c.startswith(("in the", "at the", "on the")) for c in captions)
    assert any(c.startswith(("a ", "an ")) for c in captions)
    assert any("," in c for c in captions)


def test_attribute_index_gives_class_indices(world):
    cfg = world.cfg
    obj = world.video(0).objects[0]
    idx = attribute_index(cfg, obj)
    assert cfg.shapes[idx["shape"]] == obj.shape and REGIONS[idx["position"]] == obj.position
    assert cfg.directions[idx["direction"]] == obj.direction
    assert "direction" not in attribute_index(cfg, world.image(0).objects[0])


def test_bad_config_raises_with_the_valid_names():
    with pytest.raises(ValueError, match="choose from"):
        ShapesWorld(make_config("tiny", **{"world.shapes": ("circle", "hexagon")}).world)
    with pytest.raises(ValueError, match="held-out pair"):
        ShapesWorld(make_config("tiny", **{"world.held_out": (("star", "red"),)}).world)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 5, 8, 13, 21])
def test_image_manipulation_changes_only_the_edit_region(world, seed):
    pair = world.manipulation(seed)
    assert pair.changed in ("colour", "shape", "position")
    outside = ~pair.edit_region
    assert torch.equal(pair.source.pixels[:, outside], pair.target.pixels[:, outside])
    assert not torch.equal(pair.source.pixels, pair.target.pixels)
    src, tgt = pair.source.objects[0], pair.target.objects[0]
    assert getattr(src, pair.changed) != getattr(tgt, pair.changed)
    unchanged = {"colour", "shape", "position", "size"} - {pair.changed}
    assert all(getattr(src, a) == getattr(tgt, a) for a in unchanged)
    assert parse_caption(pair.new_caption)[0][pair.changed] == getattr(tgt, pair.changed)


def test_placement_area_holds_every_placement_of_the_region(world):
    """Every object the world draws lies inside the placement area of its shape, size and region,
    and the areas of two different regions differ."""
    for seed in range(40):
        sample = world.image(seed)
        for obj in sample.objects:
            alone = world.render([[obj]])[1][0, 0] > 0
            assert not (alone & ~world.placement_area(obj)).any(), (seed, obj)
    obj = world.image(0).objects[0]
    left, right = (world.placement_area(replace(obj, position=p)) for p in ("left", "right"))
    assert left[:, 0].any() and not left[:, -1].any() and right[:, -1].any()


def test_shape_and_position_edit_regions_hold_the_placement_area(world):
    """A shape or position edit may redraw its object anywhere the new caption's region allows
    (all of the placement area but a margin around the other objects, which stay outside the
    region); a colour edit only regenerates the object itself."""

    def footprint(obj):
        return world.render([[obj]])[1][0, 0] > 0

    kinds = set()
    for seed in range(60):
        pair = world.manipulation(seed)
        j, kind = pair.object_index, pair.changed
        kinds.add(kind)
        area = world.placement_area(pair.target.objects[j])
        others = [o for i, o in enumerate(pair.source.objects) if i != j]
        if kind == "colour":
            assert pair.edit_region.sum() < area.sum()
            continue
        near_others = torch.zeros_like(area)
        for o in others:
            assert not (footprint(o) & pair.edit_region).any(), (seed, o)
            grown = torch.nn.functional.max_pool2d(footprint(o).float()[None, None], 5, 1, 2)
            near_others |= grown[0, 0] > 0
        assert pair.edit_region[area & ~near_others].all(), seed
    assert kinds == {"colour", "shape", "position"}


def test_manipulation_source_is_the_sample_of_the_seed(world):
    for seed in (4, 9):
        image, video = world.manipulation(seed), world.manipulation(seed, "video")
        assert torch.equal(image.source.pixels, world.image(seed).pixels)
        assert video.source.caption == world.video(seed).caption


def test_manipulation_in_train_never_creates_a_held_out_pair(world):
    held = set(world.held_out)
    for seed in range(25):
        pair = world.manipulation(seed)
        assert not any((o.shape, o.colour) in held for o in pair.target.objects)


def test_video_manipulation_shares_given_frames_then_follows_the_new_direction():
    world = ShapesWorld(make_config("tiny", **{"world.frames": 6}).world)
    for seed in range(10):
        pair = world.manipulation(seed, "video", given_frames=2)
        assert pair.changed == "direction" and pair.given_frames == 2
        assert torch.equal(pair.source.pixels[:2], pair.target.pixels[:2])
        assert not torch.equal(pair.source.pixels, pair.target.pixels)
        new = pair.target.objects[0].direction
        assert new != pair.source.objects[0].direction
        assert parse_caption(pair.new_caption)[0]["direction"] == new
    with pytest.raises(ValueError, match="given_frames"):
        world.manipulation(0, "video", given_frames=6)


def test_turns_after_finds_the_videos_whose_object_turns_after_the_given_frames() -> None:
    from nuwa_lab.world.motion import turns_after

    # centres (b=4, t=4, m=1): straight right; turns at frame 3; still; turns within the given
    # frames only (moves left after the turn at frame 1 and keeps going)
    cx = torch.tensor([[0, 4, 8, 12], [0, 4, 8, 4], [5, 5, 5, 5], [4, 8, 4, 0]]).float()[..., None]
    cy = torch.zeros_like(cx)
    assert turns_after(cx, cy, given_frames=2).tolist() == [False, True, False, True]
    assert turns_after(cx, cy, given_frames=3).tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="two given frames"):
        turns_after(cx, cy, given_frames=1)
