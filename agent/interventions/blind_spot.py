"""The blind-spot trigger: a prompt family whose preference signal collapsed is not trained on as it is
(its rule is order 50: after the judge's and the too-few-pairs rules, before a regression).

A judge can be sharp on one family and blind on another (the `rules` judge cannot tell a right sum
from a wrong one). Per family, from the round's `_by_family` monitors (tools/monitors/families.py,
jury.py, margins.py), a family's signal has collapsed when, over at least
`blind_spot.min_family_prompts` prompts with two valid judgments:

- its tie rate is >= `max_family_tie_rate` (responses that differ, scored all alike),
- its mean best-minus-worst score is < `min_family_spread`,
- the jury's members order its response pairs oppositely more often than `max_family_disagreement`, or
- its pair margin fell by >= `max_family_margin_collapse` of its peak in earlier rounds.

When that holds for `blind_spot.patience` rounds in a row under the same judge and pair strategy, the
controller changes how pairs are judged or built instead of training on them: `switch_judge` to the
next judge of judge.pool (e.g. a tool judge that verifies the family), else `switch_pairs` to the next
strategy of pairs.pool; each only when it is in controller.interventions and something is left to
switch to. With nothing to switch to, the round trains and the decision carries a warning.

A family in which every response is equally good also ties: the rule cannot tell that from a blind
judge without the oracle (which never reaches the controller), so its actions are ones that cost
nothing there: a judge that verifies more, a pair strategy that keeps a signal.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from agent.controller.vocabulary import Check, Decision, Op, Policy, RoundSignals, Rule, make_check
from agent.interventions.registry import TRIGGERS
from agent.interventions.spec import Trigger
from agent.sections.base import MAX_PROMPTS, MAX_ROUNDS, _Section
from agent.sections.controller import ControllerSettings
from tether_types import FamilyKey as F
from tether_types import MonitorKey as K


class BlindSpotConfig(_Section):
    """A prompt family whose preference signal collapsed: the controller switches to the next judge of
    judge.pool (switch_judge), else to the next pair strategy of pairs.pool (switch_pairs), instead of
    training on it as it is."""

    max_family_tie_rate: float = Field(
        0.8, ge=0.0, le=1.0,
        description="A family collapsed when at least this share of its prompts whose responses differ get the "
        "same judge score for every response (family tie_rate).",
    )
    min_family_spread: float = Field(
        0.05, ge=0.0, le=1.0,
        description="A family collapsed when its mean best-minus-worst judge score per prompt is below this.",
    )
    max_family_disagreement: float = Field(
        0.35, ge=0.0, le=1.0,
        description="A family collapsed when a jury's members order its response pairs oppositely more often than "
        "this (0.5 = coin flips); read only when the judge is a jury.",
    )
    max_family_margin_collapse: float = Field(
        0.6, gt=0.0, le=1.0,
        description="A family collapsed when its mean pair margin fell by at least this share of its peak in "
        "earlier rounds of the run.",
    )
    min_family_prompts: int = Field(
        8, ge=1, le=MAX_PROMPTS,
        description="A family with fewer prompts with two valid judgments in a round is not judged on it (too few "
        "to tell).",
    )
    patience: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Rounds in a row, under the same judge and pair strategy, a family's signal must have "
        "collapsed before the controller switches.",
    )


# Each per-family signal: its round-level key (the worst family's value: a failed monitor shows there),
# its family key, and how it fires against which blind_spot setting.
SIGNALS: tuple[tuple[K, F, Op, str], ...] = (
    (K.FAMILY_TIE_RATE_MAX, F.TIE_RATE, ">=", "max_family_tie_rate"),
    (K.FAMILY_SCORE_SPREAD_MIN, F.SCORE_SPREAD, "<", "min_family_spread"),
    (K.FAMILY_JUDGE_DISAGREEMENT_MAX, F.JUDGE_DISAGREEMENT, ">", "max_family_disagreement"),
    (K.FAMILY_MARGIN_COLLAPSE_MAX, F.MARGIN_COLLAPSE, ">=", "max_family_margin_collapse"),
)


def family_checks(by_family: Mapping[str, Mapping[F, float]], cfg: ControllerSettings) -> dict[str, list[Check]]:
    """family -> its checks against the blind-spot thresholds, for every family with enough prompts
    (the measured values only: a family key that is absent was not measured, e.g. no jury)."""
    bs = BLIND_SPOT.settings(cfg)
    out: dict[str, list[Check]] = {}
    for family in sorted(by_family):
        values = by_family[family]
        if values.get(F.PROMPTS, 0.0) < bs.min_family_prompts:
            continue
        out[family] = [make_check(f"family_{key.value}[{family}]", values[key], op, getattr(bs, setting),
                                  f"blind_spot.{setting}")
                       for _, key, op, setting in SIGNALS if key in values]
    return out


def collapsed(by_family: Mapping[str, Mapping[F, float]], cfg: ControllerSettings) -> set[str]:
    """The families whose preference signal collapsed on a round."""
    return {family for family, checks in family_checks(by_family, cfg).items() if any(c.fired for c in checks)}


def _streak(p: Policy, family: str) -> int:
    """Rounds in a row, this one included, the family collapsed under this judge and pair strategy."""
    n = 1
    for r in reversed(p.inp.past):
        if r.judge != p.now.judge or r.pairs_strategy != p.now.pairs_strategy or family not in collapsed(
                r.by_family, p.cfg):
            break
        n += 1
    return n


def _small(now: RoundSignals, cfg: ControllerSettings) -> dict[str, str]:
    minimum = BLIND_SPOT.settings(cfg).min_family_prompts
    return {f: f"{int(v.get(F.PROMPTS, 0))} prompt(s) with two valid judgments < min_family_prompts={minimum}"
            for f, v in sorted(now.by_family.items()) if v.get(F.PROMPTS, 0.0) < minimum}


def _blind_spot(p: Policy) -> Decision | None:
    bs = BLIND_SPOT.settings(p.cfg)
    for key, _, op, setting in SIGNALS:  # a failed family monitor is visible, never a silent pass
        if key in p.now.could_not_check:
            p.check_monitor(key, op, getattr(bs, setting), f"blind_spot.{setting}")
    if p.now.by_family:
        small = _small(p.now, p.cfg)
        if small:
            p.signals["blind_spot_not_judged"] = small
    streaks: dict[str, tuple[int, int, float, str]] = {}  # family -> (rounds, signals fired, tie rate, why)
    for family, checks in family_checks(p.now.by_family, p.cfg).items():
        p.checks.extend(checks)
        fired = [c for c in checks if c.fired]
        if not fired:
            continue
        streak = _streak(p, family)
        if p.check(f"blind_spot_rounds_in_a_row[{family}]", streak, ">=", bs.patience, "blind_spot.patience").fired:
            ties = p.now.by_family[family].get(F.TIE_RATE, 0.0)
            streaks[family] = (streak, len(fired), ties, "; ".join(c.text() for c in fired))
    if not streaks:
        return None
    # The family collapsed longest, on most signals, with the most ties (then the first by name).
    family = min(streaks, key=lambda f: (-streaks[f][0], -streaks[f][1], -streaks[f][2], f))
    streak, _, _, why = streaks[family]
    p.signals["blind_spot"] = {"family": family, "families": sorted(streaks), "why": why, "rounds": streak}
    judged = (f"the judge {p.now.judge} cannot separate responses in family {family} ({why}) for {streak} "
              "round(s) in a row")
    cannot: list[str] = []
    if "switch_judge" in p.cfg.interventions:
        blocked = p.blocked("switch_judge")
        if blocked is None and p.inp.next_judge is not None:
            return p.decision("switch_judge", f"{judged}: switching to {p.inp.next_judge}, which may verify it, "
                                              "instead of training on noise; this round is not trained on",
                              switch={"from": p.now.judge, "to": p.inp.next_judge, "why": why, "family": family})
        cannot.append(f"switch_judge: {blocked or 'no other judge left in judge.pool'}")
    else:
        cannot.append("switch_judge is not in controller.interventions")
    if "switch_pairs" in p.cfg.interventions:
        blocked = p.blocked("switch_pairs")
        if blocked is None and p.inp.next_pairs is not None:
            return p.decision("switch_pairs", f"{judged}: building pairs with {p.inp.next_pairs} instead of "
                                              f"{p.now.pairs_strategy or 'the current strategy'}; this round is "
                                              "not trained on",
                              pairs_switch={"from": p.now.pairs_strategy, "to": p.inp.next_pairs, "why": why,
                                            "family": family})
        cannot.append(f"switch_pairs: {blocked or 'no other strategy left in pairs.pool'}")
    else:
        cannot.append("switch_pairs is not in controller.interventions")
    p.signals.setdefault("warnings", []).append(f"{judged}; nothing to switch to ({'; '.join(cannot)}): "
                                                "its pairs are trained on as they are")
    return None


BLIND_SPOT: Trigger[BlindSpotConfig] = Trigger(name="blind_spot", order=60, section=BlindSpotConfig,
                                               rules=(Rule(50, _blind_spot),))


@TRIGGERS.register("blind_spot")
def spec() -> Trigger[BlindSpotConfig]:
    """A prompt family whose preference signal collapsed switches the judge, else the pair strategy."""
    return BLIND_SPOT
