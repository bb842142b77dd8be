"""What every intervention's node shares: it is idempotent, recording its outcome on the round last, in the
same transaction as its effect, and doing nothing when it finds that outcome already there (a resumed run
re-enters the node it crashed in)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.run.context import RunContext
    from agent.run.state import RoundState


def done(ctx: RunContext, state: RoundState) -> bool:
    """The round already has its outcome: the node ran to its end before."""
    record = ctx.store.get_round(state["run_id"], state["round"])
    return record is not None and record.outcome is not None


def finish(ctx: RunContext, state: RoundState, outcome: str, rationale: str, signals: dict[str, Any]) -> None:
    """The node's decision-log entry (action `outcome`, actor tether) and the round's outcome; call it inside
    the transaction of the node's effect."""
    ctx.store.add_decision(state["run_id"], state["round"], outcome, rationale, signals, actor="tether")
    ctx.store.upsert_round(state["run_id"], state["round"], outcome=outcome)
