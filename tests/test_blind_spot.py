"""The blind-spot rule on scripted rounds: a family whose preference signal collapsed moves the run to
the next judge of the pool, else the next pair strategy, instead of training on it; every threshold is
a logged check. The policy is pure: no model, no store."""

from __future__ import annotations

from collections.abc import Mapping

from agent.config import ControllerConfig
from agent.controller.policy import ControllerInput, RoundSignals, decide
from tether_types import FamilyKey, MonitorKey

K, F = MonitorKey, FamilyKey
CFG = ControllerConfig(rounds=20, interventions=["switch_judge", "regenerate_prompts", "add_adversarial",
                                                 "propose_amendment", "switch_pairs"])
HEALTHY = {K.LENGTH_SCORE_CORR: 0.1, K.POSITION_CONSISTENCY: 1.0, K.INVALID_SHARE: 0.0, K.PROMPT_REUSE: 0.0,
           K.PROMPT_EMBEDDING_DISPERSION: 0.6, K.MARGIN_MEAN: 0.5, K.OVER_REFUSAL: 0.05}
SHARP = {F.PROMPTS: 20.0, F.TIE_RATE: 0.1, F.SCORE_SPREAD: 0.6}
BLIND = {F.PROMPTS: 20.0, F.TIE_RATE: 0.95, F.SCORE_SPREAD: 0.02}


def rnd(n: int, action: str | None = None, judge: str = "rules", pairs_strategy: str = "best_worst",
        families: Mapping[str, Mapping[FamilyKey, float]] | None = None, could_not_check: Mapping | None = None,
        **monitors: float) -> RoundSignals:
    by_family = {"arithmetic": BLIND, "howto": SHARP} if families is None else families
    return RoundSignals(round=n, pairs=30, monitors={**HEALTHY, **{K(k): v for k, v in monitors.items()}},
                        could_not_check=dict(could_not_check or {}), judge=judge, action=action,
                        outcome="approved" if action == "train" else None, by_family=by_family,
                        pairs_strategy=pairs_strategy)


def inp(now: RoundSignals, past: list[RoundSignals] | None = None, **kw: object) -> ControllerInput:
    return ControllerInput(now=now, budget=20, past=tuple(past or ()), **kw)  # type: ignore[arg-type]


def check(decision, signal: str):
    return next(c for c in decision.checks if c.signal == signal)


def test_a_family_blind_for_patience_rounds_switches_to_the_next_judge() -> None:
    d = decide(inp(rnd(3), past=[rnd(1, "train"), rnd(2, "train")], next_judge="calculator",
                   next_pairs="anchored"), CFG)
    assert d.action == "switch_judge"
    assert d.signals["switch"]["to"] == "calculator" and d.signals["switch"]["family"] == "arithmetic"
    assert d.signals["blind_spot"]["family"] == "arithmetic" and d.signals["blind_spot"]["rounds"] == 3
    tie = check(d, "family_tie_rate[arithmetic]")
    assert tie.fired and tie.op == ">=" and tie.threshold == 0.8 and tie.setting == "blind_spot.max_family_tie_rate"
    assert check(d, "family_score_spread[arithmetic]").fired
    assert not check(d, "family_tie_rate[howto]").fired  # every family is checked, fired or not
    assert check(d, "blind_spot_rounds_in_a_row[arithmetic]").value == 3
    assert "family arithmetic" in d.rationale and "not trained on" in d.rationale


def test_one_blind_round_is_not_enough() -> None:
    d = decide(inp(rnd(1), next_judge="calculator"), CFG)
    assert d.action == "train"
    streak = check(d, "blind_spot_rounds_in_a_row[arithmetic]")
    assert streak.value == 1 and not streak.fired and streak.setting == "blind_spot.patience"


def test_the_streak_counts_only_rounds_of_the_same_judge_and_pair_strategy() -> None:
    after_switch = [rnd(1, "train", judge="length_biased"), rnd(2, "switch_judge", judge="length_biased")]
    assert decide(inp(rnd(3), past=after_switch, next_judge="calculator"), CFG).action == "train"
    other_strategy = [rnd(1, "train", pairs_strategy="diverse")]
    assert decide(inp(rnd(2), past=other_strategy, next_judge="calculator"), CFG).action == "train"
    sharp_before = [rnd(1, "train", families={"arithmetic": SHARP})]
    assert decide(inp(rnd(2), past=sharp_before, next_judge="calculator"), CFG).action == "train"
    assert decide(inp(rnd(2), past=[rnd(1, "train")], next_judge="calculator"), CFG).action == "switch_judge"


def test_without_a_judge_left_the_next_pair_strategy_builds_the_pairs() -> None:
    d = decide(inp(rnd(2), past=[rnd(1, "train")], next_pairs="anchored"), CFG)
    assert d.action == "switch_pairs"
    assert d.signals["pairs_switch"] == {"from": "best_worst", "to": "anchored", "family": "arithmetic",
                                         "why": d.signals["blind_spot"]["why"]}
    # switch_pairs moves forward through a finite pool: no repeat limit holds it back.
    past = [rnd(1, "switch_pairs"), rnd(2, "switch_pairs", pairs_strategy="x"), rnd(3, "train")]
    assert decide(inp(rnd(4), past=past, next_pairs="diverse"), CFG.model_copy(update={"max_repeats": 1})
                  ).action == "switch_pairs"


