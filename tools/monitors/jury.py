"""Judge-judge disagreement inside a jury: members that order the same two responses oppositely.

The `jury` judge records each member's score in every judgment's details (tools/judges/jury.py);
the round's observation carries them as `pool_scores`. Where members contradict each other the jury's
aggregate is a coin toss between them, and a preference pair built there is noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import ClassVar

from tether_types import FamilyKey as F
from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.families import family_rows, worst
from tools.monitors.stats import regroup

Rows = Sequence[Sequence[float | None]]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def contradictions(a: Rows, b: Rows) -> tuple[int, int]:
    """(opposite, decisive): within-prompt response pairs both judges order strictly (no tie, both
    valid on both responses), and how many of them they order oppositely."""
    opposite = decisive = 0
    for row_a, row_b in zip(a, b, strict=True):
        valid = [(x, y) for x, y in zip(row_a, row_b, strict=True) if x is not None and y is not None]
        for (x1, y1), (x2, y2) in combinations(valid, 2):
            sa, sb = _sign(x1 - x2), _sign(y1 - y2)
            if sa and sb:
                decisive += 1
                opposite += sa != sb
    return opposite, decisive


def disagreement(members: Mapping[str, Rows]) -> float | None:
    """Mean over member pairs of their contradiction share; None when no pair of members has a
    response pair both order strictly."""
    shares = []
    for a, b in combinations(sorted(members), 2):
        opposite, decisive = contradictions(members[a], members[b])
        if decisive:
            shares.append(opposite / decisive)
    return statistics.fmean(shares) if shares else None


class JuryDisagreementMonitor:
    """Values from `pool_scores` (member -> per-response scores; absent or < 2 members: nothing):

    - judge_disagreement: for each pair of members, among same-prompt response pairs both order
      strictly, the share they order oppositely; averaged over member pairs. 0.0 = never contradict,
      0.5 = independent coin flips, 1.0 = always opposite. A member's tie is no contradiction (a rules
      judge that ties where a calculator decides does not disagree with it). Omitted when no member
      pair decides any response pair.
    - family_judge_disagreement_max: the highest per-family judge_disagreement (needs `families`).

    Per family (under `_by_family`, needs `families`): judge_disagreement over that family's prompts.
    """

    theme: ClassVar[str] = "judge"
    keys: ClassVar[tuple[K, ...]] = (K.JUDGE_DISAGREEMENT, K.FAMILY_JUDGE_DISAGREEMENT_MAX)
    family_keys: ClassVar[tuple[F, ...]] = (F.JUDGE_DISAGREEMENT,)

    def _members(self, obs: RoundObservation) -> dict[str, list[list[float | None]]] | None:
        if obs.pool_scores is None or len(obs.pool_scores) < 2:
            return None
        return {name: regroup(scores, obs.responses, f"pool_scores[{name!r}]")
                for name, scores in obs.pool_scores.items()}

    def by_family(self, obs: RoundObservation) -> Mapping[str, Mapping[F, float]]:
        members = self._members(obs)
        if members is None or obs.families is None:
            return {}
        out: dict[str, dict[F, float]] = {}
        for family, rows in family_rows(obs.families).items():
            value = disagreement({name: [m[i] for i in rows] for name, m in members.items()})
            if value is not None:
                out[family] = {F.JUDGE_DISAGREEMENT: value}
        return out

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        members = self._members(obs)
        if members is None:
            return {}
        out: dict[K, float] = {}
        overall = disagreement(members)
        if overall is not None:
            out[K.JUDGE_DISAGREEMENT] = overall
        family = worst(self.by_family(obs), F.JUDGE_DISAGREEMENT, max)
        if family is not None:
            out[K.FAMILY_JUDGE_DISAGREEMENT_MAX] = family
        return out


@MONITORS.register("jury_disagreement")
def jury_disagreement() -> JuryDisagreementMonitor:
    return JuryDisagreementMonitor()
