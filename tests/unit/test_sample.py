"""The sampler: KV cache == no cache, fixed tokens, seeds, batching, top-k / top-p, re-ranking."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.model import Condition, Nuwa
from nuwa_lab.model.sample import draw, filter_logits, rerank, sample
from nuwa_lab.tasks.evaluate import sampling_options

K = 32
SIZES = dict(
    text_vocab=40, codebook_size=K, sketch_codebook_size=16, max_grid=(3, 4, 4), text_length=12
)
PATTERNS = ("full", "axial", "block", "nearby")


def sharp_model(seed: int = 0, **model_overrides) -> Nuwa:
    """A random model with peaked predictions that depend strongly on the context."""
    cfg = make_config("smoke", **{f"model.{k}": v for k, v in model_overrides.items()})
    torch.manual_seed(seed)
    model = Nuwa(dataclasses.replace(cfg.model, dec_layers=2), **SIZES)
    with torch.no_grad():
        model.head.weight.mul_(30)
    return model.eval()


def text(b: int = 2) -> Condition:
    ids = torch.randint(5, 40, (b, 8), generator=torch.Generator().manual_seed(3))
    ids[-1, 5:] = 0
    return Condition.text(ids)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_cached_step_logits_equal_teacher_forced_logits(pattern: str) -> None:
    model = sharp_model(attention=pattern, cross_attention=pattern)
    sketch = torch.randint(0, 16, (2, 3, 2, 2), generator=torch.Generator().manual_seed(4))
    cond = Condition.video_sketch(sketch)  # rescaled cross-attention onto a (3, 2, 2) grid
    y = torch.randint(0, K, (2, 3, 4, 4), generator=torch.Generator().manual_seed(5))
    full, _ = model(cond, y)
    full = full.reshape(2, 48, K)
    state = model.start(cond, (3, 4, 4))
    inputs = model.target_embedding.shift_right(y.reshape(2, 48))
    for n in range(48):
        step = model.step(state, inputs[:, n : n + 1], torch.tensor([n]))
        assert torch.allclose(step[:, 0], full[:, n], atol=1e-4), f"position {n}"


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("kind", ["text", "video_sketch"])
def test_cached_and_uncached_sampling_give_identical_tokens(pattern: str, kind: str) -> None:
    model = sharp_model(attention=pattern, cross_attention=pattern)
    if kind == "text":
        cond = text()
    else:
        # a (2, 2, 2) sketch under a (2, 3, 3) target: cross-attention rescales 3 -> 2
        cond = Condition.video_sketch(torch.randint(0, 16, (2, 2, 2, 2)))
    a = sample(model, cond, (2, 3, 3), generator=torch.Generator().manual_seed(7))
    b = sample(model, cond, (2, 3, 3), generator=torch.Generator().manual_seed(7), use_cache=False)
    assert a.shape == (2, 2, 3, 3)
    assert torch.equal(a, b)


@pytest.mark.parametrize("use_cache", [True, False])
def test_fixed_tokens_come_back_unchanged(use_cache: bool) -> None:
    model = sharp_model(attention="nearby")
    g = torch.Generator().manual_seed(0)
    given = torch.randint(0, K, (2, 3, 4, 4), generator=g)
    fixed = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    fixed[:, 0] = True  # the first frame (video prediction)
    fixed[0, 2, 1:3, 1:3] = True  # and, for sample 0 only, a patch of the last frame
    out = sample(
        model, Condition.none(2), (3, 4, 4), fixed, given, generator=1, use_cache=use_cache
    )
    assert torch.equal(out[fixed], given[fixed])
    assert not torch.equal(out[~fixed], given[~fixed])


def test_fixed_tokens_influence_later_tokens() -> None:
    model = sharp_model(attention="nearby")
    fixed = torch.zeros(3, 4, 4, dtype=torch.bool)
    fixed[0] = True
    first = torch.randint(0, K, (3, 4, 4), generator=torch.Generator().manual_seed(1))
    second = first.clone()
    second[0] = (second[0] + 5) % K
    a = sample(model, Condition.none(1), (3, 4, 4), fixed, first, generator=2)
    b = sample(model, Condition.none(1), (3, 4, 4), fixed, second, generator=2)
    assert not torch.equal(a[:, 1:], b[:, 1:])


def test_seeds_are_reproducible_and_distinct() -> None:
    model = sharp_model()
    a = sample(model, text(), (4, 4), generator=torch.Generator().manual_seed(11))
    b = sample(model, text(), (4, 4), generator=11)
    c = sample(model, text(), (4, 4), generator=12)
    assert a.shape == (2, 4, 4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batch_size_split_gives_the_same_tokens() -> None:
    model = sharp_model()
    cond = text(3)
    a = sample(model, cond, (2, 4, 4), generator=5)
    b = sample(model, cond, (2, 4, 4), generator=5, batch_size=2)
    assert torch.equal(a, b)


def test_sampling_restores_training_mode() -> None:
    model = sharp_model().train()
    sample(model, text(), (4, 4), generator=0)
    assert model.training


def test_top_k_keeps_the_k_largest_logits() -> None:
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0, 0.0]])
    out = filter_logits(logits, top_k=2)
    assert torch.equal(torch.isfinite(out), torch.tensor([[False, True, True, False, False]]))
    assert torch.equal(out[torch.isfinite(out)], torch.tensor([4.0, 3.0]))
    assert torch.equal(filter_logits(logits, top_k=0), logits)


def test_top_p_keeps_the_smallest_nucleus() -> None:
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p))[0].tolist()  # noqa: E731
    assert kept(0.4) == [False, True, False, False]
    assert kept(0.75) == [False, True, False, True]
    assert kept(0.85) == [True, True, False, True]
    assert kept(1.0) == [True, True, True, True]


def test_draw_inverts_the_cdf_of_the_filtered_distribution() -> None:
    logits = torch.tensor([0.25, 0.5, 0.125, 0.125]).log().expand(4, 4)
    u = torch.tensor([0.0, 0.3, 0.8, 0.999])
    assert draw(logits, u).tolist() == [0, 1, 2, 3]
    # top-k 2 renormalises {0: 1/3, 1: 2/3}
    assert draw(logits, u, top_k=2).tolist() == [0, 0, 1, 1]
    assert draw(logits, torch.full((4,), 0.9999999), top_k=2).tolist() == [1] * 4
    assert draw(logits, u, temperature=0).tolist() == [1] * 4
    # frequencies match the distribution at temperature 0.5 (p^2, renormalised)
    many = torch.rand(40_000, generator=torch.Generator().manual_seed(0))
    codes = draw(logits[:1].expand(40_000, 4), many, temperature=0.5)
    expected = torch.tensor([0.25, 0.5, 0.125, 0.125]) ** 2
    freq = torch.bincount(codes, minlength=4).float() / 40_000
    assert torch.allclose(freq, expected / expected.sum(), atol=0.01)


def test_reranking_keeps_the_best_scored_candidate() -> None:
    model = sharp_model()
    score = lambda tokens: -tokens.flatten(1).float().sum(1)  # noqa: E731  (fewer high codes)
    best = sample(model, text(), (4, 4), generator=3, candidates=4, score_fn=score)
    all_ = sample(model, text().repeat_interleave(4), (4, 4), generator=3)
    expected, index = rerank(all_, score(all_), 4)
    assert torch.equal(best, expected)
    assert best.shape == (2, 4, 4)
    assert (score(best)[:, None] >= score(all_).reshape(2, 4)).all()
    assert index.shape == (2,)


def test_sampler_errors_name_the_problem() -> None:
    model = sharp_model()
    fixed = torch.zeros(4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="fixed_tokens"):
        sample(model, text(), (4, 4), fixed)
    with pytest.raises(ValueError, match="fixed has shape"):
        sample(model, text(), (4, 4), torch.zeros(3, 3, dtype=torch.bool), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="must lie in"):
        sample(model, text(), (4, 4), ~fixed, torch.full((4, 4), K))
    with pytest.raises(ValueError, match="score_fn"):
        sample(model, text(), (4, 4), candidates=2)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, text(), (4, 4), temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        sample(model, text(), (4, 4), top_p=0.0)


def test_a_task_samples_at_its_own_temperature_where_the_config_names_one() -> None:
    overrides = {"sample.temperature": 0.7, "sample.task_temperatures": [["t2i", 0.3]]}
    cfg = make_config("tiny", **overrides)
    assert sampling_options(cfg.sample, "t2i")["temperature"] == 0.3
    assert sampling_options(cfg.sample, "s2i")["temperature"] == 0.7
    assert sampling_options(cfg.sample)["temperature"] == 0.7  # no task: the shared one
    with pytest.raises(ValueError, match=r"sample\.task_temperatures = .*bad rows: \('t2x'"):
        make_config("tiny", **{"sample.task_temperatures": [["t2x", 0.3]]})
    assert sampling_options(cfg.sample, "ti2i")["candidates"] == 4  # the preset's own row
    assert sampling_options(cfg.sample, "t2i")["candidates"] == 1
    with pytest.raises(ValueError, match=r"sample\.task_candidates = .*bad rows: \('t2i', 0\)"):
        make_config("tiny", **{"sample.task_candidates": [["t2i", 0]]})
    bad = dataclasses.replace(cfg.sample, task_temperatures=(("t2x", 0.3),))  # not via make_config
    with pytest.raises(ValueError, match=r"unknown tasks \['t2x'\].*valid: t2i"):
        sampling_options(bad, "t2i")
