"""The `base` preset, the one a GPU user runs, built and stepped on the CPU (issue 27, item 4).

Its tokenizers, probes and model are built at their `base` sizes (64 x 64 pixels, 8 frames, an
f8 tokenizer of 1,024 codes, a 512-wide 6 + 12-layer model of 70M parameters); the tokenizers and
the model take one step of the library's training loop at batch 1, the probes a forward and
backward pass, and the model samples a few tokens of an 8 x 8 x 8 video with and without the KV
cache, so a config or shape error in `base` shows here and not on the user's GPU. The model's
step and its sampling take 5-15 s each on two busy cores; a tokenizer step (28M parameters of
convolutions on 64 x 64 pixels, forward and backward, and for the VQ-GAN its discriminator) 40-60
s, so those two are marked slow.

The whole pipeline runs too, one step per stage (`short_config`: every stage's steps, batches,
pools and evaluation sets capped, every size kept; `python -m nuwa_lab recipe pipeline --preset
base --max-steps N` on the command line): the VQ-GAN with its discriminator on, the image probe,
multi-task pretraining on tokenized base data, the T2I fine-tuning and T2I sampled and measured
on two test items, through the artifact cache as a user's run goes. Two to three minutes of CPU,
marked slow.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.metrics import ImageProbe, Segmenter, VideoProbe
from nuwa_lab.model import Condition, Nuwa, count_parameters, model_sizes
from nuwa_lab.model.sample import sample
from nuwa_lab.recipes.cache import artifact_dir, load_meta
from nuwa_lab.recipes.pipeline import run_pipeline, short_config
from nuwa_lab.recipes.tokenizers import TokenizerTrainable, build, train_config
from nuwa_lab.train.loop import SimpleTrainable, train
from nuwa_lab.world import ShapesWorld, TextTokenizer

CFG = make_config("base")
SIDE = CFG.world.image_size // CFG.tokenizer.downsample  # 8 tokens per side
GRID = (CFG.world.frames, SIDE, SIDE)  # (8, 8, 8): a video, the largest target grid


def one_step(trainable, train_cfg) -> dict[str, list[float]]:
    """One step of the library's training loop at batch 1, on the CPU; its history."""
    cfg = dataclasses.replace(train_cfg, batch_size=1)
    result = train(trainable, cfg, device="cpu", progress=False, max_steps=1)
    assert result.step == 1
    return result.history


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vqgan", "vqgan_seg"])
def test_the_base_tokenizers_take_a_training_step_at_batch_1(kind) -> None:
    torch.manual_seed(0)
    model = build(kind, CFG)
    seg = kind == "vqgan_seg"
    trainable = TokenizerTrainable(kind, model, CFG, train_config(CFG.tokenizer, seg=seg))
    before = [p.detach().clone() for p in model.parameters()]
    history = one_step(trainable, trainable.train_cfg)
    assert torch.isfinite(torch.tensor(history["loss/gen"])).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    batch = trainable.batch(0, 0, 1)[:1]
    model.eval()
    assert model.encode(batch).shape == (1, SIDE, SIDE)
    if kind == "vqgan":  # the discriminator and its adaptive weight switch on at disc_start
        model.train()
        losses, logs = trainable.losses(batch, step=CFG.tokenizer.disc_start)
        assert set(losses) == {"gen", "disc"} and logs["adaptive_weight"] > 0
        losses["gen"].backward()
        assert torch.isfinite(losses["disc"]) and torch.isfinite(losses["gen"])


def test_the_base_probes_read_base_pictures_and_videos() -> None:
    world = ShapesWorld(CFG.world)
    videos = world.videos([1, 2])
    torch.manual_seed(0)
    for probe, pixels in (
        (ImageProbe(world=CFG.world, channels=CFG.probe.channels), videos.pixels[:, 0]),
        (VideoProbe(world=CFG.world, channels=CFG.probe.channels), videos.pixels),
    ):
        loss, _ = probe.loss(pixels, probe.targets(videos.objects))
        loss.backward()
        assert torch.isfinite(loss) and probe.predict(pixels)["shape"].shape == (2, probe.slots)
    segmenter = Segmenter(world=CFG.world, channels=CFG.probe.channels)
    side = CFG.world.image_size
    assert segmenter.predict(videos.pixels[:, 0]).shape == (2, side, side)


