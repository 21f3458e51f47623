"""The eight tasks: specs, the fixed-token grid, run_task, metrics on known answers, fine-tuning."""

from __future__ import annotations

import math

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.metrics import psnr
from nuwa_lab.model import Nuwa
from nuwa_lab.tasks import (
    PSNR_CAP_DB,
    TASK_SPECS,
    TaskKit,
    Tokenizers,
    completion_metrics,
    evaluate_task,
    get_task,
    given_frames,
    manipulation_metrics,
    motion_matches,
    object_centroids,
    predicted_motion_accuracy,
    prediction_metrics,
    region_psnr,
    run_task,
    sketch_metrics,
    task_for,
    task_items,
    task_tensors,
    text_to_visual_metrics,
    tokens_inside,
    turns_at_a_wall,
)
from nuwa_lab.tokenizer import VQGAN, VQGANSeg
from nuwa_lab.world import TASKS, ShapesWorld, TextTokenizer, parse_caption


@pytest.fixture(scope="module")
def kit() -> TaskKit:
    cfg = make_config("smoke")
    torch.manual_seed(0)
    tok = VQGAN(cfg.tokenizer, init="random").eval()
    seg = VQGANSeg(cfg.tokenizer, num_classes=1 + len(cfg.world.shapes), init="random").eval()
    text = TextTokenizer.from_config(cfg.world, cfg.text)
    return TaskKit(cfg, ShapesWorld(cfg.world), tok, text, seg)


@pytest.fixture(scope="module")
def model(kit: TaskKit) -> Nuwa:
    torch.manual_seed(1)
    return Nuwa.from_config(kit.cfg).eval()


class OracleProbe:
    """A stand-in probe that reads the truth of any pixels it was shown at construction."""

    def __init__(self, pixels: torch.Tensor, objects: list, attributes: tuple[str, ...]):
        self.classes = {a: () for a in attributes}
        self.table = {self._key(p): objs for p, objs in zip(pixels, objects, strict=True)}
        self.sketches = {}

    @staticmethod
    def _key(x: torch.Tensor) -> bytes:
        return x.contiguous().numpy().tobytes()

    def read(self, pixels: torch.Tensor, **_) -> list[list[dict]]:
        unknown = [{a: "?" for a in self.classes}]
        return [
            [{a: getattr(o, a) for a in self.classes} for o in self.table[self._key(p)]]
            if self._key(p) in self.table
            else unknown
            for p in pixels
        ]

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.flatten(1)[:, :8].double()

    def predict(self, pixels: torch.Tensor, **_) -> torch.Tensor:
        return torch.stack([self.sketches[self._key(p)] for p in pixels])


IMAGE = ("shape", "colour", "size", "position")
VIDEO = (*IMAGE, "direction")


# ---- the tasks as data --------------------------------------------------------------------------


def test_the_eight_tasks_are_the_worlds_tasks_with_the_papers_roles() -> None:
    assert tuple(TASK_SPECS) == TASKS
    assert {n for n, s in TASK_SPECS.items() if s.zero_shot} == {"i2i", "ti2i", "tv2v"}
    finetuned = {n for n, s in TASK_SPECS.items() if s.training == "finetuned"}
    assert finetuned == {"t2i", "s2i", "t2v", "s2v", "v2v"}
    for name, spec in TASK_SPECS.items():
        pair = get_task(spec.pair)
        assert pair.pair == name and pair.modality != spec.modality
        assert pair.condition == spec.condition
    assert task_for("t2i", "video").name == "t2v" and task_for("t2v", "image").name == "t2i"


def test_an_unknown_task_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid tasks: t2i, s2i, i2i"):
        get_task("x2y")
    with pytest.raises(ValueError, match="MODALITY"):
        task_for("t2i", "audio")


# ---- the fixed-token grid ---------------------------------------------------------------------


def test_a_task_with_its_own_budget_fine_tunes_with_it_and_the_others_with_the_defaults() -> None:
    from nuwa_lab.recipes.finetune import train_config

    cfg = make_config("tiny", **{"tasks.finetune_budgets": [["t2i", 40, 8, 2e-3]]})
    t2i, s2i = train_config(cfg, "t2i"), train_config(cfg, "s2i")
    assert (t2i.steps, t2i.batch_size, t2i.lr) == (40, 8, 2e-3)
    assert (s2i.steps, s2i.batch_size, s2i.lr) == (300, 16, 3e-4)  # the shared defaults
    assert make_config("smoke").tasks.finetune_budget("t2i")[0] == 2  # CI stays fast


