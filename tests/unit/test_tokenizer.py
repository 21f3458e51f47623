"""VQ-GAN, VQ-VAE and VQ-GAN-Seg: shapes, frame-by-frame video, losses, training, round trips."""

from __future__ import annotations

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.tokenizer import VQGAN, VQGANLoss, VQGANSeg
from nuwa_lab.tokenizer.losses import adaptive_weight, hinge_d_loss, hinge_g_loss
from nuwa_lab.tokenizer.nets import stage_channels


def _cfg(**kw):
    return make_config("smoke", **kw)


@pytest.mark.parametrize("downsample", [4, 8])
def test_encode_decode_shapes_for_images_and_videos(downsample: int) -> None:
    torch.manual_seed(0)
    cfg = _cfg(**{"tokenizer.downsample": downsample})
    model = VQGAN(cfg.tokenizer).eval()
    images = torch.rand(3, 3, 16, 16)
    idx = model.encode(images)
    side = 16 // downsample
    assert idx.shape == (3, side, side) and idx.dtype == torch.int64
    assert 0 <= int(idx.min()) and int(idx.max()) < model.codebook_size
    pixels = model.decode(idx)
    assert pixels.shape == images.shape and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    videos = torch.rand(2, 3, 3, 16, 16)
    assert model.encode(videos).shape == (2, 3, side, side)
    assert model.decode(model.encode(videos)).shape == videos.shape
    assert model.downsample == downsample and model.token_grid(16) == (side, side)


def test_videos_are_tokenized_frame_by_frame_with_one_codebook() -> None:
    torch.manual_seed(0)
    model = VQGAN(_cfg().tokenizer).eval()
    video = torch.rand(2, 3, 3, 16, 16)
    idx = model.encode(video)
    for t in range(3):
        assert torch.equal(idx[:, t], model.encode(video[:, t]))
    assert torch.allclose(model.decode(idx)[:, 1], model.decode(idx[:, 1]))


def test_stages_follow_the_downsampling_factor() -> None:
    assert stage_channels(channels=8, channel_mult=(1, 2, 4, 8), downsample=4) == [8, 16, 32]
    assert stage_channels(channels=8, channel_mult=(1, 2), downsample=8) == [8, 16, 16, 16]
    with pytest.raises(ValueError, match="power of two"):
        stage_channels(channels=8, channel_mult=(1,), downsample=6)
    with pytest.raises(ValueError, match="divisible by tokenizer.downsample"):
        VQGAN(_cfg(**{"tokenizer.downsample": 8}).tokenizer).encode(torch.rand(1, 3, 12, 12))


def test_hinge_losses_on_known_logits() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # real: relu(1 - 2) = 0, relu(1 - 0.5) = 0.5 -> 0.25; fake: relu(-1) = 0, relu(1) = 1 -> 0.5
    assert torch.isclose(hinge_d_loss(real, fake), torch.tensor(0.5 * (0.25 + 0.5)))
    assert torch.isclose(hinge_g_loss(fake), torch.tensor(1.0))


def test_adaptive_weight_is_the_ratio_of_gradient_norms() -> None:
    w = torch.randn(3, 4, requires_grad=True)
    rec = (w * 2.0).pow(2).sum()  # grad 8 w
    gan = (w * 0.5).sum()  # grad 0.5 everywhere
    lam = adaptive_weight(rec, gan, w, delta=0.0)
    assert torch.isclose(lam, (8 * w.detach()).norm() / torch.full((3, 4), 0.5).norm())
    assert not lam.requires_grad


def test_discriminator_starts_at_disc_start_and_sees_detached_reconstructions() -> None:
    torch.manual_seed(0)
    model = VQGAN(_cfg().tokenizer)
    loss = VQGANLoss(gan_weight=0.5, disc_start=3, disc_channels=8)
    x = torch.rand(2, 3, 16, 16)
    out = model(x)
    _, logs = loss.generator_loss(out.recon, x, out.quant.loss, step=2, last_layer=model.last_layer)
    d, dlogs = loss.discriminator_loss(out.recon, x, step=2)
    assert "g_loss" not in logs and dlogs == {} and not d.requires_grad
    g, logs = loss.generator_loss(out.recon, x, out.quant.loss, step=3, last_layer=model.last_layer)
    assert "g_loss" in logs and logs["adaptive_weight"] > 0
    d, _ = loss.discriminator_loss(out.recon, x, step=3)
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(gr is None for gr in torch.autograd.grad(d, params, allow_unused=True))
    assert all(gr is not None for gr in torch.autograd.grad(g, params, allow_unused=True))


def test_vqvae_is_the_same_network_without_perceptual_and_gan_terms() -> None:
    from nuwa_lab.recipes.tokenizers import build, make_loss

    cfg = _cfg()
    vqvae, vqgan = make_loss("vqvae", cfg.tokenizer), make_loss("vqgan", cfg.tokenizer)
    assert vqvae.discriminator is None and vqvae.perceptual_weight == 0 and vqvae.gan_weight == 0
    assert vqgan.discriminator is not None and vqgan.perceptual_weight > 0
    assert build("vqvae", cfg).state_dict().keys() == build("vqgan", cfg).state_dict().keys()


