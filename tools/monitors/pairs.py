"""Preference-pair yield and margins: how much training signal the round produced."""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from tools.monitors.base import MONITORS, RoundObservation


class PairMonitor:
    """Values:

    - pairs: number of preference pairs kept this round.
    - pair_yield: pairs / prompts that had >= 2 valid judgments (0.0 when there were none).
    - margin_mean: mean judge-score margin (chosen - rejected) of the kept pairs (0.0 without pairs).
    """

    def compute(self, obs: RoundObservation) -> Mapping[str, float]:
        n = len(obs.pair_margins)
        return {
            "pairs": float(n),
            "pair_yield": n / obs.candidate_pairs if obs.candidate_pairs else 0.0,
            "margin_mean": statistics.fmean(obs.pair_margins) if n else 0.0,
        }


@MONITORS.register("pairs")
def pairs() -> PairMonitor:
    return PairMonitor()
