"""Per-family monitors on constructed rounds with known values: where the judge ties, where a jury
contradicts itself, where the pair margin collapses; and how their per-family values are stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import pytest

from tether_types import BY_FAMILY, COULD_NOT_CHECK
from tools.monitors import MONITORS, FamilyKey, MonitorKey, Readings, RoundObservation, run_monitors
from tools.registry import Built

K, F = MonitorKey, FamilyKey


def obs(responses, scores, families=None, margins=(), **optional) -> RoundObservation:
    return RoundObservation(prompts=[f"p{i}" for i in range(len(responses))], responses=responses,
                            lengths=[[1] * len(row) for row in responses], scores=scores,
                            pair_margins=list(margins), candidate_pairs=len(responses), families=families, **optional)


# Arithmetic: the judge scores a right and a wrong sum alike (tied), one prompt's replies are identical
# (no judge could separate them: not counted). How-to: the judge separates every prompt.
ROUND = obs(
    responses=[["7.", "8."], ["12.", "12."], ["It is 5.", "5!", "Six."], ["Boil it.", "No."], ["Mix.", "Stir well."]],
    scores=[[1.0, 1.0], [1.0, 1.0], [0.9, 0.9, 0.9], [0.9, 0.1], [0.4, 0.8]],
    families=["arithmetic", "arithmetic", "arithmetic", "howto", "howto"],
)


def test_family_tie_rate_and_spread_single_out_the_blind_family() -> None:
    monitor = MONITORS.build("family_signal").plugin
    groups = monitor.by_family(ROUND)
    assert groups["arithmetic"] == {F.PROMPTS: 3.0, F.SCORE_SPREAD: 0.0, F.TIE_RATE: 1.0}  # 2 of 2 differing: tied
    assert groups["howto"][F.TIE_RATE] == 0.0 and groups["howto"][F.SCORE_SPREAD] == pytest.approx((0.8 + 0.4) / 2)
    values = monitor.compute(ROUND)
    assert values == {K.FAMILY_TIE_RATE_MAX: 1.0, K.FAMILY_SCORE_SPREAD_MIN: 0.0}
    # Round-level clustering hides it: the round's tie rate is 3 of 5, its spread is high.
    assert MONITORS.build("scores").plugin.compute(ROUND)[K.TIE_RATE] == pytest.approx(3 / 5)


def test_family_values_need_families_and_two_valid_judgments() -> None:
    monitor = MONITORS.build("family_signal").plugin
    unlabelled = obs([["a", "b"]], [[0.1, 0.2]])
    assert monitor.by_family(unlabelled) == {} and monitor.compute(unlabelled) == {}
    one_valid = obs([["a", "b"]], [[0.5, None]], families=["f"])
    assert monitor.by_family(one_valid) == {"f": {F.PROMPTS: 0.0}} and monitor.compute(one_valid) == {}
    with pytest.raises(ValueError, match="aligned"):
        monitor.by_family(obs([["a", "b"]], [[0.5, 0.5]], families=["f", "g"]))


def test_jury_disagreement_counts_opposite_orders_not_ties() -> None:
    # Member "rules" ties every arithmetic pair; "calc" decides them: no contradiction. "contrarian"
    # reverses calc on arithmetic: every decisive pair contradicts.
    pool = {"rules": [1.0, 1.0, 0.9, 0.1], "calc": [1.0, 0.0, 0.9, 0.1], "contrarian": [0.0, 1.0, 0.9, 0.1]}
    round_ = obs([["7.", "8."], ["Boil it.", "No."]], [[1.0, 0.5], [0.9, 0.1]], families=["arithmetic", "howto"],
                 pool_scores=pool)
    monitor = MONITORS.build("jury_disagreement").plugin
    groups = monitor.by_family(round_)
    # arithmetic: calc~contrarian 1 of 1 opposite; rules ties, so no decisive pair with either: mean of 1 share.
    assert groups["arithmetic"] == {F.JUDGE_DISAGREEMENT: 1.0}
    assert groups["howto"] == {F.JUDGE_DISAGREEMENT: 0.0}
    values = monitor.compute(round_)
    # Whole round: calc~contrarian 1 of 2, calc~rules 0 of 1, contrarian~rules 0 of 1.
    assert values[K.JUDGE_DISAGREEMENT] == pytest.approx((0.5 + 0 + 0) / 3)
    assert values[K.FAMILY_JUDGE_DISAGREEMENT_MAX] == 1.0
    assert monitor.compute(obs([["a", "b"]], [[0.1, 0.9]], pool_scores={"only": [0.1, 0.9]})) == {}
    assert monitor.compute(obs([["a", "b"]], [[0.1, 0.9]])) == {}


def test_margin_collapse_against_the_runs_earlier_peak() -> None:
    earlier = [[("arithmetic", 0.6), ("howto", 0.8)], [("arithmetic", 0.4), ("howto", 0.9)]]
    round_ = obs([["a", "b"], ["c", "d"]], [[0.1, 0.2], [0.3, 0.4]], families=["arithmetic", "howto"],
                 margins=[0.45], pair_families=["howto"], earlier_pairs=earlier)
    monitor = MONITORS.build("margin_collapse").plugin
    groups = monitor.by_family(round_)
    assert groups["arithmetic"] == {F.MARGIN_COLLAPSE: 1.0}  # no pair this round after a peak of 0.6
    assert groups["howto"] == {F.MARGIN_MEAN: 0.45, F.MARGIN_COLLAPSE: pytest.approx(0.5)}  # 0.45 of a 0.9 peak
    values = monitor.compute(round_)
    assert values[K.MARGIN_COLLAPSE] == pytest.approx(1 - 0.45 / 0.7)  # round means: 0.7, 0.65
    assert values[K.FAMILY_MARGIN_COLLAPSE_MAX] == 1.0
    rising = obs([["a", "b"]], [[0.1, 0.9]], families=["f"], margins=[0.8], pair_families=["f"],
                 earlier_pairs=[[("f", 0.5)]])
    assert monitor.compute(rising)[K.MARGIN_COLLAPSE] == 0.0
    first = obs([["a", "b"]], [[0.1, 0.9]], families=["f"], margins=[0.8], pair_families=["f"], earlier_pairs=[])
    assert monitor.compute(first) == {} and monitor.by_family(first) == {"f": {F.MARGIN_MEAN: 0.8}}


class Failing:
    keys: ClassVar[tuple[MonitorKey, ...]] = (K.FAMILY_TIE_RATE_MAX, K.FAMILY_SCORE_SPREAD_MIN)
    family_keys: ClassVar[tuple[FamilyKey, ...]] = (F.TIE_RATE,)

    def __init__(self, groups: Mapping[str, Mapping[FamilyKey, float]]) -> None:
        self.groups = groups

    def compute(self, obs: RoundObservation) -> Mapping[MonitorKey, float]:
        return {K.FAMILY_TIE_RATE_MAX: 0.5}

    def by_family(self, obs: RoundObservation) -> Mapping[str, Mapping[FamilyKey, float]]:
        return self.groups


def test_per_family_values_are_stored_and_a_failure_is_could_not_check() -> None:
    built = [MONITORS.build(n) for n in ("family_signal", "margin_collapse")]
    readings = run_monitors(built, ROUND)
    stored = readings.to_json()
    assert stored[BY_FAMILY]["arithmetic"][F.TIE_RATE] == 1.0
    assert Readings.from_json(stored) == readings
    for groups, why in (({"f": {F.TIE_RATE: float("nan")}}, "not a finite number"),
                        ({"f": {F.SCORE_SPREAD: 0.1}}, "undeclared family key")):
        failed = run_monitors([Built("bad", {}, Failing(groups))], ROUND)
        assert not failed.by_family and not failed.values
        assert set(failed.could_not_check) == {K.FAMILY_TIE_RATE_MAX, K.FAMILY_SCORE_SPREAD_MIN}
        assert why in failed.could_not_check[K.FAMILY_TIE_RATE_MAX]
        assert BY_FAMILY not in failed.to_json() and COULD_NOT_CHECK in failed.to_json()
    with pytest.raises(ValueError, match="did you mean 'tie_rate'"):
        Readings.from_json({BY_FAMILY: {"f": {"tie_rat": 0.5}}})
    assert Readings.from_json({BY_FAMILY: {"f": {"tie_rate": None}}}).by_family == {"f": {}}
