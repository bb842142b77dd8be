"""switch_judge: move the run to the next judge of judge.pool when the judge in use is unreliable.

Its rule (order 30, after the budget and invariant stops): the judge pays for length (length_score_corr
above max_length_score_corr), its verdicts flip with the presentation order (position_consistency below
min_position_consistency), or it emitted more than max_invalid_share invalid verdicts invalid_rounds rounds
in a row. Then the run switches to the next judge and this round is not trained on; with no judge left it
stops (training on a judge known to be biased is what tether prevents). A round whose invalid share is
above max_invalid_share is never trained on, whatever else fires and whatever interventions are listed.
With switch_judge off (the fixed recipe) a biased round trains and the log carries a warning. The
blind-spot trigger (blind_spot.py) switches the judge too."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agent.controller.vocabulary import Decision, Policy, Rule, trailing
from agent.interventions.pool import JUDGE_SWITCHED
from agent.interventions.record import done, finish
from agent.interventions.registry import INTERVENTIONS
from agent.interventions.spec import Intervention, Marker
from agent.sections.base import MAX_ROUNDS, _Section
from agent.sections.controller import ControllerSettings
from tether_types import MonitorKey as K

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from agent.run.context import RunContext
    from agent.run.state import RoundState


class SwitchJudgeConfig(_Section):
    max_length_score_corr: float = Field(
        0.6, ge=-1.0, le=1.0,
        description="Leave a judge whose length-score correlation on a round is above this (it pays "
        "for length).",
    )
    min_position_consistency: float = Field(
        0.7, ge=0.0, le=1.0,
        description="Leave a judge whose verdicts agree across both presentation orders less often.",
    )
    invalid_rounds: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Leave a judge after this many rounds in a row above max_invalid_share.",
    )


def _invalid(value: float | None, cfg: ControllerSettings) -> bool:
    """A round's invalid share is above max_invalid_share, or was not measured (fail closed)."""
    return value is None or not math.isfinite(value) or value > cfg.max_invalid_share


def _why(p: Policy) -> str:
    """The round's first reason for invalid judgments and its count, for the skip's rationale: what to fix
    (an endpoint down, a model that ignores the format) is in it. The others are in the signals."""
    invalid = p.now.invalid
    return f"; {invalid.text(reasons=1)}" if invalid is not None and invalid.count else ""


def _judge(p: Policy) -> Decision | None:
    sj = SWITCH_JUDGE.settings(p.cfg)
    corr = p.check_monitor(K.LENGTH_SCORE_CORR, ">", sj.max_length_score_corr, "switch_judge.max_length_score_corr")
    pos = p.check_monitor(K.POSITION_CONSISTENCY, "<", sj.min_position_consistency,
                          "switch_judge.min_position_consistency")
    invalid_now = p.check_monitor(K.INVALID_SHARE, ">", p.cfg.max_invalid_share, "max_invalid_share")
    same_judge = [r for r in p.inp.past if r.judge == p.now.judge]
    streak = 1 + trailing([_invalid(r.monitors.get(K.INVALID_SHARE), p.cfg) for r in same_judge],
                           bool) if invalid_now.fired else 0
    invalid_run = p.check("invalid_rounds_in_a_row", streak, ">=", sj.invalid_rounds, "switch_judge.invalid_rounds")
    fired = [c for c in (corr, pos, invalid_run) if c.fired]
    why = "; ".join(c.text() for c in fired)
    # Fired only because a required signal is missing: nothing shows the judge biased, nothing shows it fine.
    unchecked = all(c.status == "could_not_check" for c in fired)
    judged = f"judge {p.now.judge} {'cannot be shown reliable' if unchecked else 'is unreliable'} ({why})"
    cannot_switch = ""
    if fired and "switch_judge" in p.cfg.interventions:
        blocked = p.blocked("switch_judge")
        if blocked is None and p.inp.next_judge is not None:
            return p.decision("switch_judge", f"{judged}: leaving it for {p.inp.next_judge}; this round is not "
                                              "trained on",
                              switch={"from": p.now.judge, "to": p.inp.next_judge, "why": why})
        cannot_switch = f"cannot be switched ({blocked or 'no other judge left in judge.pool'})"
        if not invalid_now.fired:
            return p.decision("stop", f"{judged} and {cannot_switch}: training on it would optimise its bias; add "
                                      "judges to judge.pool to let the controller switch")
    elif fired:
        # The fixed recipe (interventions off) trains on whatever judge it has; the log still says so.
        p.signals["warnings"] = [f"{judged}; switch_judge is off"]
    if invalid_now.fired:
        # Unconditional: no other rule and no interventions setting trains on a round of invalid judgments.
        share = (f"{invalid_now.value:.0%} of round {p.now.round}'s judgments were invalid (> max_invalid_share="
                 f"{p.cfg.max_invalid_share:.0%}{_why(p)})" if invalid_now.status == "fired" else
                 f"round {p.now.round}'s invalid share could not be checked ({invalid_now.reason})")
        also = f" ({judged}{' and ' + cannot_switch if cannot_switch else ''})" if fired else ""
        return p.decision("skip", f"{share}: the judge cannot be trusted on this round, so it is not trained on{also}")
    return None


def _observe(ctx: RunContext, round_no: int) -> dict[str, Any]:
    return {"next_judge": ctx.judges.next_label(ctx.judge_slot)}


def switch_judge(state: RoundState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    if done(ctx, state):
        return {}
    slot = ctx.judge_slot + 1
    if slot >= len(ctx.judges):  # the controller only switches with a judge left; fail loudly otherwise
        raise RuntimeError(f"switch_judge on round {state['round']}: no judge left after slot {slot - 1}")
    before, after = ctx.judges.label(slot - 1), ctx.judges.label(slot)
    with ctx.store.transaction():  # the outcome moves the pool: the next round is judged by the next judge
        finish(ctx, state, JUDGE_SWITCHED, f"judge {before} left; {after} judges from round {state['round'] + 1}",
               {"from": before, "to": after, "slot": slot})
    return {}


SWITCH_JUDGE: Intervention[SwitchJudgeConfig] = Intervention(
    name="switch_judge", order=10, node=switch_judge, marker=Marker("tab:orange"), section=SwitchJudgeConfig,
    rules=(Rule(30, _judge),), forward_only=True, observe=_observe,
)


@INTERVENTIONS.register("switch_judge")
def spec() -> Intervention[SwitchJudgeConfig]:
    """Move the run to the next judge of judge.pool when the judge in use is unreliable."""
    return SWITCH_JUDGE
