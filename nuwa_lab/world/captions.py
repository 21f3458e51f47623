"""Captions of the Shapes World: a small grammar with synonyms and word-order variety.

A caption is one clause per object, joined with "and". A clause is a template filled with one
synonym per attribute, both picked by the scene's random generator, so a seed always gives the same
caption:

    image: "a large red circle in the top left" / "in the top left there is a big red circle"
           "a red circle, large, in the top left"
    video: "a small blue square in the center moves to the right"
           "a blue square, small, in the center, moving right"

Video captions name the region at frame 0 and the initial direction. `vocabulary(world_cfg)` lists
every word the grammar can produce (the text tokenizer's vocabulary), `max_caption_tokens` the
longest caption, and `parse_caption` reads attributes back from a caption (used by tests and
evaluation). Word order is free, but each attribute has its own words, so parsing is unambiguous.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from nuwa_lab.config import WorldConfig
from nuwa_lab.world.render import PALETTE

SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
SHAPE_WORDS = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus"),
    "ring": ("ring", "donut"),
}
COLOUR_WORDS = {"grey": ("grey", "gray")}  # other colours are named by themselves
POSITION_PHRASES = {
    "top left": ("in the top left", "in the upper left", "at the top left"),
    "top": ("at the top", "in the top middle"),
    "top right": ("in the top right", "in the upper right", "at the top right"),
    "left": ("on the left", "at the left"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "at the right"),
    "bottom left": ("in the bottom left", "in the lower left", "at the bottom left"),
    "bottom": ("at the bottom", "in the bottom middle"),
    "bottom right": ("in the bottom right", "in the lower right", "at the bottom right"),
}
DIRECTION_PHRASES = {
    "left": ("left", "to the left", "leftward"),
    "right": ("right", "to the right", "rightward"),
    "up": ("up", "upward"),
    "down": ("down", "downward"),
}
IMAGE_TEMPLATES = (
    "{a} {size} {colour} {shape} {pos}",
    "{pos} there is {a} {size} {colour} {shape}",
    "{a} {colour} {shape}, {size}, {pos}",
    "there is {a} {size} {colour} {shape} {pos}",
)
VIDEO_TEMPLATES = (
    "{a} {size} {colour} {shape} {pos} moves {dir}",
    "{pos} {a} {size} {colour} {shape} moves {dir}",
    "{a} {colour} {shape}, {size}, {pos}, moving {dir}",
    "{pos} there is {a} {size} {colour} {shape} moving {dir}",
)
JOIN = " and "
_VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
_HORIZONTAL = {"left": "left", "right": "right"}
_CENTRE = {"center", "middle"}


def words(text: str) -> list[str]:
    """Lower-case word tokens; punctuation marks are tokens of their own ("square," -> 2 tokens)."""
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())


def shape_words(shape: str) -> tuple[str, ...]:
    return SHAPE_WORDS.get(shape, (shape,))


def colour_words(colour: str) -> tuple[str, ...]:
    return COLOUR_WORDS.get(colour, (colour,))


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    # floor(u * n) from a raw double: the same choice on every numpy version and machine
    return options[int(rng.random() * len(options))]


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def clause(obj: Any, kind: str, rng: np.random.Generator) -> str:
    """One object's clause; `obj` has shape, colour, size, position (and direction for video)."""
    templates = VIDEO_TEMPLATES if kind == "video" else IMAGE_TEMPLATES
    template = _pick(rng, templates)
    fill = {
        "size": _pick(rng, SIZE_WORDS[obj.size]),
        "colour": _pick(rng, colour_words(obj.colour)),
        "shape": _pick(rng, shape_words(obj.shape)),
        "pos": _pick(rng, POSITION_PHRASES[obj.position]),
    }
    if kind == "video":
        fill["dir"] = _pick(rng, DIRECTION_PHRASES[obj.direction])
    after_article = template.split("{a} ")[1].split("}")[0].lstrip("{")
    fill["a"] = _article(fill[after_article])
    return template.format(**fill)


def describe(objects: list[Any], kind: str, rng: np.random.Generator) -> str:
    """The caption of a scene: one clause per object joined with "and"."""
    return JOIN.join(clause(obj, kind, rng) for obj in objects)


