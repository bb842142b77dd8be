"""Judge-score distribution and clustering: a judge whose scores pile into one value stops
separating responses, and the round then yields few or no preference pairs."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import ClassVar

from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.stats import flat

BINS = 10  # equal-width bins over the judge's [0, 1] range


def _bin(score: float) -> int:
    return min(BINS - 1, max(0, int(score * BINS)))  # 1.0 goes in the top bin; out-of-range clamps


def histogram_clustering(valid: Sequence[float]) -> tuple[float, float]:
    """(share of scores in the fullest bin, histogram entropy / log(BINS)) over 10 bins of [0, 1]."""
    counts = Counter(_bin(s) for s in valid)
    n = len(valid)
    entropy = -sum(c / n * math.log(c / n) for c in counts.values())
    return max(counts.values()) / n, entropy / math.log(BINS)


def tie_rate(rows: Sequence[Sequence[float | None]]) -> float | None:
    """Share of prompts with >= 2 valid scores whose best and worst are equal; None if no such prompt."""
    spans = [max(v) - min(v) for v in ([s for s in row if s is not None] for row in rows) if len(v) >= 2]
    return sum(span == 0 for span in spans) / len(spans) if spans else None


class ScoreMonitor:
    """Values (judge scores are in [0, 1]):

    - score_mean: mean valid judge score (0.0 when none is valid).
    - score_std: population std of valid scores (0.0 with fewer than 2).
    - invalid_share: share of responses whose judgment was invalid (1.0 for an empty round).
    - score_mode_share: share of valid scores in the fullest of 10 equal bins over [0, 1];
      1.0 = every score in one bin (fully clustered). Omitted when no score is valid.
    - score_entropy: entropy of that 10-bin histogram divided by log(10), in [0, 1];
      0.0 = one bin, 1.0 = uniform over bins. Omitted when no score is valid.
    - tie_rate: share of prompts with >= 2 valid scores whose best and worst score are equal (they
      can yield no pair); 1.0 = fully tied. Omitted when no prompt has 2 valid scores.
    """

    theme: ClassVar[str] = "judge"
    keys: ClassVar[tuple[K, ...]] = (K.SCORE_MEAN, K.SCORE_STD, K.INVALID_SHARE, K.SCORE_MODE_SHARE,
                                     K.SCORE_ENTROPY, K.TIE_RATE)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        values = flat(obs.scores)
        valid = [v for v in values if v is not None]
        out = {
            K.SCORE_MEAN: statistics.fmean(valid) if valid else 0.0,
            K.SCORE_STD: statistics.pstdev(valid) if len(valid) > 1 else 0.0,
            K.INVALID_SHARE: (len(values) - len(valid)) / len(values) if values else 1.0,
        }
        if valid:
            out[K.SCORE_MODE_SHARE], out[K.SCORE_ENTROPY] = histogram_clustering(valid)
        ties = tie_rate(obs.scores)
        if ties is not None:
            out[K.TIE_RATE] = ties
        return out


@MONITORS.register("scores")
def scores() -> ScoreMonitor:
    return ScoreMonitor()