def test_a_budget_change_retrains_the_task_and_the_models_started_from_it_only() -> None:
    from nuwa_lab.recipes.cache import artifact_dir
    from nuwa_lab.recipes.finetune import artifact_kind, start_chain

    assert start_chain("v2v") == ["v2v", "t2v", "t2i"] and start_chain("i2i") == ["i2i"]
    base = make_config("tiny")
    rows = {row[0]: row for row in base.tasks.finetune_budgets}

    def folders(**changed):
        budgets = [changed.get(t, row) for t, row in rows.items()]
        cfg = make_config("tiny", **{"tasks.finetune_budgets": budgets})
        return {t: artifact_dir(artifact_kind(t), cfg) for t in ("t2i", "t2v", "v2v", "s2i")}

    before = folders()
    after_v2v = folders(v2v=("v2v", 7, 8, 1e-3))
    assert [t for t in before if before[t] != after_v2v[t]] == ["v2v"]
    after_t2i = folders(t2i=("t2i", 7, 32, 1e-3))
    assert [t for t in before if before[t] != after_t2i[t]] == ["t2i", "t2v", "v2v"]
    weighted = make_config("tiny", **{"tasks.v2v_turning_weight": 3.0})
    assert artifact_dir(artifact_kind("v2v"), weighted) != before["v2v"]
    assert artifact_dir(artifact_kind("t2v"), weighted) == before["t2v"]


def test_v2v_batches_draw_turning_videos_by_their_weight() -> None:
    from nuwa_lab.recipes.finetune import train_config
    from nuwa_lab.recipes.finetune_data import FinetuneTrainable, turning_weights

    cfg = make_config("tiny")
    weights = turning_weights(cfg, 512)
    share = float((weights > 1).float().mean())
    assert 0.08 < share < 0.35  # about one video in five turns at a wall after the given frames
    assert set(weights.unique().tolist()) == {1.0, cfg.tasks.v2v_turning_weight}
    pool = {
        "condition": torch.zeros(512, 1, dtype=torch.long),
        "target": torch.arange(512),
        "fixed": torch.zeros(512, dtype=torch.bool),
        "weight": weights,
    }
    trainable = FinetuneTrainable(None, pool, train_config(cfg, "v2v"), seed=0)
    drawn = torch.cat([trainable.batch(s, 0, 1)["rows"] for s in range(400)])
    drawn_share = float((weights[drawn] > 1).float().mean())
    w = cfg.tasks.v2v_turning_weight
    expected = share * w / (share * w + 1 - share)
    assert abs(drawn_share - expected) < 0.05, (drawn_share, expected)
    assert (trainable.batch(3, 0, 1)["rows"] == trainable.batch(3, 0, 1)["rows"]).all()  # resume


def test_each_task_runs_on_its_model_and_manipulation_zero_shot_on_the_caption_models(
    monkeypatch,
) -> None:
    import nuwa_lab.recipes.finetune as ft

    monkeypatch.setattr(ft, "finetuned_model", lambda task, cfg, **_: f"fine-tuned on {task}")
    monkeypatch.setattr(ft, "pretrained_model", lambda cfg, **_: "pretrained")
    cfg = make_config("smoke")
    models = {task: ft.task_model(task, cfg) for task in TASK_SPECS}
    assert models == {
        "t2i": "fine-tuned on t2i",
        "s2i": "fine-tuned on s2i",
        "i2i": "pretrained",
        "ti2i": "fine-tuned on t2i",  # zero-shot: never trained on an edit
        "t2v": "fine-tuned on t2v",
        "s2v": "fine-tuned on s2v",
        "v2v": "fine-tuned on v2v",
        "tv2v": "fine-tuned on t2v",
    }
    assert ft.task_model("ti2i", cfg, variant="pretrained") == "pretrained"
    assert ft.task_model("ti2i", cfg, variant="finetuned") == "fine-tuned on ti2i"


def test_video_fine_tuning_starts_from_a_fine_tuned_model_and_the_image_tasks_from_the_pretrained(
    monkeypatch,
) -> None:
    import nuwa_lab.recipes.finetune as ft

    monkeypatch.setattr(ft, "get_or_train", lambda kind, cfg, **_: kind)
    cfg = make_config("smoke")
    starts = {task: ft.start_model(cfg, task) for task in ("t2i", "s2i", "t2v", "s2v", "v2v")}
    assert starts == {
        "t2i": "nuwa",
        "s2i": "nuwa",
        "t2v": "nuwa_finetuned_t2i",  # a video task starts from its image twin
        "s2v": "nuwa_finetuned_s2i",
        "v2v": "nuwa_finetuned_t2v",  # prediction starts from the model that draws motion
    }


