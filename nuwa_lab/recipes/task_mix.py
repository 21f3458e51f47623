"""The task mixture of multi-task pretraining: which tasks, in what ratios, where in a batch.

`cfg.train.task_mix` is ((task, ratio), ...) over `PRETRAIN_TASKS`; a batch of B items is split
between the tasks in proportion to their ratios (largest remainder) and interleaved, so that every
data-parallel shard sees the same mixture (`nuwa_lab.recipes.pretrain`).
"""

from __future__ import annotations

import math

PRETRAIN_TASKS = ("t2i", "v2v", "t2v")  # the canonical order (the config default's)


def parse_task_mix(text: str) -> tuple[tuple[str, float], ...]:
    """Mixture from text: "t2v+t2i" -> (("t2i", 1.0), ("t2v", 1.0)); "t2v:2+t2i:1" sets ratios.

    The result is in the canonical order of `PRETRAIN_TASKS` (that of the config default), so a
    mixture names one artifact however it is written: "t2v+t2i+v2v" is the default mixture.
    """
    mix = []
    for part in text.replace(" ", "").split("+"):
        name, _, ratio = part.partition(":")
        mix.append((name, float(ratio) if ratio else 1.0))
    mix = check_task_mix(tuple(mix))
    return tuple(sorted(mix, key=lambda tr: PRETRAIN_TASKS.index(tr[0])))


def check_task_mix(mix) -> tuple[tuple[str, float], ...]:
    """The mixture as ((task, ratio), ...) with known tasks and positive total, or a ValueError."""
    mix = tuple((str(t), float(r)) for t, r in mix)
    names = [t for t, _ in mix]
    bad = [t for t in names if t not in PRETRAIN_TASKS]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            f"task_mix {mix} has unknown or repeated tasks {bad or names}; pretraining tasks: "
            f"{', '.join(PRETRAIN_TASKS)} (e.g. 't2v+t2i+v2v' or (('t2v', 1.0), ('t2i', 1.0)))"
        )
    if any(r < 0 or not math.isfinite(r) for _, r in mix) or sum(r for _, r in mix) <= 0:
        raise ValueError(f"task_mix ratios must be >= 0 with a positive sum, got {mix}")
    return tuple((t, r) for t, r in mix if r > 0)


def task_counts(mix, batch: int) -> dict[str, int]:
    """Items per task in a batch of `batch`: proportional to the ratios, largest remainder."""
    mix = check_task_mix(mix)
    total = sum(r for _, r in mix)
    exact = {t: batch * r / total for t, r in mix}
    counts = {t: int(math.floor(x)) for t, x in exact.items()}
    by_remainder = sorted(mix, key=lambda tr: exact[tr[0]] - counts[tr[0]], reverse=True)
    for t, _ in by_remainder[: batch - sum(counts.values())]:
        counts[t] += 1
    return {t: n for t, n in counts.items() if n > 0}


def task_layout(mix, batch: int) -> list[str]:
    """The task of each item of a batch, interleaved: item k of task t sits at (k + 1/2) / n_t."""
    counts = task_counts(mix, batch)
    keyed = [((k + 0.5) / n, i, t) for i, (t, n) in enumerate(counts.items()) for k in range(n)]
    return [t for _, _, t in sorted(keyed)]
