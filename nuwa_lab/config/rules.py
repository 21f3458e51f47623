"""Rules: what a config value may be besides its type, and the type check itself.

A `Rule` is a test and the words that complete "must be ...": `POSITIVE`, `between(0, 1)`,
`one_of("full", "axial")`. Each config section lists one per field in its `RULES` table;
`has_type` checks the annotated type (an int is fine where a float is expected, a bool is not an
int, floats must be finite).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class Rule:
    """What a config value may be besides its annotated type: a test and the words for it.

    `words` completes "must be ..."; in it `{a}` stands for the type with its article ("an int",
    "a number") and `{type}` for the type alone. `explain(value)`, when given, says which part of a
    failing value is wrong (e.g. the unknown name in a list).
    """

    test: Callable[[Any], bool]
    words: str
    explain: Callable[[Any], str] | None = None

    def describe(self, hint: Any) -> str:
        noun = {int: "int", float: "number", str: "string", bool: "bool"}.get(hint, "value")
        article = "an" if noun[0] in "aeiou" else "a"
        return self.words.format(type=noun, a=f"{article} {noun}")


POSITIVE = Rule(lambda v: v > 0, "a positive {type}")
NON_NEGATIVE = Rule(lambda v: v >= 0, "a non-negative {type}")
ANY = Rule(lambda v: True, "{a}")  # the annotated type is all there is to check


def at_least(low: int) -> Rule:
    return Rule(lambda v: v >= low, f"{{a}} >= {low}")


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """`low <= v <= high`, with either end excluded when open: "a number in (0, 1]"."""

    def test(v: Any) -> bool:
        return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)

    brackets = ("(" if low_open else "[", ")" if high_open else "]")
    return Rule(test, f"{{a}} in {brackets[0]}{low}, {high}{brackets[1]}")


def one_of(*valid: str) -> Rule:
    return Rule(lambda v: v in valid, "one of " + ", ".join(valid))


def names(*valid: str) -> Rule:
    """A non-empty tuple of distinct names from `valid`."""

    def bad(v: tuple[str, ...]) -> list[str]:
        return [n for n in v if n not in valid] + [n for i, n in enumerate(v) if n in v[:i]]

    return Rule(
        lambda v: bool(v) and not bad(v),
        "a non-empty list of distinct names; choose from " + ", ".join(valid),
        lambda v: (
            f" (unknown or repeated: {shorten(', '.join(map(repr, bad(v))))})" if bad(v) else ""
        ),
    )


def triple(low: int, what: str) -> Rule:
    return Rule(lambda v: min(v) >= low, f"{what}, a (t, h, w) triple of ints >= {low}")


def task_rows(
    valid: tuple[str, ...],
    columns: str,
    test: Callable[[tuple], bool],
    whole: Callable[[tuple], bool] = lambda rows: True,
) -> Rule:
    """Rows (task, ...): distinct tasks from `valid`, each row passing `test`, all rows `whole`."""

    def bad(rows: tuple[tuple, ...]) -> list[Any]:
        tasks = [row[0] for row in rows]
        return [
            row
            for i, row in enumerate(rows)
            if row[0] not in valid or row[0] in tasks[:i] or not test(row)
        ]

    return Rule(
        lambda v: not bad(v) and whole(v),
        f"rows {columns}, one per task, tasks from {', '.join(valid)}",
        lambda v: f" (bad rows: {shorten(', '.join(map(repr, bad(v))))})" if bad(v) else "",
    )


POWER_OF_TWO = Rule(lambda v: v >= 1 and v & (v - 1) == 0, "a power of two (1, 2, 4, 8, 16, ...)")


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def has_type(value: Any, hint: Any) -> bool:
    """Whether `value` is of the annotated type `hint` (int, float, bool, str, tuple[...])."""
    if get_origin(hint) is tuple:
        args = get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(has_type(v, args[0]) for v in value)
        if len(value) != len(args):
            return False
        return all(has_type(v, a) for v, a in zip(value, args, strict=True))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return abs(value) < 2**1000 if isinstance(value, int) else math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def short_repr(value: Any) -> str:
    """repr(value), cut short: a long value is reported by its length, not echoed."""
    return shorten(repr(value))


def shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
