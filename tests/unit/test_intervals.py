"""The lab's intervals against known answers (textbook values and scipy's own Welch test)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nuwa_lab.metrics.intervals import (
    HOLDS,
    NOT_RESOLVED,
    bootstrap_interval,
    difference_interval,
    format_interval,
    rate_interval,
    seed_summary,
    verdict,
    wilson_interval,
)


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (50, 100, 0.4038, 0.5962),  # the textbook example
        (0, 10, 0.0, 0.2775),  # z^2 / (n + z^2): not zero-width at 0/n
        (10, 10, 0.7225, 1.0),
        (231, 256, 0.8595, 0.9327),
    ],
)
def test_wilson_matches_the_closed_form(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-4)


@pytest.mark.parametrize("n", [3, 7, 10, 64, 256, 1000])
def test_wilson_holds_the_rate_itself_even_at_none_and_all(n):
    for k in range(n + 1):
        low, high = wilson_interval(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_a_rate_interval_is_the_wilson_interval_of_its_count():
    assert rate_interval(0.91, 256) == wilson_interval(233, 256)


def test_wilson_refuses_impossible_counts():
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(0, 0)


def test_welch_difference_equals_scipys():
    a, b = [0.91, 0.88, 0.93], [0.80, 0.84, 0.79]
    got = difference_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert got["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (got["low"], got["high"]) == pytest.approx((ref.low, ref.high))
    assert verdict(got["low"], got["high"]) == HOLDS


def test_a_difference_inside_the_seed_spread_is_not_resolved():
    got = difference_interval([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])
    assert got["low"] < 0 < got["high"]
    assert verdict(got["low"], got["high"]) == NOT_RESOLVED


def test_a_difference_needs_two_seeds_per_arm():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        difference_interval([1.0], [1.0, 2.0])


def test_bootstrap_of_a_constant_has_no_width_and_of_a_large_sample_matches_the_normal_one():
    assert bootstrap_interval([3.0] * 20) == (3.0, 3.0)
    x = np.random.default_rng(1).normal(10.0, 2.0, 4000)
    low, high = bootstrap_interval(x, resamples=1000)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert low == pytest.approx(x.mean() - half, abs=0.02)
    assert high == pytest.approx(x.mean() + half, abs=0.02)


def test_bootstrap_is_seeded_and_works_on_a_statistic_of_the_whole_set():
    x = np.random.default_rng(2).normal(0, 1, (50, 3))
    spread = lambda rows: float(rows.std(axis=0).mean())  # noqa: E731
    assert bootstrap_interval(x, spread, seed=5) == bootstrap_interval(x, spread, seed=5)


def test_seed_summary_and_formatting():
    s = seed_summary([1.0, 2.0, 3.0])
    assert s == {"mean": 2.0, "sd": 1.0, "n": 3}
    assert format_interval(0.902, 0.86, 0.934, percent=True) == "90.2% [86.0, 93.4]"
    assert format_interval(31.52, 30.1, 32.83) == "31.5 [30.1, 32.8]"


def test_mean_interval_is_the_t_interval_of_scipy():
    from nuwa_lab.metrics.intervals import mean_interval

    values = [0.91, 0.88, 0.93]
    low, high = mean_interval(values)
    ref = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(ref)
    assert mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError, match="at least 2 values"):
        mean_interval([1.0])
