"""The decide node: gather the controller's inputs from the store, ask the policy, log the decision
with the signals and thresholds behind it, route on it. Of the held-out evaluations it reads the validation
split only (agent/run/splits.py): the test split is reported, never decided on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from langgraph.runtime import Runtime

from agent.controller.advisor import ask_advisor
from agent.controller.policy import ControllerInput, Decision, RoundSignals
from agent.controller.policy import decide as policy
from agent.controller.vocabulary import KEPT_REASONS, InvalidJudgments
from agent.interventions import INTERVENTIONS, interventions
from agent.interventions.switch_pairs import pair_strategy
from agent.run import outcomes
from agent.run.context import RunContext
from agent.run.learned import adopted_learner
from agent.run.splits import controller_evaluation, evaluated_before_split
from agent.run.state import RoundState
from memory import Decision as LoggedDecision
from memory import Judgment, RoundRecord
from tether_types import Intervention
from tools.monitors.readings import Readings

Route = Literal["train_candidate", "plan", "stop"] | Intervention


def decide(state: RoundState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    run = ctx.run
    earlier = _decided(ctx, run_id, min(round_no, run.rounds_budget), round_no)
    if earlier is not None:  # decided (and logged, in one transaction) before a crash
        return {"action": earlier}
    record = ctx.store.get_round(run_id, round_no) if round_no <= run.rounds_budget else None
    inp = controller_input(ctx, round_no, run.rounds_budget, record)
    if ctx.config.controller.advisor is not None and record is not None:
        inp = replace(inp, advice=ask_advisor(ctx.config.controller, inp))
    if ctx.config.controller.policy == "learned":  # its file re-verified each round: approved, unchanged
        inp = replace(inp, learner=adopted_learner(ctx.store, ctx.config.controller, run.seed))
    decision = policy(inp, ctx.config.controller)
    with ctx.store.transaction():
        logged = _log(ctx, run_id, min(round_no, run.rounds_budget), decision, inp.heldout)
        outcomes.record(ctx.store, logged, inp.heldout, ctx.config.controller.outcome_rounds,
                        ctx.config.controller.heldout_metric)
        if record is not None:
            outcome = "skipped" if decision.action == "skip" else None
            ctx.store.upsert_round(run_id, round_no, action=decision.action, outcome=outcome)
    return {"action": decision.action}


def _decided(ctx: RunContext, run_id: str, logged_round: int, round_no: int) -> Any:
    """The controller's earlier decision on this round, if one was logged (signals carry the round it
    decided on: the final stop after the budget is logged under the last round)."""
    for d in ctx.store.decisions(run_id, logged_round):
        if d.actor == "controller" and d.signals.get("round") == round_no:
            return d.action
    return None


def _log(ctx: RunContext, run_id: str, round_no: int, decision: Decision,
         curve: tuple[tuple[int, float], ...]) -> LoggedDecision:
    # The judge and the pair strategy in force on the round, each with the settings it was built from, and the
    # held-out curve the policy read, with the split it is of.
    signals = {**decision.log_signals(), "judge_spec": ctx.judge.spec(),
               "pairs_spec": pair_strategy(ctx, decision.signals.get("round", round_no)).spec(),
               "heldout_curve": {"split": curve_split(ctx), "metric": ctx.config.controller.heldout_metric,
                                 "points": [[r, score] for r, score in curve]}}
    return ctx.store.add_decision(run_id, round_no, decision.action, decision.rationale, signals)


def controller_input(ctx: RunContext, round_no: int, budget: int, record: RoundRecord | None) -> ControllerInput:
    """What the policy reads: this round's signals and the earlier rounds', the held-out curve, and on a round
    that was run, what each intervention observes for its rules (e.g. the next judge, the failures to target)."""
    pairs = ctx.pair_strategies
    past: list[RoundSignals] = []
    slot = 0  # the pair-strategy slot of each round: moved on by each switch outcome before it
    for r in (r for r in ctx.store.rounds(ctx.run_id) if r.round < round_no):
        past.append(_signals(r, r.round, None, pairs.label(slot)))
        slot += r.outcome == pairs.switched
    inp = ControllerInput(now=_signals(record, round_no, ctx.judge_label(), pairs.label(slot)), budget=budget,
                          past=tuple(past), heldout=heldout_curve(ctx, ctx.config.controller.heldout_metric))
    if record is None:  # the budget is spent: the policy stops before reading anything else
        return inp
    invalid = invalid_judgments(ctx.store.judgments(ctx.run_id, round_no, split="train"))
    inp = replace(inp, now=replace(inp.now, invalid=invalid))
    observed = [spec.observe(ctx, round_no) for spec in interventions() if spec.observe is not None]
    return replace(inp, **{k: v for fields in observed for k, v in fields.items()})


def invalid_judgments(judgments: Sequence[Judgment]) -> InvalidJudgments:
    """How many of the round's judgments are invalid and why, the commonest reasons first (ties: first seen). A
    failed call gives every verdict of it the same reason, so an endpoint that is down is one line with its
    count; a verdict with no reason recorded still counts."""
    reasons = Counter(str(j.details.get("invalid") or "no reason recorded") for j in judgments if not j.valid)
    return InvalidJudgments(sum(reasons.values()), len(judgments), tuple(reasons.most_common(KEPT_REASONS)))


def _signals(record: RoundRecord | None, round_no: int, judge: str | None, pairs_strategy: str = "") -> RoundSignals:
    if record is None:
        return RoundSignals(round=round_no, pairs=None, judge=judge or "", pairs_strategy=pairs_strategy)
    label = judge or record.judge_label or ""
    readings = Readings.from_json(record.monitors)  # values, the keys whose monitor failed (with why), by family
    return RoundSignals(round=record.round, pairs=record.n_pairs, monitors=readings.values,
                        could_not_check=readings.could_not_check, judge=label, action=record.action,
                        outcome=record.outcome, by_family=readings.by_family, pairs_strategy=pairs_strategy)


def heldout_curve(ctx: RunContext, metric: str) -> tuple[tuple[int, float], ...]:
    """(round, validation score of the policy active after it) in `metric` (controller.heldout_metric): round 0
    is the policy before the first evaluated candidate; a committed candidate's score counts from its round,
    otherwise the active's. An evaluation without that score (no verifier covered its prompts) is left out. A
    run evaluated before the split reads its one held-out set, as it always did; never the test split."""
    curve: list[tuple[int, float]] = []
    for ck in ctx.store.checkpoints(ctx.run_id):
        evaluation = controller_evaluation(ck.metrics)
        if ck.round <= 0 or not evaluation or any(metric not in evaluation[who] for who in ("active", "candidate")):
            continue
        if not curve:
            curve.append((0, float(evaluation["active"][metric])))
        committed = ck.status == "approved"
        curve.append((ck.round, float(evaluation["candidate" if committed else "active"][metric])))
    return tuple(curve)


def curve_split(ctx: RunContext) -> str:
    """The split the run's controller reads: "validation", or "heldout" for a run evaluated before the split."""
    return "heldout" if evaluated_before_split(ctx.store.checkpoints(ctx.run_id)) else "validation"


def route_decision(state: RoundState) -> Route:
    action = state.get("action")
    if action == "train":
        return "train_candidate"
    if action == "skip":
        return "plan"
    if action in INTERVENTIONS:
        return str(action)
    return "stop"
