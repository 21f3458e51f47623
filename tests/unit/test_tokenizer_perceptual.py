"""VQ-GAN's perceptual term on the lab's probe: the config value, the loss it adds, training with
it, and the cache key that follows the probe only when the probe is used."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.metrics.probe_perceptual import ProbePerceptual
from nuwa_lab.recipes.cache import artifact_dir, get_or_train, load_meta
from nuwa_lab.recipes.tokenizers import (
    PERCEPTUALS,
    TokenizerTrainable,
    build,
    make_loss,
    perceptual_distance,
    train_config,
    training_batch,
)
from nuwa_lab.tokenizer import VQGAN
from nuwa_lab.world import ShapesWorld


def _cfg(**kw):
    return make_config("smoke", **kw)


def test_the_config_accepts_each_perceptual_network_and_names_them_otherwise() -> None:
    assert _cfg().tokenizer.perceptual == "lpips"  # the default changes nothing
    for name in PERCEPTUALS:
        assert _cfg(**{"tokenizer.perceptual": name}).tokenizer.perceptual == name
    with pytest.raises(ValueError, match=r"tokenizer\.perceptual = 'vgg'.*lpips, probe"):
        _cfg(**{"tokenizer.perceptual": "vgg"})


def test_probe_loss_needs_the_probe_passed_in() -> None:
    tok = _cfg(**{"tokenizer.perceptual": "probe"}).tokenizer
    with pytest.raises(ValueError, match="perceptual_distance"):
        make_loss("vqgan", tok)
    assert make_loss("vqvae", tok).perceptual_weight == 0  # VQ-VAE has no perceptual term


def test_generator_loss_adds_the_weighted_probe_distance(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(tmp_path))
    cfg = _cfg(**{"tokenizer.perceptual": "probe", "tokenizer.disc_start": 100})
    distance = perceptual_distance(cfg)
    assert isinstance(distance, ProbePerceptual) and not distance.probe.training
    torch.manual_seed(0)
    model = build("vqgan", cfg)
    x = training_batch(ShapesWorld(cfg.world), 0, 0, 4)
    out = model(x)
    w = cfg.tokenizer.perceptual_weight
    with_p, logs = make_loss("vqgan", cfg.tokenizer, perceptual=distance).generator_loss(
        out.recon, x, out.quant.loss, step=0
    )
    no_p, _ = make_loss("vqgan", replace(cfg.tokenizer, perceptual_weight=0.0)).generator_loss(
        out.recon, x, out.quant.loss, step=0
    )
    expected = float(distance(out.recon, x).mean().detach())
    assert logs["perceptual"] == pytest.approx(expected) and expected > 0
    assert float((with_p - no_p).detach()) == pytest.approx(w * expected, rel=1e-4)


def test_vqgan_trains_with_the_probe_loss_and_records_the_probe(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NUWA_LAB_ARTIFACTS", str(tmp_path))
    over = {"tokenizer.steps": 3, "tokenizer.disc_start": 2, "tokenizer.eval_samples": 4}
    cfg = _cfg(**over, **{"tokenizer.perceptual": "probe"})
    trainable = TokenizerTrainable("vqgan", build("vqgan", cfg), cfg, train_config(cfg.tokenizer))
    _, logs = trainable.losses(trainable.batch(0, 0, 1), step=0)
    assert logs["perceptual"] > 0  # the loss the loop minimises holds the probe term
    model = get_or_train("vqgan", cfg, progress=False)  # the probe is cached by now: loaded
    assert isinstance(model, VQGAN) and not model.training
    meta = load_meta("vqgan", cfg)
    assert meta["metrics"]["steps"] == 3 and len(meta["metrics"]["history_perceptual"]) > 0
    assert meta["sections"]["perceptual_probe"] == artifact_dir("probe", cfg).name
    assert (tmp_path / artifact_dir("probe", cfg).name / "meta.json").is_file()


@pytest.mark.parametrize("perceptual", PERCEPTUALS)
def test_the_probe_config_changes_the_vqgan_key_only_with_the_probe_loss(perceptual: str) -> None:
    cfg = _cfg(**{"tokenizer.perceptual": perceptual})
    steps, channels = cfg.probe.steps + 1, cfg.probe.channels * 2
    for other in (
        _cfg(**{"tokenizer.perceptual": perceptual, "probe.steps": steps}),
        _cfg(**{"tokenizer.perceptual": perceptual, "probe.channels": channels}),
    ):
        assert artifact_dir("probe", other) != artifact_dir("probe", cfg)
        same = artifact_dir("vqgan", other) == artifact_dir("vqgan", cfg)
        assert same == (perceptual == "lpips")
        for kind in ("vqvae", "vqgan_seg"):  # neither trains with a perceptual term of the probe
            assert artifact_dir(kind, other) == artifact_dir(kind, cfg)
    no_weight = {"tokenizer.perceptual": perceptual, "tokenizer.perceptual_weight": 0.0}
    assert artifact_dir("vqgan", _cfg(**no_weight)) == artifact_dir(
        "vqgan", _cfg(**no_weight, **{"probe.steps": steps})
    )
