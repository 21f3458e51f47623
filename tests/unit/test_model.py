"""The NÜWA encoder-decoder: shapes, loss, gradients, causality, padding, sizes, errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from nuwa_lab.attention import AttentionPattern
from nuwa_lab.config import make_config
from nuwa_lab.model import Condition, Nuwa, count_parameters, forward_flops, paper_parameter_count
from nuwa_lab.model.counting import attention_pairs

K, TEXT_VOCAB, SKETCH_K = 32, 40, 16
SIZES = dict(
    text_vocab=TEXT_VOCAB,
    codebook_size=K,
    sketch_codebook_size=SKETCH_K,
    max_grid=(3, 4, 4),
    text_length=12,
)
PATTERNS = ("full", "axial", "block", "nearby")


def make_model(seed: int = 0, **model_overrides) -> Nuwa:
    cfg = make_config("smoke", **{f"model.{k}": v for k, v in model_overrides.items()})
    torch.manual_seed(seed)
    return Nuwa(dataclasses.replace(cfg.model, dec_layers=2), **SIZES)


def conditions(b: int = 2) -> dict[str, Condition]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, TEXT_VOCAB, (b, 9), generator=g)
    ids[0, 6:] = 0  # padding
    return {
        "text": Condition.text(ids),
        "image_sketch": Condition.image_sketch(torch.randint(0, SKETCH_K, (b, 2, 2), generator=g)),
        "video_sketch": Condition.video_sketch(
            torch.randint(0, SKETCH_K, (b, 3, 2, 2), generator=g)
        ),
        "none": Condition.none(b),
    }


def targets(b: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {
        "image": torch.randint(0, K, (b, 4, 4), generator=g),
        "video": torch.randint(0, K, (b, 3, 4, 4), generator=g),
    }


@pytest.mark.parametrize("kind", ["text", "image_sketch", "video_sketch", "none"])
@pytest.mark.parametrize("target", ["image", "video"])
def test_forward_shapes_and_loss_for_every_condition(kind: str, target: str) -> None:
    model = make_model()
    y = targets()[target]
    logits, loss = model(conditions()[kind], y)
    assert logits.shape == (*y.shape, K)
    expected = F.cross_entropy(logits.reshape(-1, K), y.flatten())
    assert torch.allclose(loss, expected)
    assert abs(loss.item() - math.log(K)) < 0.5  # near uniform at initialisation


def test_loss_mask_restricts_the_loss_to_masked_positions() -> None:
    model = make_model()
    y = targets()["video"]
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask[:, 1:] = True
    logits, loss = model(conditions()["none"], y, loss_mask=mask)
    expected = F.cross_entropy(logits[:, 1:].reshape(-1, K), y[:, 1:].flatten())
    assert torch.allclose(loss, expected, atol=1e-6)


def test_backward_gives_finite_grads_for_every_parameter() -> None:
    model = make_model()
    conds, ys = conditions(), targets()
    total = sum(model(conds[k], ys[t])[1] for k in conds for t in ys)
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("rule", ["raster", "quadrant"])
def test_decoder_does_not_see_the_future(pattern: str, rule: str) -> None:
    model = make_model(attention=pattern, causal_rule=rule).eval()
    cond, y = conditions()["text"], targets()["video"]
    n = y[0].numel()
    base, _ = model(cond, y)
    base = base.reshape(2, n, K)
    for j in (5, 17, 30):
        y2 = y.clone().reshape(2, n)
        y2[:, j] = (y2[:, j] + 1) % K
        out, _ = model(cond, y2.reshape(y.shape))
        out = out.reshape(2, n, K)
        # logits at n predict token n from tokens < n: positions <= j must not change
        assert torch.allclose(out[:, : j + 1], base[:, : j + 1], atol=1e-5)
        assert not torch.allclose(out[:, j + 1 :], base[:, j + 1 :], atol=1e-5)


def test_text_padding_is_masked() -> None:
    model = make_model().eval()
    ids = torch.tensor([[1, 7, 8, 9, 2, 0, 0]])
    longer = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    y = targets(1)["image"]
    a, _ = model(Condition.text(ids), y)
    b, _ = model(Condition.text(longer), y)
    assert torch.allclose(a, b, atol=1e-5)
    # a real word where padding was changes the prediction
    c, _ = model(Condition.text(torch.tensor([[1, 7, 8, 9, 2, 11, 0]])), y)
    assert not torch.allclose(a, c, atol=1e-5)


def test_condition_content_reaches_the_decoder() -> None:
    model = make_model(cross_attention="nearby").eval()
    y = targets()["video"]
    cond = conditions()["video_sketch"]
    other = Condition.video_sketch((cond.tokens[:, :] + 1) % SKETCH_K)
    assert not torch.allclose(model(cond, y)[0], model(other, y)[0], atol=1e-5)


def test_recorded_attention_weights_follow_the_pattern() -> None:
    model = make_model(attention="nearby").eval()
    attn = model.attention_modules()["decoder.0.self"]
    attn.record = True
    model(conditions()["text"], targets()["video"])
    w = attn.weights  # (b, heads, n, n)
    mask = model.decoder_spec().mask((3, 4, 4), (3, 4, 4))
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5)
    assert (w[..., ~mask] == 0).all()


def test_condition_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown condition kind"):
        Condition("audio", torch.zeros(1, 1, 1, 1, dtype=torch.long), (1, 1, 1))
    with pytest.raises(ValueError, match="grid"):
        Condition("video_sketch", torch.zeros(1, 2, 2, 2, dtype=torch.long), (2, 2, 3))
    with pytest.raises(ValueError, match="integers"):
        Condition.text(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\(b, h, w\)"):
        Condition.image_sketch(torch.zeros(1, 2, 2, 2, dtype=torch.long))


def test_forward_errors_name_the_problem() -> None:
    model = make_model()
    cond = conditions()["text"]
    with pytest.raises(ValueError, match="target_tokens must be long"):
        model(cond, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch"):
        model(cond, torch.zeros(3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="target codes"):
        model(cond, torch.full((2, 4, 4), K, dtype=torch.long))
    with pytest.raises(ValueError, match="larger than the positional tables"):
        model(cond, torch.zeros(2, 5, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="text_length"):
        model(Condition.text(torch.ones(2, 13, dtype=torch.long)), targets()["image"])
    with pytest.raises(ValueError, match="sketch codes"):
        model(Condition.image_sketch(torch.full((2, 2, 2), SKETCH_K)), targets()["image"])
    with pytest.raises(TypeError, match="Condition"):
        model(torch.zeros(2, 5, dtype=torch.long), targets()["image"])
    with pytest.raises(ValueError, match=r"model\.attention = 'sparse': must be one of full"):
        make_model(attention="sparse")  # refused by make_config
    sparse = dataclasses.replace(make_model().cfg, attention="sparse")  # past make_config
    with pytest.raises(ValueError, match="unknown model.attention"):
        Nuwa(sparse, **SIZES)


@pytest.mark.parametrize("overrides", [{}, {"dim": 48, "heads": 4, "mlp_ratio": 2}])
def test_parameter_count_matches_the_instantiated_model(overrides) -> None:
    model = make_model(**overrides)
    counted = count_parameters(model.cfg, **SIZES)
    assert counted["total"] == model.num_parameters()
    assert (
        counted["decoder"] == sum(p.numel() for p in model.decoder.parameters()) + 2 * model.cfg.dim
    )


def test_paper_parameter_count_is_computed_without_instantiating(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the paper preset must not be instantiated")

    monkeypatch.setattr(Nuwa, "__init__", refuse)
    counts = paper_parameter_count(text_vocab=49_408)
    layers = counts["encoder"] + counts["decoder"]
    assert 860e6 < layers < 875e6  # the paper's ~870M transformer
    assert 0.9e9 < counts["total"] < 1.0e9  # plus embeddings and the output head


def test_forward_flops_match_a_hand_count_for_full_attention() -> None:
    cfg = make_model().cfg
    d, r, nc, n = cfg.dim, cfg.mlp_ratio, 9, 48
    enc = 8 * nc * d * d + 4 * nc * d * r * d + 4 * d * nc * nc
    dec = 8 * n * d * d + 4 * d * n * (n + 1) // 2 + 4 * n * d * d + 4 * nc * d * d
    dec += 4 * d * n * nc + 4 * n * d * r * d
    expected = cfg.enc_layers * enc + cfg.dec_layers * dec + 2 * n * d * K
    full = dataclasses.replace(cfg, attention="full")
    got = forward_flops(
        full,
        condition_kind="text",
        condition_grid=(1, 1, 9),
        target_grid=(3, 4, 4),
        codebook_size=K,
    )
    assert got == expected
    nearby = dataclasses.replace(cfg, attention="nearby")
    assert (
        attention_pairs(AttentionPattern(pattern="nearby", causal=True), (3, 4, 4), (3, 4, 4))
        < n * (n + 1) // 2
    )
    assert (
        forward_flops(
            nearby,
            condition_kind="text",
            condition_grid=(1, 1, 9),
            target_grid=(3, 4, 4),
            codebook_size=K,
        )
        < got
    )


def test_recorded_maps_are_distributions_on_their_key_grids() -> None:
    from nuwa_lab.viz.maps import record_attention

    model = make_model(attention="nearby", cross_attention="nearby")
    maps = record_attention(model, conditions()["video_sketch"], targets()["video"])
    assert maps.layers == ["encoder.0.self", "decoder.0.self", "decoder.0.cross"] + [
        "decoder.1.self",
        "decoder.1.cross",
    ]
    assert maps.kv_grids["decoder.1.cross"] == (3, 2, 2)
    for layer in maps.layers:
        row = maps.row(layer, 1, (2, 1, 1))
        assert row.shape == maps.kv_grids[layer]
        assert abs(float(row.sum()) - 1.0) < 1e-5
    # a causal query sees nothing after itself in raster order
    assert float(maps.row("decoder.0.self", 0, (0, 0, 0)).flatten()[1:].sum()) == 0.0
    assert all(m.weights is None and not m.record for m in model.attention_modules().values())
    with pytest.raises(ValueError, match="outside the query grid"):
        maps.row("decoder.0.self", 0, (3, 0, 0))
    with pytest.raises(ValueError, match="unknown layer"):
        maps.row("decoder.9.self", 0, (0, 0, 0))


def test_ablation_arms_differ_only_in_the_pattern() -> None:
    from nuwa_lab.recipes.ablation import TASK, ablation_config

    base = make_config("tiny")  # tiny has its own S2V fine-tuning budget: the arm must not use it
    assert base.tasks.finetune_budget(TASK) != (7, base.tasks.finetune_batch_size, base.train.lr)
    arms = {p: ablation_config(base, p, steps=7) for p in PATTERNS}
    for pattern, arm in arms.items():
        assert arm.model.attention == arm.model.cross_attention == pattern
        assert arm.tasks.finetune_budget(TASK) == (7, base.tasks.finetune_batch_size, base.train.lr)
        same = dataclasses.replace(arm.model, attention="full", cross_attention="full")
        assert same == arms["full"].model
    with pytest.raises(ValueError, match="unknown attention"):
        ablation_config(base, "sparse")


def test_ablation_longer_grid_batch_and_equal_time_budget() -> None:
    from nuwa_lab.recipes.ablation import ablation_config, equal_time_steps

    base = make_config("tiny")
    arm = ablation_config(base, "nearby", steps=150, batch=4, downsample=2)
    assert arm.tokenizer.downsample == 2 and arm.tasks.finetune_batch_size == 4
    assert arm.world.image_size // arm.tokenizer.downsample == 16  # 4 x 16 x 16 tokens
    same = ablation_config(base, "nearby", steps=0, batch=0, downsample=0)
    assert same.tokenizer == base.tokenizer
    assert same.tasks.finetune_batch_size == base.tasks.finetune_batch_size
    for bad in ({"downsample": 3}, {"downsample": 64}, {"batch": -1}):
        with pytest.raises(ValueError):
            ablation_config(base, "nearby", **bad)
    # equal wall-clock: steps x t_full / t_arm, the reference keeps its steps, at least one step
    seconds = {"full": 1.0, "axial": 0.5, "block": 0.25, "nearby": 2.0}
    assert equal_time_steps(seconds, "full", 150) == 150
    assert equal_time_steps(seconds, "axial", 150) == 300
    assert equal_time_steps(seconds, "block", 150) == 600
    assert equal_time_steps(seconds, "nearby", 150) == 75
    assert equal_time_steps({"full": 0.001, "nearby": 10.0}, "nearby", 5) == 1
    with pytest.raises(ValueError, match="no positive seconds per step for 'axial'"):
        equal_time_steps({"full": 1.0, "axial": 0.0}, "axial", 10)
