"""The decide node: ask the controller, log the decision with its signals, route on it."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.controller import RoundSignals
from agent.controller import decide as policy
from agent.state import RoundState


def decide(state: RoundState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    run = ctx.store.get_run(run_id)
    assert run is not None
    record = ctx.store.get_round(run_id, round_no) if round_no <= run.rounds_budget else None
    signals = RoundSignals(
        round=round_no,
        budget=run.rounds_budget,
        pairs=None if record is None else record.n_pairs,
        monitors={} if record is None else dict(record.monitors or {}),
    )
    decision = policy(signals, ctx.config.controller)
    logged_round = min(round_no, run.rounds_budget)
    ctx.store.add_decision(run_id, logged_round, decision.action, decision.rationale,
                           {**decision.signals, "judge": ctx.judge.spec()})
    if record is not None:
        outcome = "skipped" if decision.action == "skip" else None
        ctx.store.upsert_round(run_id, round_no, action=decision.action, outcome=outcome)
    return {"action": decision.action}


def route_decision(state: RoundState) -> Literal["train_candidate", "plan", "stop"]:
    action = state.get("action")
    if action == "train":
        return "train_candidate"
    return "plan" if action == "skip" else "stop"