def vocabulary(world_cfg: WorldConfig) -> list[str]:
    """Every word a caption of this world can contain, sorted (the tokenizer's vocabulary)."""
    vocab: set[str] = set(words(JOIN)) | {"a", "an", "there", "is", "moves", "moving", ","}
    for template in IMAGE_TEMPLATES + VIDEO_TEMPLATES:
        vocab |= set(words(re.sub(r"\{\w+\}", " ", template)))
    for size in world_cfg.sizes:
        vocab |= set(SIZE_WORDS[size])
    for shape in world_cfg.shapes:
        vocab |= set(shape_words(shape))
    for colour in world_cfg.colours:
        vocab |= set(colour_words(colour))
    for phrases in POSITION_PHRASES.values():
        for phrase in phrases:
            vocab |= set(words(phrase))
    for direction in world_cfg.directions:
        for phrase in DIRECTION_PHRASES[direction]:
            vocab |= set(words(phrase))
    return sorted(vocab)


def max_caption_tokens(world_cfg: WorldConfig) -> int:
    """The longest caption of this world in word tokens (without <bos> / <eos>)."""

    def longest(options) -> int:
        return max(len(words(o)) for o in options)

    fill = {
        "a": 1,
        "size": longest([w for s in world_cfg.sizes for w in SIZE_WORDS[s]]),
        "colour": longest([w for c in world_cfg.colours for w in colour_words(c)]),
        "shape": longest([w for s in world_cfg.shapes for w in shape_words(s)]),
        "pos": longest([p for ps in POSITION_PHRASES.values() for p in ps]),
        "dir": longest([p for d in world_cfg.directions for p in DIRECTION_PHRASES[d]]),
    }
    per_clause = 0
    for template in IMAGE_TEMPLATES + VIDEO_TEMPLATES:
        slots = re.findall(r"\{(\w+)\}", template)
        fixed = len(words(re.sub(r"\{\w+\}", " ", template)))
        per_clause = max(per_clause, fixed + sum(fill[s] for s in slots))
    n = world_cfg.max_objects
    return n * per_clause + (n - 1) * len(words(JOIN))


def parse_caption(caption: str) -> list[dict[str, str]]:
    """Attributes named by each clause of a caption: [{"shape", "colour", "size", "position",
    "direction"?}]. Words outside the grammar are ignored; a missing attribute is left out."""
    size_of = {w: s for s, ws in SIZE_WORDS.items() for w in ws}
    shape_of = {w: s for s, ws in SHAPE_WORDS.items() for w in ws}
    colour_of = {w: c for c in PALETTE for w in colour_words(c)}
    direction_of = {w: d for d, ps in DIRECTION_PHRASES.items() for p in ps for w in words(p)}
    parsed = []
    for part in caption.lower().split(JOIN):
        tokens = words(part)
        out: dict[str, str] = {}
        used = [False] * len(tokens)
        for i, w in enumerate(tokens):  # direction: the word after "moves/moving [to the]"
            if w in ("moves", "moving"):
                j = i + 1
                while j < len(tokens) and tokens[j] in ("to", "the"):
                    j += 1
                if j < len(tokens) and tokens[j] in direction_of:
                    out["direction"] = direction_of[tokens[j]]
                    used[i : j + 1] = [True] * (j + 1 - i)
        for i, w in enumerate(tokens):  # position: the words after "in/at/on the"
            if w in ("in", "at", "on") and i + 1 < len(tokens) and tokens[i + 1] == "the":
                vertical = horizontal = None
                j = i + 2
                while j < len(tokens) and (
                    tokens[j] in _VERTICAL or tokens[j] in _HORIZONTAL or tokens[j] in _CENTRE
                ):
                    vertical = _VERTICAL.get(tokens[j], vertical)
                    horizontal = _HORIZONTAL.get(tokens[j], horizontal)
                    used[j] = True
                    j += 1
                if j > i + 2:
                    named = " ".join(x for x in (vertical, horizontal) if x)
                    out["position"] = named or "center"
        for i, w in enumerate(tokens):
            if used[i]:
                continue
            if w in size_of:
                out["size"] = size_of[w]
            elif w in shape_of:
                out["shape"] = shape_of[w]
            elif w in colour_of:
                out["colour"] = colour_of[w]
        parsed.append(out)
    return parsed