def test_v2v_is_given_two_frames_and_tv2v_one_at_the_tiny_preset() -> None:
    tiny = make_config("tiny")
    assert given_frames("v2v", tiny.tasks) == 2  # one frame shows no motion
    assert given_frames("tv2v", tiny.tasks) == 1  # the new caption steers from frame 2 on
    cfg = make_config("tiny", **{"tasks.given_frames": 3, "tasks.edit_given_frames": 2})
    assert (given_frames("v2v", cfg.tasks), given_frames("tv2v", cfg.tasks)) == (3, 2)
    with pytest.raises(ValueError, match="no given frames"):
        given_frames("t2v", tiny.tasks)


def test_task_items_give_v2v_and_tv2v_their_own_frame_counts() -> None:
    cfg = make_config("smoke", **{"world.frames": 4, "tasks.given_frames": 3})
    kit = TaskKit(cfg, ShapesWorld(cfg.world), None, None)
    assert list(task_items("v2v", kit, "test", 2)["given_frames"]) == [3, 3]
    assert list(task_items("tv2v", kit, "test", 2)["given_frames"]) == [1, 1]


def test_a_token_is_fixed_only_when_its_whole_patch_is_in_the_region() -> None:
    region = torch.zeros(1, 8, 8, dtype=torch.bool)
    region[:, :, :6] = True  # columns 0..5 given: patch column 0 whole, patch column 1 half
    region[:, 7, :] = True  # one row more: never a whole patch row
    assert tokens_inside(region, 4).tolist() == [[[True, False], [True, False]]]
    assert tokens_inside(torch.ones(2, 8, 8, dtype=torch.bool), 4).all()


@pytest.mark.parametrize("name", TASKS)
def test_run_task_returns_pixels_and_keeps_every_fixed_token(name, kit, model) -> None:
    inputs = task_items(name, kit, "test", 2)
    out = run_task(
        name,
        model,
        inputs,
        tokenizers=kit.tokenizers,
        generator=0,
    )
    spec = get_task(name)
    side = kit.cfg.world.image_size
    grid = kit.cfg.world.image_size // kit.tokenizer.downsample
    frames = (kit.cfg.world.frames,) if spec.video else ()
    assert out.pixels.shape == (2, *frames, 3, side, side)
    assert out.tokens.shape == out.fixed.shape == (2, *frames, grid, grid)
    assert torch.equal(out.tokens[out.fixed], out.given_tokens[out.fixed])
    if spec.fixed == "none":
        assert not out.fixed.any()
    elif spec.fixed == "first_frames":
        assert out.fixed[:, 0].all() and not out.fixed[:, 1:].any()
        assert torch.equal(out.given_tokens[:, 0], kit.tokenizer.encode(inputs["pixels"])[:, 0])
    elif spec.fixed == "visible":
        assert torch.equal(out.fixed, tokens_inside(inputs["visible"], kit.tokenizer.downsample))
    else:
        edit = inputs["edit_region"]
        assert torch.equal(out.fixed, tokens_inside(~edit, kit.tokenizer.downsample))
        assert (~out.fixed).any() and out.fixed.any()


def test_i2i_given_tokens_do_not_depend_on_the_hidden_pixels(kit, model) -> None:
    inputs = task_items("i2i", kit, "test", 2)
    a = task_tensors("i2i", model, inputs, tokenizers=Tokenizers(kit.tokenizer))
    changed = dict(inputs, pixels=torch.where(inputs["visible"][:, None], inputs["pixels"], 0.9))
    b = task_tensors("i2i", model, changed, tokenizers=Tokenizers(kit.tokenizer))
    assert torch.equal(a.given_tokens, b.given_tokens) and a.fixed.any()


def test_v2v_given_tokens_do_not_depend_on_later_frames(kit, model) -> None:
    inputs = task_items("v2v", kit, "test", 2)
    later = inputs["pixels"].clone()
    later[:, 1:] = 1.0 - later[:, 1:]
    a = task_tensors("v2v", model, inputs, tokenizers=Tokenizers(kit.tokenizer))
    b = task_tensors("v2v", model, dict(inputs, pixels=later), tokenizers=Tokenizers(kit.tokenizer))
    assert torch.equal(a.given_tokens, b.given_tokens)


