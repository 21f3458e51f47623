"""The word-level caption tokenizer: round trips, specials, length limits, unknown words."""

from __future__ import annotations

import pytest
import torch

from nuwa_lab.config import make_config
from nuwa_lab.world import SPECIALS, ShapesWorld, TextTokenizer, vocabulary


@pytest.fixture(scope="module")
def cfg():
    return make_config("tiny")


@pytest.fixture(scope="module")
def tok(cfg) -> TextTokenizer:
    return TextTokenizer.from_config(cfg.world, cfg.text)


def test_specials_have_their_fixed_ids(tok):
    assert tok.itos[:5] == list(SPECIALS) == ["<pad>", "<bos>", "<eos>", "<unk>", "<none>"]
    assert tok.vocab_size == 5 + len(vocabulary(make_config("tiny").world))


def test_world_captions_round_trip(cfg, tok):
    world = ShapesWorld(cfg.world)
    captions = world.images(range(100)).captions + world.videos(range(100)).captions
    ids = tok.encode_batch(captions)
    assert ids.shape == (200, cfg.text.max_length) and ids.dtype == torch.int64
    assert tok.decode_batch(ids) == captions
    assert tok.unknown_count == 0
    assert (ids[:, 0] == 1).all()  # <bos>
    assert ((ids == 2).sum(1) == 1).all()  # exactly one <eos>


def test_every_preset_fits_its_longest_caption():
    for preset in ("smoke", "tiny", "base", "paper"):
        c = make_config(preset)
        tok = TextTokenizer.from_config(c.world, c.text)
        world = ShapesWorld(c.world) if preset != "paper" else None
        if world is not None:
            tok.encode_batch(world.videos(range(30)).captions)  # raises if too long


def test_max_length_too_small_for_the_grammar_raises(cfg):
    small = make_config("tiny", **{"text.max_length": 8})
    with pytest.raises(ValueError, match="text.max_length"):
        TextTokenizer.from_config(small.world, small.text)


def test_too_long_caption_raises_or_truncates(tok):
    caption = " ".join(["red"] * 40)
    with pytest.raises(ValueError, match="truncate=True"):
        tok.encode(caption)
    ids = tok.encode(caption, truncate=True)
    assert ids.shape == (tok.max_length,)
    assert ids[-1].item() == 2 and ids[0].item() == 1  # <eos> kept at the end
    assert tok.decode(ids) == " ".join(["red"] * (tok.max_length - 2))


def test_unknown_words_map_to_unk_and_are_counted(cfg):
    tok = TextTokenizer.from_config(cfg.world, cfg.text)
    ids = tok.encode("a purple hexagon in the center")
    assert (ids == 3).sum().item() == 2
    assert tok.unknown_count == 2 and tok.unknown_words == {"purple": 1, "hexagon": 1}
    assert tok.decode(ids) == "a <unk> <unk> in the center"


def test_none_condition_is_constant_and_decodes_to_none_token(tok):
    none = tok.none()
    assert none.shape == (tok.max_length,) and torch.equal(none, tok.none())
    assert none[:3].tolist() == [1, 4, 2] and (none[3:] == 0).all()
    assert tok.decode(none) == "<none>"


def test_decode_rejects_ids_outside_the_vocabulary(tok):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([1, tok.vocab_size + 3, 2])


def test_extra_words_extend_the_vocabulary(cfg):
    tok = TextTokenizer.from_config(cfg.world, cfg.text, extra_words=["cat", "red"])
    base = TextTokenizer.from_config(cfg.world, cfg.text)
    assert tok.vocab_size == base.vocab_size + 1
    assert tok.decode(tok.encode("a red cat")) == "a red cat" and tok.unknown_count == 0


def test_world_caption_ids_stay_fixed(tok):
    """Trained models and cached token sets depend on these ids: the vocabulary order is frozen."""
    ids = tok.encode("a large red circle in the top left, moving up")
    assert ids.tolist() == [1, 6, 24, 34, 15, 22, 40, 44, 25, 5, 32, 46, 2] + [0] * 5


def test_a_10000_word_caption_is_reported_by_its_length_not_echoed(tok):
    with pytest.raises(ValueError, match=r"10,000 words \(69,999 characters\)") as caught:
        tok.encode(" ".join(["circle"] * 10_000))
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("caption", [None, ["a", "red", "circle"]])
def test_a_caption_that_is_not_a_string_is_refused(tok, caption):
    with pytest.raises(TypeError, match="a caption must be a string"):
        tok.encode(caption)