def test_with_nothing_to_switch_to_the_round_trains_with_a_warning() -> None:
    d = decide(inp(rnd(2), past=[rnd(1, "train")]), CFG)
    assert d.action == "train"
    (warning,) = d.signals["warnings"]
    assert "family arithmetic" in warning and "no other judge left" in warning and "no other strategy" in warning
    without = ControllerConfig(rounds=20, interventions=["switch_judge", "regenerate_prompts", "add_adversarial",
                                                         "propose_amendment"])  # switch_pairs left out
    d = decide(inp(rnd(2), past=[rnd(1, "train")], next_pairs="anchored"), without)
    assert d.action == "train" and "switch_pairs is not in controller.interventions" in d.signals["warnings"][0]
    fixed = decide(inp(rnd(2), past=[rnd(1, "train")], next_judge="calculator"),
                   CFG.model_copy(update={"interventions": []}))
    assert fixed.action == "train" and "nothing to switch to" in fixed.signals["warnings"][0]


def test_a_jury_that_contradicts_itself_or_a_collapsed_margin_is_a_blind_spot() -> None:
    contested = {"howto": {F.PROMPTS: 20.0, F.TIE_RATE: 0.0, F.SCORE_SPREAD: 0.5, F.JUDGE_DISAGREEMENT: 0.6}}
    d = decide(inp(rnd(2, families=contested), past=[rnd(1, "train", families=contested)], next_judge="c"), CFG)
    assert d.action == "switch_judge" and check(d, "family_judge_disagreement[howto]").fired
    collapsed = {"howto": {F.PROMPTS: 20.0, F.TIE_RATE: 0.0, F.SCORE_SPREAD: 0.5, F.MARGIN_COLLAPSE: 0.7}}
    d = decide(inp(rnd(2, families=collapsed), past=[rnd(1, "train", families=collapsed)], next_judge="c"), CFG)
    assert d.action == "switch_judge" and check(d, "family_margin_collapse[howto]").fired
    healthy = {"howto": {**SHARP, F.JUDGE_DISAGREEMENT: 0.1, F.MARGIN_COLLAPSE: 0.2}}
    d = decide(inp(rnd(2, families=healthy), past=[rnd(1, "train", families=healthy)], next_judge="c"), CFG)
    assert d.action == "train" and not any(c.fired for c in d.checks)


def test_a_family_with_too_few_prompts_is_not_judged() -> None:
    small = {"arithmetic": {**BLIND, F.PROMPTS: 3.0}}
    d = decide(inp(rnd(2, families=small), past=[rnd(1, "train", families=small)], next_judge="c"), CFG)
    assert d.action == "train"
    assert not any("arithmetic" in c.signal for c in d.checks)
    assert "min_family_prompts=8" in d.signals["blind_spot_not_judged"]["arithmetic"]


def test_a_failed_family_monitor_is_could_not_check_never_a_pass() -> None:
    why = {K.FAMILY_TIE_RATE_MAX: "monitor family_signal failed: RuntimeError: boom"}
    d = decide(inp(rnd(2, families={}, could_not_check=why), past=[rnd(1, "train")], next_judge="c"), CFG)
    assert d.action == "train"
    c = check(d, "family_tie_rate_max")
    assert c.status == "could_not_check" and not c.fired and "boom" in c.reason
    assert c.setting == "blind_spot.max_family_tie_rate"


def test_safety_rules_come_first_and_the_blind_spot_before_a_plateau_stop() -> None:
    past = [rnd(1, "train")]
    biased = decide(inp(rnd(2, length_score_corr=0.9), past=past, next_judge="c"), CFG)
    assert biased.action == "switch_judge" and "length_score_corr" in biased.rationale
    starved = decide(inp(RoundSignals(round=2, pairs=0, monitors=HEALTHY, by_family={"a": BLIND}), past=past,
                         next_judge="c"), CFG)
    assert starved.action == "regenerate_prompts"
    # A plateau that outlived both plateau interventions would stop the run; a blind spot is tried first.
    plateau = [rnd(1, "train"), rnd(2, "add_adversarial"), rnd(3, "train"), rnd(4, "regenerate_prompts"),
               rnd(5, "train"), rnd(6, "train")]
    flat = tuple((r, 0.5) for r in (0, 1, 3, 5, 6))
    stopped = decide(ControllerInput(now=rnd(7, families={"howto": SHARP}), budget=20, past=tuple(plateau),
                                     heldout=flat), CFG)
    assert stopped.action == "stop"
    switched = decide(ControllerInput(now=rnd(7), budget=20, past=tuple(plateau), heldout=flat,
                                      next_judge="calculator"), CFG)
    assert switched.action == "switch_judge" and "arithmetic" in switched.rationale


def test_the_family_named_is_the_one_collapsed_longest_and_on_most_signals() -> None:
    both = {"arithmetic": BLIND, "howto": {F.PROMPTS: 20.0, F.TIE_RATE: 0.85, F.SCORE_SPREAD: 0.5}}
    d = decide(inp(rnd(2, families=both), past=[rnd(1, "train", families=both)], next_judge="c"), CFG)
    assert d.signals["blind_spot"]["family"] == "arithmetic" and d.signals["blind_spot"]["families"] == [
        "arithmetic", "howto"]
    longer = {"arithmetic": {**BLIND, F.SCORE_SPREAD: 0.5}, "howto": both["howto"]}
    past = [rnd(1, "train", families={"howto": both["howto"]}), rnd(2, "train", families=longer)]
    d = decide(inp(rnd(3, families=longer), past=past, next_judge="c"), CFG)
    assert d.signals["blind_spot"]["family"] == "howto" and d.signals["blind_spot"]["rounds"] == 3
