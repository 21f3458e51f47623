"""make_config: a preset's values with overrides applied, every value checked; config hashes.

    cfg = make_config("tiny", **{"model.dim": 128, "train.steps": 500})

Checks run in two rounds: each field against its type and its section's `RULES`
(`nuwa_lab.config.rules`), then the rules between fields in `CROSS_RULES`.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any

from nuwa_lab.config.choices import TASKS
from nuwa_lab.config.rules import has_type, short_repr, type_hints
from nuwa_lab.config.sections import Config
from nuwa_lab.presets import PRESETS, preset_overrides


def _valid_keys(obj: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            keys += _valid_keys(value, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _coerce(old: Any, new: Any, key: str) -> Any:
    """Lists from YAML / papermill become tuples where the default is a tuple."""
    if isinstance(old, tuple) and isinstance(new, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in new)
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return float(new) if abs(new) < 2**1000 else new  # too large: check_config reports it
    return new


def _set(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    name = parts[0]
    current = getattr(obj, name)
    if len(parts) == 1:
        return replace(obj, **{name: _coerce(current, value, key)})
    return replace(obj, **{name: _set(current, parts[1:], value, key)})


def make_config(preset: str = "tiny", **overrides: Any) -> Config:
    """The config of `preset` with `overrides` applied ("model.dim" or "model__dim" keys).

    Every value is checked (`check_config`): a wrong type or a value out of range is a ValueError
    naming the key, the value and what is allowed.
    """
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    cfg = Config(preset=preset)
    valid = set(_valid_keys(cfg))
    dotted = {k.replace("__", "."): v for k, v in overrides.items()}
    merged = {**preset_overrides(preset), **dotted}
    for key, value in merged.items():
        if key not in valid:
            raise ValueError(
                f"unknown config key {key!r}; valid keys: {', '.join(sorted(valid - {'preset'}))}"
            )
        cfg = _set(cfg, key.split("."), value, key)
    return check_config(cfg)


def parse_overrides(text: str | list[str]) -> dict[str, Any]:
    """{"train.steps": 200, "world.source": "shapes"} from "train.steps=200 world.source=shapes".

    The form of a notebook's `CONFIG` parameter and of the CLI's `--set KEY=VALUE` (a list): pairs
    separated by spaces (quote a value that holds spaces, e.g. 'model.extent=(2, 1, 1)'),
    each value read as a Python literal, else kept as text. Keys are checked by `make_config`."""
    pairs = shlex.split(text) if isinstance(text, str) else list(text)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"config override {pair!r}: write KEY=VALUE, e.g. train.steps=200 "
                "(several are separated by spaces)"
            )
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


# Rules between fields: (the key reported, the test, what the key's value must be). Checked once
# every field has passed its own rule; `{model.heads}` in the words is the value of that key.
CROSS_RULES: tuple[tuple[str, Callable[[Config], bool], str], ...] = (
    (
        "model.dim",
        lambda c: c.model.dim % c.model.heads == 0,
        "divisible by model.heads = {model.heads} (each head gets dim / heads channels)",
    ),
    (
        "world.image_size",
        lambda c: c.world.image_size % c.tokenizer.downsample == 0,
        "divisible by tokenizer.downsample = {tokenizer.downsample} (whole tokens per side)",
    ),
    (
        "world.held_out",
        lambda c: all(s in c.world.shapes and k in c.world.colours for s, k in c.world.held_out),
        "held-out pairs (shape, colour) with the shape in world.shapes and the colour in "
        "world.colours",
    ),
    (
        "world.held_out",
        lambda c: all(
            any((s, k) not in c.world.held_out for k in c.world.colours) for s in c.world.shapes
        ),
        "held-out pairs that leave every shape at least one colour in the train split",
    ),
    (
        "tasks.given_frames",
        lambda c: c.tasks.given_frames < c.world.frames,
        "less than world.frames = {world.frames} (V2V generates the frames after the given ones)",
    ),
    (
        "tasks.edit_given_frames",
        lambda c: c.tasks.edit_given_frames < c.world.frames,
        "less than world.frames = {world.frames} (TV2V generates the frames after the kept ones)",
    ),
)


def check_config(cfg: Config) -> Config:
    """`cfg` unchanged when every value is valid, else one ValueError listing each bad key.

    Types come from the annotations (an int is fine for a float; a bool is not an int; floats
    must be finite), ranges from each section's `RULES`, then `CROSS_RULES`.
    """
    problems = list(_field_problems(cfg))
    if not problems:
        sections = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        for key, test, words in CROSS_RULES:
            if not test(cfg):
                value = _lookup(cfg, key)
                problems.append(f"{key} = {short_repr(value)}: must be {words.format(**sections)}")
    if len(problems) == 1:
        raise ValueError(problems[0])
    if problems:
        raise ValueError(f"{len(problems)} invalid config values:\n  " + "\n  ".join(problems))
    return cfg


def _field_problems(section: Any, prefix: str = "") -> Iterator[str]:
    hints = type_hints(type(section))
    for f in fields(section):
        key, value = prefix + f.name, getattr(section, f.name)
        if is_dataclass(value):
            yield from _field_problems(value, key + ".")
            continue
        rule, hint = type(section).RULES[f.name], hints[f.name]
        if not has_type(value, hint):
            finite = isinstance(value, float) and not math.isfinite(value)
            yield f"{key} = {short_repr(value)}: must be {rule.describe(hint)}" + (
                " (nan and inf are not allowed)" if finite else ""
            )
        elif not rule.test(value):
            detail = rule.explain(value) if rule.explain else ""
            yield f"{key} = {short_repr(value)}: must be {rule.describe(hint)}{detail}"


def _lookup(cfg: Config, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def config_hash(*parts: Any, length: int = 12) -> str:
    """A stable short hash of dataclasses / plain values (used to key cached artifacts)."""

    def plain(x: Any) -> Any:
        if is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in fields(x)}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in sorted(x.items())}
        return x

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def as_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config (for metrics.json and run folders)."""
    return dataclasses.asdict(cfg)


