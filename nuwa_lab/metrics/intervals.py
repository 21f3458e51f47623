r"""How sure is a number? 95% intervals for rates, means and differences between ablation arms.

A rate measured on n items is one draw: 231 of 256 right reads 90.2%, but the same model on
another 256 items could read 86-93%. An ablation arm trained with one seed is one draw too. So every
number the lab compares carries an interval, and a claim "holds here" only when the interval of the
difference excludes zero.

| quantity | interval | code |
|---|---|---|
| a proportion $\hat p = k/n$ | Wilson score | `wilson_interval(k, n)` |
| mean over items (PSNR), set statistic (lab-FID) | bootstrap over items | `bootstrap_interval(x)` |
| an arm over seeds | mean ± sd | `seed_summary(values)` |
| the mean of an arm over seeds | t-interval | `mean_interval(values)` |
| arm A − arm B over seeds | Welch t-interval | `difference_interval(a, b)` |

Wilson (1927): with $z = \Phi^{-1}(1 - \alpha/2)$,
$$ \frac{\hat p + \frac{z^2}{2n} \pm z \sqrt{\frac{\hat p (1 - \hat p)}{n} + \frac{z^2}{4n^2}}}
        {1 + \frac{z^2}{n}} $$
which, unlike $\hat p \pm z\sqrt{\hat p(1-\hat p)/n}$, stays inside [0, 1] and is not zero-width at
0/n or n/n.

Welch: $\bar a - \bar b \pm t_{\nu}\sqrt{s_a^2/n_a + s_b^2/n_b}$ with the Welch-Satterthwaite
degrees of freedom $\nu$. With 3 seeds per arm $t_\nu$ is large (about 2.8-4.3), so only a
difference several times the seed spread is resolved: that is the honest answer at 3 seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
HOLDS = "holds here"
NOT_RESOLVED = "not resolved at this budget"


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(stats.norm.ppf(1 - (1 - confidence) / 2))


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval (low, high) of the proportion successes / n."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = _z(confidence)
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    # the interval holds p (exactly 0 at 0/n and 1 at n/n; round-off would leave ~1e-17 there)
    return min(p, max(0.0, (centre - half) / scale)), max(p, min(1.0, (centre + half) / scale))


def rate_interval(rate: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson interval of a rate measured on n items (the count is rate * n, rounded)."""
    return wilson_interval(round(rate * n), n, confidence)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over items (rows of `values` are resampled).

    `values` may be (n,) numbers or (n, ...) per-item features, for a statistic of the whole set
    such as a Fréchet distance."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 items, got {n}")
    rng = np.random.default_rng(seed)
    draws = np.array(
        [statistic(values[rng.integers(0, n, n)]) for _ in range(resamples)], dtype=np.float64
    )
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def seed_summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1) and count of one arm's per-seed results."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no values to summarise")
    sd = float(x.std(ddof=1)) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "sd": sd, "n": int(len(x))}


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t-interval (low, high) of the mean of per-seed values: mean ± t_{n-1} · sd / sqrt(n)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"need at least 2 values for an interval of their mean, got {len(x)}")
    half = (
        float(stats.t.ppf(1 - (1 - confidence) / 2, len(x) - 1)) * x.std(ddof=1) / math.sqrt(len(x))
    )
    return float(x.mean()) - half, float(x.mean()) + half


def difference_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> dict[str, float]:
    """Mean of a minus mean of b over seeds, with its Welch t-interval (low, high).

    Needs at least 2 values per arm. If both arms have zero spread, the interval is the point."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 seeds per arm, got {len(a)} and {len(b)}")
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"difference": diff, "low": diff, "high": diff, "df": float("inf")}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = float(stats.t.ppf(1 - (1 - confidence) / 2, df))
    return {"difference": diff, "low": diff - t * se, "high": diff + t * se, "df": float(df)}


def verdict(low: float, high: float) -> str:
    """The verdict: "holds here" when the interval of a difference excludes zero, else "not
    resolved at this budget"."""
    return HOLDS if low > 0 or high < 0 else NOT_RESOLVED


def format_interval(value: float, low: float, high: float, *, percent: bool = False) -> str:
    """'90.2% [86.0, 93.4]' or '31.5 [30.1, 32.8]'."""
    if percent:
        return f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
    digits = 2 if max(abs(value), abs(low), abs(high)) < 10 else 1
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
