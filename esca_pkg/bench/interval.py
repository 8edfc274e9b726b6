"""The 95 % interval of a median and the verdict drawn from it.

The interval is the distribution-free one for the median from order
statistics: with n values sorted x(1) <= ... <= x(n), the true median lies in
[x(k), x(n+1-k)] with probability 1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2),
whatever the distribution (only independence of the pairs is assumed).  k is
the largest index for which that probability is at least the confidence
wanted; below 6 values no k reaches 95 % and the interval is the full range,
with the confidence it really has (n = 5: 94 %, n = 2: 50 %).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

CONFIDENCE = 0.95
IMPROVEMENT = "improvement"
REGRESSION = "regression"
NO_CHANGE = "no change"
UNRESOLVED = "unresolved"


@dataclass(frozen=True)
class Interval:
    """The median of n values and an interval [low, high] holding the true
    median with probability confidence (>= the one asked for, or less when n
    is too small: then `resolved` is False)."""

    median: float
    low: float
    high: float
    n: int
    confidence: float
    resolved: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _binom_cdf_half(k: int, n: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def order_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, float]:
    """(k, coverage): the 1-based rank k of the lower bound (the upper is n+1-k)
    and the interval's exact coverage.  k = 1 (the full range) when even that
    does not reach confidence."""
    if n < 1:
        raise ValueError("an interval needs at least one value")
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _binom_cdf_half(k, n) >= confidence:
        k += 1
    return k, 1 - 2 * _binom_cdf_half(k - 1, n)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The median of values and its distribution-free interval."""
    vals = sorted(values)
    n = len(vals)
    k, coverage = order_ranks(n, confidence)
    return Interval(
        median=statistics.median(vals),
        low=vals[k - 1],
        high=vals[n - k],
        n=n,
        confidence=coverage,
        resolved=coverage >= confidence,
    )


def pairs_needed(confidence: float = CONFIDENCE) -> int:
    """The fewest values for which an interval reaches confidence (6 for 95 %)."""
    n = 1
    while order_ranks(n, confidence)[1] < confidence:
        n += 1
    return n


def resolution_pct(ratio: Interval) -> float:
    """How far from 1 the interval of a ratio reaches, in % (the ±x of 'no change')."""
    return 100.0 * max(abs(ratio.low - 1.0), abs(ratio.high - 1.0))


def verdict(ratio: Interval, lower_is_better: bool = True) -> str:
    """From the interval of a B/A ratio: an improvement or a regression when the
    whole interval is on one side of 1, else no change (to within the
    interval's reach, resolution_pct); unresolved with too few pairs for the
    confidence."""
    if not ratio.resolved:
        return UNRESOLVED
    if ratio.high < 1.0:
        return IMPROVEMENT if lower_is_better else REGRESSION
    if ratio.low > 1.0:
        return REGRESSION if lower_is_better else IMPROVEMENT
    return NO_CHANGE


def describe(ratio: Interval, lower_is_better: bool = True) -> str:
    """'-3.1 % [-4.0, -2.2] improvement', '+0.4 % [-1.2, +1.9] no change (±1.9 %)'."""
    v = verdict(ratio, lower_is_better)
    text = (
        f"{(ratio.median - 1) * 100:+.1f} % "
        f"[{(ratio.low - 1) * 100:+.1f}, {(ratio.high - 1) * 100:+.1f}] {v}"
    )
    if v == NO_CHANGE:
        text += f" (±{resolution_pct(ratio):.1f} %)"
    elif v == UNRESOLVED:
        text += f" ({ratio.n} pairs: {ratio.confidence * 100:.0f} % interval)"
    return text


def half_width_pct(ratio: Interval) -> float:
    """Half the interval's width, in % of 1: the ±x of '-3.0 % ± x'."""
    return 100.0 * (ratio.high - ratio.low) / 2


def pairs_within(ratios: Sequence[float], target_pct: float) -> int | None:
    """The fewest of the first pairs (in the order they ran) whose interval is
    resolved and no wider than ±target_pct, and stays so with every later
    pair; None when the run never got there."""
    found = None
    for n in range(1, len(ratios) + 1):
        iv = median_interval(ratios[:n])
        if iv.resolved and half_width_pct(iv) <= target_pct:
            found = n if found is None else found
        else:
            found = None
    return found
