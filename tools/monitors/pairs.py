"""Preference-pair yield and margins: how much training signal the round produced."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import ClassVar

from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, RoundObservation


class PairMonitor:
    """Values:

    - pairs: number of preference pairs kept this round.
    - pair_yield: pairs / prompts that had >= 2 valid judgments (0.0 when there were none).
    - margin_mean: mean judge-score margin (chosen - rejected) of the kept pairs (0.0 without pairs).
    """

    theme: ClassVar[str] = "prompts"
    keys: ClassVar[tuple[K, ...]] = (K.PAIRS, K.PAIR_YIELD, K.MARGIN_MEAN)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        n = len(obs.pair_margins)
        return {
            K.PAIRS: float(n),
            K.PAIR_YIELD: n / obs.candidate_pairs if obs.candidate_pairs else 0.0,
            K.MARGIN_MEAN: statistics.fmean(obs.pair_margins) if n else 0.0,
        }


@MONITORS.register("pairs")
def pairs() -> PairMonitor:
    return PairMonitor()