def test_inputs_of_the_wrong_kind_name_what_is_expected(kit, model) -> None:
    args = dict(tokenizers=kit.tokenizers)
    video_sketch = task_items("s2v", kit, "test", 1)
    with pytest.raises(ValueError, match=r"sketch: int64 class map \(b, H, W\).*use s2v"):
        run_task("s2i", model, video_sketch, **args)
    with pytest.raises(ValueError, match="needs inputs pixels, visible.*missing: visible"):
        run_task("i2i", model, {"pixels": torch.rand(1, 3, 16, 16)}, **args)
    with pytest.raises(ValueError, match="list of strings"):
        run_task("t2i", model, {"caption": "a red circle"}, **args)
    with pytest.raises(ValueError, match="unknown task"):
        run_task("i2v", model, {}, **args)
    with pytest.raises(ValueError, match="reads a sketch: pass Tokenizers"):
        run_task(
            "s2i", model, task_items("s2i", kit, "test", 1), tokenizers=Tokenizers(kit.tokenizer)
        )
    with pytest.raises(ValueError, match="context=True needs a model"):
        run_task("i2i", model, task_items("i2i", kit, "test", 1), context=True, **args)
    with pytest.raises(TypeError, match="unknown sampling options"):
        run_task("t2i", model, task_items("t2i", kit, "test", 1), temprature=0.5, **args)


def test_the_context_variant_shows_the_encoder_visible_codes_and_masks_the_rest(kit) -> None:
    from nuwa_lab.recipes.finetune import build_finetune_model

    context_model = build_finetune_model(kit.cfg, "i2i", context=True)
    inputs = task_items("i2i", kit, "test", 2)
    t = task_tensors(
        "i2i", context_model, inputs, tokenizers=Tokenizers(kit.tokenizer), context=True
    )
    codes = t.condition.tokens[:, 0]  # (b, h, w)
    assert t.condition.kind == "image_sketch"
    assert torch.equal(codes[t.fixed], t.given_tokens[t.fixed])
    assert (codes[~t.fixed] == context_model.codebook_size).all()
    out = run_task(
        "i2i",
        context_model,
        inputs,
        tokenizers=Tokenizers(kit.tokenizer),
        context=True,
        generator=0,
    )
    assert torch.equal(out.tokens[out.fixed], out.given_tokens[out.fixed])


# ---- the metrics on known answers --------------------------------------------------------------


def test_region_psnr_counts_only_the_region() -> None:
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[:, :, :2] = 0.1  # inside the region: MSE 0.01 -> 20 dB
    y[:, :, 2:] = 0.9  # outside: ignored
    region = torch.zeros(2, 4, 4, dtype=torch.bool)
    region[:, :2] = True
    assert torch.allclose(region_psnr(x, y, region), torch.full((2,), 20.0))
    assert math.isinf(float(region_psnr(x, x, region)[0]))


def test_a_perfect_text_to_image_model_scores_one_and_a_wrong_one_does_not(kit) -> None:
    batch = kit.world.images(kit.world.seeds("test")[:6])
    probe = OracleProbe(batch.pixels, batch.objects, IMAGE)
    asked = [parse_caption(c) for c in batch.captions]
    perfect = text_to_visual_metrics(probe, batch.pixels, asked, real=batch.pixels)
    assert perfect["acc_all"] == 1.0 and abs(perfect["lab_fid"]) < 1e-6
    shuffled = text_to_visual_metrics(probe, batch.pixels.roll(1, 0), asked)
    assert shuffled["acc_all"] < 1.0


def test_a_perfect_sketch_model_has_pixel_accuracy_one(kit) -> None:
    batch = kit.world.videos(kit.world.seeds("test")[:3])
    seg = OracleProbe(batch.pixels.flatten(0, 1), [[]] * 6, ())
    seg.sketches = {
        seg._key(p): s
        for p, s in zip(batch.pixels.flatten(0, 1), batch.sketch.flatten(0, 1), strict=True)
    }

    class FrameSegmenter:
        def predict(self, pixels, **_):
            return torch.stack([seg.predict(v) for v in pixels])

    perfect = sketch_metrics(FrameSegmenter(), batch.pixels, batch.sketch)
    assert perfect["pixel_accuracy"] == 1.0 and perfect["foreground_accuracy"] == 1.0

    class BlankSegmenter:  # what a model that draws no object at all gets
        def predict(self, pixels, **_):
            return torch.zeros(pixels.shape[:-3] + pixels.shape[-2:], dtype=torch.long)

    blank = sketch_metrics(BlankSegmenter(), batch.pixels, batch.sketch)
    assert blank["pixel_accuracy"] == pytest.approx(blank["pixel_accuracy_blank"])
    assert blank["pixel_accuracy"] > 0.8  # background: most of every frame
    assert blank["foreground_accuracy"] == 0.0


