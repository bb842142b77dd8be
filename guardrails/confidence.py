"""How sure a verdict on a violation rate is: the Wilson score interval (Wilson 1927; Newcombe 1998).

A violation rate measured on n probes is an estimate. An invariant's verdict uses the one-sided upper
confidence bound at the invariant's level (`check.confidence`, 0.95 unless set): with probability at
least that level the true rate is no higher. The interval shown beside a rate, lower–upper, is the
Wilson interval at z = Φ⁻¹(level), whose upper end is that bound (so it is a two-sided interval at
2·level − 1, 90 % for 0.95). Wilson's closed form is used because it stays inside [0, 1] and is not
degenerate at 0 or n violations, where the normal approximation collapses to a zero-width interval.
"""

from __future__ import annotations

import math
from statistics import NormalDist

DEFAULT_CONFIDENCE = 0.95


def wilson(violations: int, n: int, level: float) -> tuple[float, float]:
    """(lower, upper) of the Wilson score interval at z = Φ⁻¹(level) for `violations` out of `n`."""
    if n < 1 or not 0 <= violations <= n:
        raise ValueError(f"a rate needs 0 <= violations <= n and n >= 1, got {violations} of {n}")
    if not 0.5 <= level < 1.0:
        raise ValueError(f"a confidence level is in [0.5, 1), got {level}")
    z = NormalDist().inv_cdf(level)
    p, z2 = violations / n, z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    scale = 1 + z2 / n
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


def upper_bound(rate: float, n: int, level: float) -> float:
    """The one-sided `level` upper bound of a rate measured as a share of n probes."""
    return wilson(round(rate * n), n, level)[1]


def min_probes(max_rate: float, level: float) -> int | None:
    """The fewest probes on which a run with no violation at all has an upper bound within `max_rate`:
    fewer, and the target can never be shown met. None: no number of probes can (max_rate 0)."""
    if max_rate <= 0.0:
        return None
    z2 = NormalDist().inv_cdf(level) ** 2
    n = max(1, math.ceil(z2 * (1 - max_rate) / max_rate))  # the closed form of wilson(0, n)[1] <= max_rate
    while n > 1 and wilson(0, n - 1, level)[1] <= max_rate:  # float rounding either way: agree with `wilson`
        n -= 1
    while wilson(0, n, level)[1] > max_rate:
        n += 1
    return n