def shorter_schedules(
    cfg: Config,
    *,
    tokenizer: float = 1.0,
    model: float = 1.0,
    finetune: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Overrides that train the tokenizer for a fraction `tokenizer` of its optimizer steps, and
    the transformer (multi-task pretraining and every task's fine-tuning budget) for `model`;
    `finetune` gives some tasks' fine-tuning its own fraction instead of `model`.

    Each stage keeps at least one step; the discriminator starts as far into the tokenizer's
    shorter schedule. Warm-ups, batch sizes, learning rates and the probes' schedules are kept.
    For a small data set (the digits' 1,437 training scans) whose full schedules would show the
    models each item dozens of times:

        short = shorter_schedules(make_config("tiny"), tokenizer=0.25, model=0.5,
                                  finetune={"t2v": 0.75})
        cfg = make_config("tiny", **short)
    """
    finetune = dict(finetune or {})
    unknown = sorted(set(finetune) - set(TASKS))
    if unknown:
        raise ValueError(f"finetune names {unknown}, not tasks; known: {', '.join(TASKS)}")
    for name, fraction in (("tokenizer", tokenizer), ("model", model), *finetune.items()):
        if not 0 < fraction <= 1:
            raise ValueError(
                f"{name} must be a fraction in (0, 1] (1 keeps the schedule), got {fraction}"
            )

    def steps(n: int, fraction: float) -> int:
        return max(1, round(n * fraction))

    tasks = cfg.tasks
    rows = {task: (n, batch, lr) for task, n, batch, lr in tasks.finetune_budgets}
    for task in finetune:  # a task on the shared budget gets a row of its own to scale
        rows.setdefault(task, (tasks.finetune_steps, tasks.finetune_batch_size, tasks.finetune_lr))
    return {
        "tokenizer.steps": steps(cfg.tokenizer.steps, tokenizer),
        "tokenizer.disc_start": round(cfg.tokenizer.disc_start * tokenizer),
        "train.steps": steps(cfg.train.steps, model),
        "tasks.finetune_steps": steps(tasks.finetune_steps, model),
        "tasks.finetune_budgets": tuple(
            (task, steps(n, finetune.get(task, model)), batch, lr)
            for task, (n, batch, lr) in rows.items()
        ),
    }