def test_a_perfect_completion_keeps_the_visible_part_and_reads_right(kit) -> None:
    inputs = task_items("i2i", kit, "test", 4)
    probe = OracleProbe(inputs["pixels"], inputs["objects"], IMAGE)
    fixed = torch.ones(4, 4, 4, dtype=torch.bool)
    tokens = torch.randint(0, 8, (4, 4, 4))
    m = completion_metrics(
        probe,
        inputs["pixels"],
        inputs["pixels"],
        inputs["visible"],
        inputs["objects"],
        tokens=tokens,
        fixed=fixed,
        given=tokens,
    )
    assert (
        m["acc_all"] == 1.0
        and m["psnr_hidden_db"] == pytest.approx(PSNR_CAP_DB)
        and m["given_tokens_kept"] == 1
    )
    blank = torch.where(inputs["visible"][:, None], inputs["pixels"], 0.0)
    m = completion_metrics(probe, blank, inputs["pixels"], inputs["visible"], inputs["objects"])
    assert (
        m["psnr_visible_db"] == pytest.approx(PSNR_CAP_DB)
        and m["psnr_hidden_db"] < 40
        and m["acc_all"] == 0
    )


def test_a_perfect_predictor_beats_copy_the_last_frame_and_copying_does_not(kit) -> None:
    cfg = make_config("smoke", **{"world.frames": 4, "world.image_size": 24})
    world = ShapesWorld(cfg.world)
    batch = world.videos(world.seeds("test")[:4])
    copy = batch.pixels[:, :1].expand_as(batch.pixels).contiguous()
    probe = OracleProbe(torch.cat([batch.pixels, copy]), batch.objects * 2, VIDEO)
    perfect = prediction_metrics(probe, batch.pixels, batch.pixels, 1, batch.objects)
    assert perfect["beats_copy_last_from_frame2"] == 1.0 and perfect["direction_accuracy"] == 1.0
    assert perfect["psnr_frame3_db"] == pytest.approx(PSNR_CAP_DB) and perfect[
        "ssim_frame3"
    ] == pytest.approx(1.0)
    copied = prediction_metrics(probe, copy, batch.pixels, 1, batch.objects)
    assert copied["beats_copy_last_from_frame2"] == 0.0
    assert copied["psnr_frame2_db"] == pytest.approx(copied["psnr_copy_last_frame2_db"])


def test_object_centroids_find_the_object_and_nan_without_one() -> None:
    from nuwa_lab.world.render import BACKGROUND

    frames = torch.tensor(BACKGROUND)[None, None, :, None, None].repeat(1, 2, 1, 10, 12)
    frames[0, 0, :, 2:5, 6:10] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]  # rows 2-4, cols 6-9
    c = object_centroids(frames)
    assert c[0, 0].tolist() == pytest.approx([7.5, 3.0]) and c[0, 1].isnan().all()


def test_v2v_direction_is_read_from_the_predicted_frames_not_the_given_ones() -> None:
    cfg = make_config("smoke", **{"world.frames": 4, "world.image_size": 32})
    world = ShapesWorld(cfg.world)
    truth = world.videos(world.seeds("test")[:16]).pixels
    assert predicted_motion_accuracy(truth, truth, 2) == 1.0
    frozen = truth.clone()
    frozen[:, 2:] = truth[:, 1:2]  # the given frames move; the predicted ones stand still
    moved = (object_centroids(truth)[:, 3] - object_centroids(truth)[:, 1]).abs().amax(-1)
    still = float((moved < 0.5).double().mean())  # a bounce can bring the object back
    assert still < 0.25 and predicted_motion_accuracy(frozen, truth, 2) == pytest.approx(still)
    backwards = truth.clone()
    backwards[:, 2], backwards[:, 3] = truth[:, 1], truth[:, 0]  # back the way it came
    assert predicted_motion_accuracy(backwards, truth, 2) < 0.25


def _square_videos(xs: list[list[int]]) -> torch.Tensor:
    """Videos (b, t, 3, 32, 32) of a red 4x4 square whose left column is at xs[i][t], rows 10-13."""
    from nuwa_lab.world.render import BACKGROUND

    b, t = len(xs), len(xs[0])
    videos = torch.tensor(BACKGROUND)[None, None, :, None, None].repeat(b, t, 1, 32, 32)
    for i, row in enumerate(xs):
        for frame, x in enumerate(row):
            videos[i, frame, :, 10:14, x : x + 4] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    return videos


