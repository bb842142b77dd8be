"""First monitors: judge-score spread, response diversity, length, pair yield."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping

from tools.monitors.base import MONITORS, RoundObservation


def _flat(rows: Iterable[Iterable[float | None]]) -> list[float | None]:
    return [value for row in rows for value in row]


class ScoreMonitor:
    def compute(self, obs: RoundObservation) -> Mapping[str, float]:
        values = _flat(obs.scores)
        valid = [v for v in values if v is not None]
        return {
            "score_mean": statistics.fmean(valid) if valid else 0.0,
            "score_std": statistics.pstdev(valid) if len(valid) > 1 else 0.0,
            "invalid_share": (len(values) - len(valid)) / len(values) if values else 1.0,
        }


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique n-grams over all n-grams across texts (Li et al., 2016)."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


class DiversityMonitor:
    def compute(self, obs: RoundObservation) -> Mapping[str, float]:
        texts = [r for row in obs.responses for r in row]
        return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2)}


class LengthMonitor:
    def compute(self, obs: RoundObservation) -> Mapping[str, float]:
        lengths = [n for row in obs.lengths for n in row]
        return {"length_mean": statistics.fmean(lengths) if lengths else 0.0}


class PairMonitor:
    def compute(self, obs: RoundObservation) -> Mapping[str, float]:
        n = len(obs.pair_margins)
        return {
            "pairs": float(n),
            "pair_yield": n / obs.candidate_pairs if obs.candidate_pairs else 0.0,
            "margin_mean": statistics.fmean(obs.pair_margins) if n else 0.0,
        }


@MONITORS.register("scores")
def scores() -> ScoreMonitor:
    return ScoreMonitor()


@MONITORS.register("diversity")
def diversity() -> DiversityMonitor:
    return DiversityMonitor()


@MONITORS.register("length")
def length() -> LengthMonitor:
    return LengthMonitor()


@MONITORS.register("pairs")
def pairs() -> PairMonitor:
    return PairMonitor()