def test_seg_tokenizer_takes_class_maps_and_returns_class_maps() -> None:
    torch.manual_seed(0)
    model = VQGANSeg(_cfg().tokenizer, num_classes=5).eval()
    sketch = torch.randint(0, 5, (2, 16, 16))
    idx = model.encode(sketch)
    assert idx.shape == (2, 4, 4) and int(idx.max()) < model.codebook_size
    decoded = model.decode(idx)
    assert decoded.shape == sketch.shape and decoded.dtype == torch.int64
    assert model.decode_logits(idx).shape == (2, 5, 16, 16)
    assert model.encode(torch.randint(0, 5, (2, 3, 16, 16))).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="num_classes"):
        model.encode(torch.full((1, 16, 16), 5))
    with pytest.raises(TypeError, match="integers"):
        model.encode(torch.rand(1, 16, 16))


def _overfit(model, data, loss_fn, steps: int):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        out = model(data)
        loss = loss_fn(out, data) + out.quant.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.slow
def test_round_trip_after_training() -> None:
    """A small VQ-VAE trained on a few Shapes World images reconstructs them, and re-encoding its
    decoded tokens gives the same tokens back; VQ-GAN-Seg does the same for their sketches."""
    from nuwa_lab.metrics import psnr
    from nuwa_lab.tokenizer.seg import segmentation_loss
    from nuwa_lab.world import ShapesWorld

    cfg = _cfg(**{"tokenizer.codebook_size": 64})
    batch = ShapesWorld(cfg.world).images(list(range(8)))
    torch.manual_seed(0)
    model = _overfit(
        VQGAN(cfg.tokenizer), batch.pixels, lambda o, x: (o.recon - x).pow(2).mean(), 200
    )
    idx = model.encode(batch.pixels)
    # the background alone would give ~18 dB: > 24 dB means the shapes come back
    assert float(psnr(model.decode(idx), batch.pixels).mean()) > 24.0
    assert float((model.encode(model.decode(idx)) == idx).float().mean()) > 0.85

    seg = _overfit(
        VQGANSeg(cfg.tokenizer, num_classes=1 + len(cfg.world.shapes)),
        batch.sketch,
        lambda o, s: segmentation_loss(o.recon, s),
        100,
    )
    assert float((seg.reconstruct(batch.sketch) == batch.sketch).float().mean()) > 0.97


def test_trainable_trains_with_the_shared_loop_and_caches_artifacts(tmp_path) -> None:
    from nuwa_lab.recipes.cache import get_or_train, load_meta, registered_kinds

    assert {"vqgan", "vqvae", "vqgan_seg"} <= set(registered_kinds())
    cfg = _cfg(**{"tokenizer.steps": 3, "tokenizer.disc_start": 1, "tokenizer.eval_samples": 4})
    model = get_or_train("vqgan", cfg, root=tmp_path, progress=False)
    assert isinstance(model, VQGAN) and not model.training
    meta = load_meta("vqgan", cfg, root=tmp_path)
    assert meta["metrics"]["steps"] == 3 and "val_psnr_db" in meta["metrics"]
    again = get_or_train("vqgan", cfg, root=tmp_path, progress=False)  # loaded, not retrained
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    seg = get_or_train("vqgan_seg", cfg, root=tmp_path, progress=False)
    assert isinstance(seg, VQGANSeg) and seg.codebook_size == cfg.tokenizer.seg_codebook_size


def test_training_resumes_exactly(tmp_path) -> None:
    from nuwa_lab.recipes.tokenizers import train_tokenizer

    cfg = _cfg(**{"tokenizer.steps": 4, "tokenizer.disc_start": 2, "tokenizer.eval_samples": 4})
    straight, _ = train_tokenizer("vqgan", cfg, workdir=tmp_path / "a", progress=False)
    train_tokenizer("vqgan", cfg, workdir=tmp_path / "b", progress=False, max_steps=2)
    resumed, _ = train_tokenizer("vqgan", cfg, workdir=tmp_path / "b", progress=False)
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name


def test_shared_loop_steps_equal_plain_backward_and_adam() -> None:
    """The trainer's updates through nuwa_lab.train.loop equal loss.backward() + Adam (regression:
    torch's fused CPU AdamW misreads the channels-last gradients of conv weights)."""
    from nuwa_lab.recipes.tokenizers import TokenizerTrainable, build, train_config, training_batch
    from nuwa_lab.train.loop import lr_at, train
    from nuwa_lab.world import ShapesWorld

    cfg = _cfg(**{"tokenizer.steps": 3, "tokenizer.rec_loss": "l2"})
    tcfg = train_config(cfg.tokenizer)
    torch.manual_seed(0)
    looped = build("vqvae", cfg)
    torch.manual_seed(0)
    plain = build("vqvae", cfg)
    train(TokenizerTrainable("vqvae", looped, cfg, tcfg), tcfg, progress=False, device="cpu")
    world = ShapesWorld(cfg.world)
    params = [p for p in plain.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tcfg.lr, betas=tcfg.betas, weight_decay=0.0)
    for step in range(3):
        x = training_batch(world, cfg.tokenizer.seed, step, tcfg.batch_size)
        out = plain(x)
        opt.zero_grad()
        ((out.recon - x).pow(2).mean() + out.quant.loss).backward()
        torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tcfg)
        opt.step()
    for (name, a), b in zip(looped.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
