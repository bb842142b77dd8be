"""Judge reliability: position bias, disagreement inside the judge pool, and (on the tiny world)
disagreement with the programmatic oracle that the agent's judges never see."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import ClassVar

from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, PairwiseWinner, RoundObservation
from tools.monitors.stats import flat, pair_concordance, regroup, spearman

Verdicts = Sequence[tuple[PairwiseWinner | None, PairwiseWinner | None]]


def position_values(pairwise: Verdicts) -> dict[K, float]:
    """Position consistency and first-slot preference of (order AB, order BA) verdicts."""
    if not pairwise:
        return {}
    both = [(ab, ba) for ab, ba in pairwise if ab is not None and ba is not None]
    out = {K.PAIRWISE_INVALID_SHARE: 1 - len(both) / len(pairwise)}
    if both:
        out[K.POSITION_CONSISTENCY] = sum(ab == ba for ab, ba in both) / len(both)
    # In order AB the first slot holds a; in order BA it holds b (verdicts use the original labels).
    decided = [v == first for ab, ba in pairwise for v, first in ((ab, "a"), (ba, "b")) if v in ("a", "b")]
    if decided:
        out[K.POSITION_FIRST_RATE] = sum(decided) / len(decided)
    return out


def pool_agreement(pool: Mapping[str, Sequence[float | None]], shape: Sequence[Sequence[str]]) -> dict[K, float]:
    """Mean over judge pairs of their within-prompt same-order share (see JudgeReliabilityMonitor)."""
    rows = {name: regroup(scores, shape, f"pool_scores[{name!r}]") for name, scores in pool.items()}
    shares = []
    for a, b in combinations(sorted(rows), 2):
        agree, total = pair_concordance(rows[a], rows[b], skip_b_ties=False)
        if total:
            shares.append(agree / total)
    out = {K.JUDGE_POOL_SIZE: float(len(rows))}
    if shares:
        out[K.JUDGE_POOL_AGREEMENT] = statistics.fmean(shares)
    return out


def oracle_agreement(obs: RoundObservation, oracle: Sequence[Sequence[float | None]]) -> dict[K, float]:
    both = [(j, o) for j, o in zip(flat(obs.scores), flat(oracle), strict=True) if j is not None and o is not None]
    if not both:
        return {}
    out = {K.ORACLE_SPEARMAN: spearman([j for j, _ in both], [o for _, o in both])}
    agree, total = pair_concordance(obs.scores, oracle, skip_b_ties=True)
    if total:
        out[K.ORACLE_PAIR_AGREEMENT] = agree / total
    return out


class JudgeReliabilityMonitor:
    """Values, each group omitted when its input is absent from the observation:

    From `pairwise` (one (AB, BA) verdict pair per comparison):
    - pairwise_invalid_share: share of comparisons where either order gave an invalid verdict.
    - position_consistency: share of comparisons with both verdicts valid whose two verdicts agree
      ("tie" agrees only with "tie"); 1.0 = no position effect.
    - position_first_rate: share of decisive verdicts ("a"/"b") that picked whichever response was
      shown first; 0.5 = no position preference, near 1 = first-slot bias, near 0 = last-slot bias.

    From `pool_scores` (judge -> per-response scores):
    - judge_pool_size: number of judges in the pool.
    - judge_pool_agreement: for each pair of judges, the share of same-prompt response pairs (both
      judges valid on both) that the two judges order the same way (higher / lower / tie, a tie
      agreeing only with a tie), averaged over judge pairs; in [0, 1], 1.0 = identical preferences.
      Same-sign agreement rather than Spearman because pairs are built within a prompt and it stays
      defined for constant judges. Omitted with < 2 judges or no comparable pair.

    From `oracle_scores` (tiny world):
    - oracle_spearman: Spearman correlation between judge and oracle scores over responses where both
      are valid, ties rank-averaged; in [-1, 1], 0.0 when undefined (constant judge or oracle).
    - oracle_pair_agreement: among same-prompt response pairs the oracle scores differently (both
      valid), the share the judge orders the same way (a judge tie counts as disagreement).
    """

    theme: ClassVar[str] = "judge"
    keys: ClassVar[tuple[K, ...]] = (K.PAIRWISE_INVALID_SHARE, K.POSITION_CONSISTENCY, K.POSITION_FIRST_RATE,
                                     K.JUDGE_POOL_SIZE, K.JUDGE_POOL_AGREEMENT, K.ORACLE_SPEARMAN,
                                     K.ORACLE_PAIR_AGREEMENT)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        out: dict[K, float] = {}
        if obs.pairwise is not None:
            out.update(position_values(obs.pairwise))
        if obs.pool_scores is not None:
            out.update(pool_agreement(obs.pool_scores, obs.responses))
        if obs.oracle_scores is not None:
            out.update(oracle_agreement(obs, obs.oracle_scores))
        return out


@MONITORS.register("judge_reliability")
def judge_reliability() -> JudgeReliabilityMonitor:
    return JudgeReliabilityMonitor()
