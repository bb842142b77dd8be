"""Per-family judge signal: where, by prompt family, the judge stops separating responses.

A judge can be sharp on one family and blind on another: the constitution-derived `rules` judge
ranks a refusal below a helpful answer, but cannot tell a right sum from a wrong one. Round-level
clustering (tools/monitors/scores.py) averages such a family away; these values keep it visible.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from tether_types import FamilyKey as F
from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, RoundObservation

TIE = 1e-9  # best and worst valid scores this close are a tie


def family_rows(families: Sequence[str]) -> dict[str, list[int]]:
    """family -> indices of its prompts (rows of the observation), in order."""
    rows: dict[str, list[int]] = {}
    for i, family in enumerate(families):
        rows.setdefault(family, []).append(i)
    return rows


def worst(groups: Mapping[str, Mapping[F, float]], key: F, pick: Callable[[list[float]], float]) -> float | None:
    """The highest (`max`) or lowest (`min`) value of `key` over the families that have it."""
    values = [group[key] for group in groups.values() if key in group]
    return pick(values) if values else None


class FamilySignalMonitor:
    """Per family (stored under `_by_family`; `obs.families` absent: nothing is emitted):

    - prompts: prompts of the family with >= 2 valid judgments.
    - score_spread: mean over those prompts of (best - worst valid score); 0.0 = the judge gives every
      response of every prompt the same score. Best minus worst is the margin a best-worst pair would have.
    - tie_rate: among those prompts whose valid responses are not all the same text, the share whose
      best and worst scores are equal: the judge sees no difference between responses that differ.
      (Identical responses tie with any judge and are not counted.) Omitted when no prompt has
      differing responses.

    Round-level values (the worst family's; omitted when no family has the value):

    - family_tie_rate_max: the highest per-family tie_rate.
    - family_score_spread_min: the lowest per-family score_spread.

    A family where every response is equally good also ties: these values say the judge separates
    nothing there, not why. The controller's blind-spot rule (agent/controller/rules.py) reads them per family.
    """

    theme: ClassVar[str] = "judge"
    keys: ClassVar[tuple[K, ...]] = (K.FAMILY_TIE_RATE_MAX, K.FAMILY_SCORE_SPREAD_MIN)
    family_keys: ClassVar[tuple[F, ...]] = (F.PROMPTS, F.SCORE_SPREAD, F.TIE_RATE)

    def by_family(self, obs: RoundObservation) -> Mapping[str, Mapping[F, float]]:
        if obs.families is None:
            return {}
        if len(obs.families) != len(obs.prompts):
            raise ValueError(f"families: {len(obs.families)} for {len(obs.prompts)} prompts (must be aligned)")
        out: dict[str, dict[F, float]] = {}
        for family, rows in family_rows(obs.families).items():
            spans: list[float] = []
            ties: list[bool] = []
            for i in rows:
                valid = [(r.strip(), s) for r, s in zip(obs.responses[i], obs.scores[i], strict=True) if s is not None]
                if len(valid) < 2:
                    continue
                span = max(s for _, s in valid) - min(s for _, s in valid)
                spans.append(span)
                if len({text for text, _ in valid}) > 1:
                    ties.append(span <= TIE)
            group: dict[F, float] = {F.PROMPTS: float(len(spans))}
            if spans:
                group[F.SCORE_SPREAD] = statistics.fmean(spans)
            if ties:
                group[F.TIE_RATE] = sum(ties) / len(ties)
            out[family] = group
        return out

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        groups = self.by_family(obs)
        out: dict[K, float] = {}
        ties, spread = worst(groups, F.TIE_RATE, max), worst(groups, F.SCORE_SPREAD, min)
        if ties is not None:
            out[K.FAMILY_TIE_RATE_MAX] = ties
        if spread is not None:
            out[K.FAMILY_SCORE_SPREAD_MIN] = spread
        return out


@MONITORS.register("family_signal")
def family_signal() -> FamilySignalMonitor:
    return FamilySignalMonitor()
