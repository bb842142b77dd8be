"""Margin collapse: the chosen-rejected gap of the kept pairs narrowing round over round.

The iteration ceiling shows here first: as the policy learns what its judge rewards, its best and
worst responses score alike and the pairs carry less and less preference (Wu et al. 2024's judge
scores clustering; tether's seeds 001/002). Measured against the run's own earlier rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import ClassVar

from tether_types import FamilyKey as F
from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.families import worst


def collapse(now: float, earlier: Sequence[float]) -> float | None:
    """How far `now` fell below the peak of `earlier`, as a share of that peak, in [0, 1]; None
    without a positive peak."""
    peak = max(earlier, default=0.0)
    if peak <= 0:
        return None
    return max(0.0, (peak - now) / peak)


def _mean_by_family(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    grouped: dict[str, list[float]] = {}
    for family, margin in pairs:
        grouped.setdefault(family, []).append(margin)
    return {family: statistics.fmean(margins) for family, margins in grouped.items()}


class MarginCollapseMonitor:
    """Values (`earlier_pairs`: each earlier round's kept pairs as (family, margin)):

    - margin_collapse: the round's mean pair margin below the highest mean margin of an earlier round
      of the run, as a share of that peak, in [0, 1]; a round without pairs has margin 0 (collapse
      1.0). Omitted without earlier rounds with pairs (no peak to fall from).
    - family_margin_collapse_max: the highest per-family margin_collapse.

    Per family (under `_by_family`; needs `pair_families`), for each family this round drew:

    - margin_mean: mean margin of the family's kept pairs this round; omitted without one.
    - margin_collapse: as margin_collapse, over the family's own pairs (0 this round when the family
      yielded none); omitted when no earlier round had a pair of the family.
    """

    theme: ClassVar[str] = "prompts"
    keys: ClassVar[tuple[K, ...]] = (K.MARGIN_COLLAPSE, K.FAMILY_MARGIN_COLLAPSE_MAX)
    family_keys: ClassVar[tuple[F, ...]] = (F.MARGIN_MEAN, F.MARGIN_COLLAPSE)

    def by_family(self, obs: RoundObservation) -> Mapping[str, Mapping[F, float]]:
        if obs.pair_families is None:
            return {}
        if len(obs.pair_families) != len(obs.pair_margins):
            raise ValueError(f"pair_families: {len(obs.pair_families)} for {len(obs.pair_margins)} pairs "
                             "(must be aligned)")
        now = _mean_by_family(list(zip(obs.pair_families, obs.pair_margins, strict=True)))
        earlier = [_mean_by_family(pairs) for pairs in obs.earlier_pairs or ()]
        out: dict[str, dict[F, float]] = {}
        for family in sorted(set(obs.families or ()) | set(now)):
            group: dict[F, float] = {}
            if family in now:
                group[F.MARGIN_MEAN] = now[family]
            fell = collapse(now.get(family, 0.0), [r[family] for r in earlier if family in r])
            if fell is not None:
                group[F.MARGIN_COLLAPSE] = fell
            if group:
                out[family] = group
        return out

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        out: dict[K, float] = {}
        peaks = [statistics.fmean(m for _, m in pairs) for pairs in obs.earlier_pairs or () if pairs]
        fell = collapse(statistics.fmean(obs.pair_margins) if obs.pair_margins else 0.0, peaks)
        if fell is not None:
            out[K.MARGIN_COLLAPSE] = fell
        family = worst(self.by_family(obs), F.MARGIN_COLLAPSE, max)
        if family is not None:
            out[K.FAMILY_MARGIN_COLLAPSE_MAX] = family
        return out


@MONITORS.register("margin_collapse")
def margin_collapse() -> MarginCollapseMonitor:
    return MarginCollapseMonitor()