@pytest.fixture(scope="module")
def model() -> Nuwa:
    torch.manual_seed(0)
    return Nuwa.from_config(CFG)


@pytest.fixture(scope="module")
def caption() -> Condition:
    """A two-object video caption (`text.max_length` = 34 covers two objects)."""
    world = ShapesWorld(CFG.world)
    text = TextTokenizer.from_config(CFG.world, CFG.text)
    captions = world.videos([7]).captions
    return Condition.text(text.encode_batch(captions))


def test_the_base_model_takes_a_training_step_at_batch_1(model, caption) -> None:
    assert model.num_parameters() == count_parameters(CFG.model, **model_sizes(CFG))["total"]
    target = torch.randint(0, CFG.tokenizer.codebook_size, (1, *GRID))

    def loss_fn(m: Nuwa, batch) -> torch.Tensor:
        return m(*batch)[1]

    trainable = SimpleTrainable(
        model=model, batch_fn=lambda step, rank, world: (caption, target), loss_fn=loss_fn,
        cfg=CFG.train,
    )  # fmt: skip
    before = model.head.weight.detach().clone()
    history = one_step(trainable, CFG.train)
    loss = history["loss/model"][0]
    uniform = torch.log(torch.tensor(float(CFG.tokenizer.codebook_size)))
    assert abs(loss - float(uniform)) < 0.5  # an untrained model: about log K nats per token
    assert not torch.equal(before, model.head.weight)


def test_the_base_model_samples_a_few_tokens_with_and_without_the_cache(model, caption) -> None:
    """Three free positions of an 8 x 8 x 8 video: the cached decoder feeds each run of given
    tokens in one step (hundreds of queries at once) and predicts the free ones; the uncached one
    runs the whole model for each. Both draw the same tokens."""
    model.eval()
    given = torch.randint(0, CFG.tokenizer.codebook_size, (1, *GRID))
    fixed = torch.ones(1, *GRID, dtype=torch.bool)
    free = [100, 300, 511]  # in frames 1, 4 and the last position of the grid
    fixed.view(-1)[free] = False
    options = dict(generator=0, temperature=1.0, top_k=50)
    cached = sample(model, caption, GRID, fixed, given, **options)
    uncached = sample(model, caption, GRID, fixed, given, use_cache=False, **options)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[fixed], given[fixed])
    assert cached.view(-1)[free].lt(CFG.tokenizer.codebook_size).all()


@pytest.mark.slow
def test_the_base_pipeline_runs_one_step_per_stage(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(tmp_path))
    short = short_config(make_config("base", device="cpu"), 1, batch=2, items=2)
    assert (short.world, short.model, short.text) == (CFG.world, CFG.model, CFG.text)
    summary = run_pipeline(short, ("t2i",), progress=False, echo=lambda _: None)
    assert list(summary["artifacts"]) == ["vqgan", "probe", "nuwa", "nuwa_finetuned_t2i"]
    for kind in summary["artifacts"]:
        assert load_meta(kind, short)["metrics"].get("steps", 1) == 1, kind
        assert artifact_dir(kind, short) != artifact_dir(kind, CFG)  # never the real one
    pretrained = load_meta("nuwa", short)["metrics"]
    assert pretrained["parameters"] == count_parameters(CFG.model, **model_sizes(CFG))["total"]
    assert all(math.isfinite(pretrained[f"val_nll_{t}"]) for t in ("t2i", "t2v", "v2v"))
    t2i = summary["tasks"]["t2i"]
    assert t2i["n_items"] == 2 and 0 <= t2i["acc_all"] <= 1
