"""Small statistics the monitors share (no scipy: it is not a guaranteed dependency)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import TypeVar

T = TypeVar("T")


def flat(rows: Iterable[Iterable[T]]) -> list[T]:
    return [value for row in rows for value in row]


def regroup(values: Sequence[T], shape: Sequence[Sequence[object]], what: str) -> list[list[T]]:
    """Cut a flat, row-major sequence back into rows shaped like `shape` (the round's responses)."""
    sizes = [len(row) for row in shape]
    if len(values) != sum(sizes):
        raise ValueError(f"{what}: {len(values)} values for {sum(sizes)} responses (must be aligned)")
    rows, start = [], 0
    for size in sizes:
        rows.append(list(values[start : start + size]))
        start += size
    return rows


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson's r; 0.0 when undefined (fewer than 2 points or either side constant)."""
    if len(xs) < 2:
        return 0.0
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:  # constant input: no linear relation to measure
        return 0.0


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the average of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rho (Pearson on tie-averaged ranks, as scipy.stats.spearmanr); 0.0 when undefined."""
    return pearson(ranks(xs), ranks(ys))


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def pair_concordance(
    a: Sequence[Sequence[float | None]], b: Sequence[Sequence[float | None]], *, skip_b_ties: bool
) -> tuple[int, int]:
    """(agreeing, compared) within-row response pairs where both scorers gave valid scores.

    Two scorers agree on a pair when they order it the same way (a tie equals only a tie). Only
    within-row (same prompt) pairs count: preference pairs are only ever built within a prompt.
    With `skip_b_ties`, pairs that `b` scores equal are not compared (b is the reference).
    """
    agree = total = 0
    for row_a, row_b in zip(a, b, strict=True):
        valid = [(x, y) for x, y in zip(row_a, row_b, strict=True) if x is not None and y is not None]
        for (x1, y1), (x2, y2) in combinations(valid, 2):
            sb = _sign(y1 - y2)
            if skip_b_ties and sb == 0:
                continue
            total += 1
            agree += _sign(x1 - x2) == sb
    return agree, total