def test_v2v_direction_is_split_into_straight_and_turning_videos() -> None:
    truth = _square_videos(
        [
            [4, 8, 12, 16],  # straight on to the right
            [20, 24, 26, 22],  # turns at the wall: right, then back left
            [20, 24, 26, 24],  # turns and comes back to where it was: "still" over frames 1-3
        ]
    )
    generated = _square_videos([[4, 8, 12, 16], [20, 24, 26, 28], [20, 24, 28, 28]])
    assert turns_at_a_wall(truth, 2) == [False, True, True]
    assert motion_matches(generated, truth, 2) == [True, False, False]
    probe = OracleProbe(generated, [[]] * 3, VIDEO)
    m = prediction_metrics(probe, generated, truth, 2, [[]] * 3)
    assert m["turning_share"] == pytest.approx(2 / 3)
    assert m["direction_accuracy_straight"] == 1.0 and m["direction_accuracy_turning"] == 0.0
    assert m["direction_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="two given frames"):
        turns_at_a_wall(truth, 1)


def test_one_still_video_does_not_make_the_copy_last_baseline_infinite(kit) -> None:
    cfg = make_config("smoke", **{"world.frames": 3, "world.image_size": 24})
    world = ShapesWorld(cfg.world)
    batch = world.videos(world.seeds("test")[:3])
    truth = batch.pixels.clone()
    truth[0, 1:] = truth[0, :1]  # the first video stands still: copy-last is exact for it
    probe = OracleProbe(truth, batch.objects, VIDEO)
    m = prediction_metrics(probe, truth, truth, 1, batch.objects)
    moving = psnr(truth[1:, 0], truth[1:, 1]).double()
    expected = (PSNR_CAP_DB + moving.clamp(max=PSNR_CAP_DB).sum()) / 3
    assert math.isfinite(m["psnr_copy_last_frame1_db"])
    assert m["psnr_copy_last_frame1_db"] == pytest.approx(float(expected), rel=1e-5)


def test_edit_success_reads_the_new_attribute_and_preservation_the_rest(kit) -> None:
    inputs = task_items("ti2i", kit, "test", 6)
    sources = [kit.world.image(s).objects for s in inputs["seed"]]
    probe = OracleProbe(
        torch.cat([inputs["target"], inputs["pixels"]]), list(inputs["objects"]) + sources, IMAGE
    )
    args = (inputs["objects"], inputs["changed"])
    done = manipulation_metrics(
        probe, inputs["target"], inputs["pixels"], *args, edit_region=inputs["edit_region"]
    )
    assert done["edit_success"] == 1.0 and done["psnr_preserved_db"] == pytest.approx(PSNR_CAP_DB)
    fixed = tokens_inside(~inputs["edit_region"], kit.cfg.tokenizer.downsample)
    split = manipulation_metrics(
        probe, inputs["target"], inputs["pixels"], *args, edit_region=inputs["edit_region"],
        fixed=fixed,
    )  # fmt: skip
    assert split["psnr_given_db"] == pytest.approx(PSNR_CAP_DB)
    assert split["psnr_redrawn_db"] == pytest.approx(PSNR_CAP_DB)
    undone = manipulation_metrics(
        probe, inputs["pixels"], inputs["pixels"], *args, edit_region=inputs["edit_region"]
    )
    assert undone["edit_success"] == 0.0
    video = task_items("tv2v", kit, "test", 3)
    probe = OracleProbe(video["target"], video["objects"], VIDEO)
    m = manipulation_metrics(
        probe,
        video["target"],
        video["pixels"],
        video["objects"],
        video["changed"],
        given_frames=video["given_frames"],
    )
    assert m["edit_success_direction"] == 1.0 and m["psnr_preserved_db"] == pytest.approx(
        PSNR_CAP_DB
    )


def test_evaluate_task_measures_every_task_end_to_end(kit, model) -> None:
    from nuwa_lab.metrics.probe import build

    full = TaskKit(
        kit.cfg,
        kit.world,
        kit.tokenizer,
        kit.text_tokenizer,
        kit.seg_tokenizer,
        build("probe", kit.cfg).eval(),
        build("video_probe", kit.cfg).eval(),
        build("segmenter", kit.cfg).eval(),
    )
    expected = {
        "t2i": "lab_fid",
        "t2v": "lab_fvd",
        "s2i": "pixel_accuracy",
        "s2v": "pixel_accuracy",
        "i2i": "psnr_hidden_db",
        "v2v": "psnr_copy_last_frame1_db",
        "ti2i": "edit_success",
        "tv2v": "psnr_preserved_db",
    }
    for name, key in expected.items():
        ev = evaluate_task(name, model, full, split="held_out", n=2)
        assert key in ev.metrics and ev.output.pixels.shape[0] == 2
        assert all(k.startswith("held_out_") for k in ev.prefixed())
        for mean in INTERVAL_OF[name]:  # means over items carry their bootstrap interval
            low, high = ev.metrics[f"{mean}_low"], ev.metrics[f"{mean}_high"]
            assert low <= ev.metrics[mean] <= high, (name, mean)


INTERVAL_OF = {
    "t2i": (),
    "t2v": (),
    "s2i": ("pixel_accuracy",),
    "s2v": ("pixel_accuracy",),
    "i2i": ("psnr_db",),
    "v2v": (),  # smoke videos have 2 frames: no predicted frame 2
    "ti2i": ("psnr_preserved_db", "preservation_gap_db"),
    "tv2v": ("psnr_preserved_db", "preservation_gap_db"),
}


# ---- fine-tuning --------------------------------------------------------------------------------


def test_a_finetune_model_starts_from_the_pretrained_weights(kit, model) -> None:
    from nuwa_lab.recipes.finetune import build_finetune_model

    copy = build_finetune_model(kit.cfg, "s2i", pretrained=model)
    for (name, a), b in zip(model.state_dict().items(), copy.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    context = build_finetune_model(kit.cfg, "i2i", context=True, pretrained=model)
    table = context.condition_embedding.sketch.weight
    assert table.shape[0] == model.codebook_size + 1  # K codes + the mask code
    assert torch.equal(table, model.target_embedding.token.weight)  # codes + <bos> as the mask
    with pytest.raises(ValueError, match="context=True is the image completion variant"):
        build_finetune_model(kit.cfg, "v2v", context=True)


@pytest.mark.slow
def test_finetuning_lowers_the_validation_loss_of_the_task(tmp_path, kit) -> None:
    from dataclasses import replace

    from nuwa_lab.recipes.finetune import finetune

    cfg = make_config(
        "smoke", **{"tasks.finetune_steps": 25, "tasks.finetune_lr": 3e-3, "sample.num_eval": 8}
    )
    kit = replace(kit, cfg=cfg)
    torch.manual_seed(0)
    fresh = Nuwa.from_config(cfg)
    start = {k: v.clone() for k, v in fresh.state_dict().items()}
    tuned, metrics = finetune(
        "s2i", cfg, pretrained=fresh, kit=kit, workdir=tmp_path / "run", progress=False
    )
    assert metrics["steps"] == 25 and (tmp_path / "run" / "pool_train.pt").is_file()
    assert metrics["val_loss_finetuned"] < metrics["val_loss_pretrained"] - 0.3
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in start.items())  # a copy trained
    assert not torch.equal(tuned.head.weight.cpu(), start["head.weight"])


def test_reranking_keeps_the_candidate_the_probe_reads_best(kit, model) -> None:
    from nuwa_lab.metrics.probe import build
    from nuwa_lab.model.sample import sample
    from nuwa_lab.tasks import probe_score_fn

    inputs = task_items("t2i", kit, "test", 2)
    asked = [parse_caption(c) for c in inputs["caption"]]
    probe = build("probe", kit.cfg).eval()
    score = probe_score_fn(probe, kit.tokenizer, asked, candidates=3)
    args = dict(tokenizers=Tokenizers(kit.tokenizer, kit.text_tokenizer))
    out = run_task("t2i", model, inputs, generator=0, candidates=3, score_fn=score, **args)
    t = task_tensors("t2i", model, inputs, **args)  # the 3 candidates of each caption, in a row
    drawn = sample(model, t.condition.repeat_interleave(3), t.grid, generator=0)
    best = score(drawn).reshape(2, 3).argmax(dim=1)
    assert torch.equal(out.tokens, drawn[torch.arange(2) * 3 + best])
    full = TaskKit(kit.cfg, kit.world, kit.tokenizer, kit.text_tokenizer, kit.seg_tokenizer,
                   probe, None, build("segmenter", kit.cfg).eval())  # fmt: skip
    with pytest.raises(ValueError, match="has no caption"):
        evaluate_task("s2i", model, full, n=1, candidates=2)


def test_an_edit_s_candidates_rank_by_the_caption_then_by_the_source_kept(
    kit, model, monkeypatch
) -> None:
    from nuwa_lab.metrics.probe import build
    from nuwa_lab.tasks import edit_score_fn
    from nuwa_lab.tasks.rerank import candidate_score

    inputs = task_items("ti2i", kit, "test", 1)
    region = inputs["edit_region"]
    h, w = (n // kit.tokenizer.downsample for n in region.shape[-2:])
    codes = torch.randint(kit.tokenizer.codebook_size, (2, h, w), generator=torch.Generator())
    faithful, redrawn = codes[:1], codes[1:]
    drawn = torch.cat([redrawn, faithful])  # the two candidates of one edit, the faithful second
    with torch.no_grad():
        source = kit.tokenizer.decode(faithful)  # the faithful candidate keeps it exactly
        pixels = kit.tokenizer.decode(drawn)
    tied = edit_score_fn(lambda p: torch.full((2,), 0.6), source, region, 2)
    scores = tied(pixels)
    assert scores[1] == pytest.approx(600 + PSNR_CAP_DB) and scores[0] < scores[1]
    asked = edit_score_fn(lambda p: torch.tensor([0.8, 0.6]), source, region, 2)
    assert asked(pixels).argmax() == 0  # an attribute read right outranks any agreement
    everything = edit_score_fn(lambda p: torch.zeros(2), source, region | True, 2)
    assert torch.equal(everything(pixels), torch.full((2,), PSNR_CAP_DB))  # nothing kept to lose
    with pytest.raises(ValueError, match="one region per source"):
        edit_score_fn(lambda p: p, source, region[0], 2)
    # as the sampler's score of tokens: the same scores, the candidates decoded once
    decodes, seen = [], []
    decode = kit.tokenizer.decode
    monkeypatch.setattr(kit.tokenizer, "decode", lambda t: decodes.append(t) or decode(t))
    inputs = {**inputs, "pixels": source}
    by_tokens = candidate_score("ti2i", lambda p: seen.append(p) or torch.full((2,), 0.6),
                                kit.tokenizer, inputs, 2)  # fmt: skip
    assert torch.allclose(by_tokens(drawn), scores) and len(decodes) == 1
    assert torch.allclose(seen[0], pixels)  # the caption read those pixels
    monkeypatch.undo()
    full = TaskKit(kit.cfg, kit.world, kit.tokenizer, kit.text_tokenizer, kit.seg_tokenizer,
                   build("probe", kit.cfg).eval())  # fmt: skip
    assert kit.cfg.sample.candidates_for("ti2i") == 4 and kit.cfg.sample.candidates_for("t2i") == 1
    assert evaluate_task("ti2i", model, full, n=2).sampling["candidates"] == 4  # the preset's
    assert evaluate_task("ti2i", model, full, n=2, candidates=1).sampling["candidates"] == 1


def test_the_reranking_table_gives_each_measure_its_interval() -> None:
    from types import SimpleNamespace

    from nuwa_lab.tasks import reranking_table

    def ev(candidates: int, rate: float, gap: tuple[float, float, float]) -> SimpleNamespace:
        keys = ("preservation_gap_db", "preservation_gap_db_low", "preservation_gap_db_high")
        metrics = {"edit_success": rate, "n_items": 4, **dict(zip(keys, gap, strict=True))}
        return SimpleNamespace(sampling={"candidates": candidates}, metrics=metrics)

    table = reranking_table(ev(1, 0.5, (2.5, 2.0, 3.0)), ev(4, 0.75, (1.2, 0.8, 1.6)))
    assert table.startswith("| measure | one sample | best of 4 |")
    assert "| `edit_success` | 50.0% [15.0, 85.0] | 75.0% [30.1, 95.4] |" in table  # Wilson's
    assert "| `preservation_gap_db` | 2.50 dB [2.00, 3.00] | 1.20 dB [0.80, 1.60] |" in table
    assert "| `given_gap_db` | nan dB [nan, nan] | nan dB [nan, nan] |" in table  # not measured


def test_the_comparison_figure_shows_the_chosen_items_beside_their_truth() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from types import SimpleNamespace

    from nuwa_lab.viz.tasks import comparison_figure

    truth = torch.rand(5, 2, 3, 8, 8)
    ev = SimpleNamespace(
        task="v2v",
        inputs={"pixels": truth, "seed": [10, 11, 12, 13, 14]},
        output=SimpleNamespace(pixels=truth.flip(0)),
    )
    fig = comparison_figure(ev, items=[3, 1])
    rows = [t.get_text() for ax in fig.axes for t in ax.texts]  # one title per row
    assert rows == ["generated: seed 13", "truth: seed 13", "generated: seed 11", "truth: seed 11"]
    first = fig.axes[0].images[0].get_array()  # row 0, frame 0: item 3's output
    assert torch.allclose(torch.as_tensor(first), truth[1, 0].permute(1, 2, 0))
    with pytest.raises(ValueError, match="no items"):
        comparison_figure(ev, items=[])
