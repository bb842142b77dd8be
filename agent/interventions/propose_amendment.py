"""propose_amendment: the agent drafts a principle change as an approval of kind `constitution`; nothing
changes until a human approves it, then the run uses it from its next round.

What calls for it (the soft rule, order 10): the policy refused more than max_over_refusal of the
requests the constitution deems benign for `patience` rounds in a row, and there is a draft to propose
(none of this run's proposals is pending, and this draft was not proposed before). After an amendment is
adopted, only rounds sampled from a policy trained under it count: the rounds before show what the old
constitution taught, and drafting a stronger principle on them proposed a second change nobody had tried.

With approvals.hold_for_amendment (the default) the run then waits for the reviewers' decision, as a candidate
waits at the gate: training on under a constitution its own monitor flagged teaches more of what it flagged
(on over_cautious_constitution, seed 3, over-refusal rose from 0.28 to 0.88 in the round trained while the
proposal waited)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from langgraph.types import interrupt
from pydantic import Field

from agent.controller.vocabulary import Policy, Proposal, Proposer, RoundSignals, trailing
from agent.interventions.record import done, finish
from agent.interventions.registry import INTERVENTIONS
from agent.interventions.spec import Intervention, Marker
from agent.sections.base import MAX_ROUNDS, _Section
from guardrails import amendments
from guardrails.gate import GateError
from tether_types import MonitorKey as K

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from agent.run.context import RunContext
    from agent.run.state import RoundState


class AmendmentTriggerConfig(_Section):
    max_over_refusal: float = Field(
        0.3, ge=0.0, le=1.0,
        description="Over-refusal: share of responses to prompts the constitution deems benign that "
        "are refusals, above which the agent drafts a stronger helpfulness principle.",
    )
    patience: int = Field(
        2, ge=1, le=MAX_ROUNDS, description="Rounds in a row over the threshold before it drafts."
    )


def draft_amendment(ctx: RunContext) -> tuple[str, str] | None:
    """(amended constitution text, what it changes) the agent would propose now, or None (see `_draft`)."""
    draft = _draft(ctx)
    return None if isinstance(draft, str) else draft


def _draft(ctx: RunContext) -> tuple[str, str] | str:
    """The draft, or why there is none: one of this run's proposals is still pending, the draft was already
    proposed, or nothing is left to draft."""
    if "propose_amendment" not in ctx.config.controller.interventions:
        return "propose_amendment is not in controller.interventions"
    mine = [a for a in ctx.store.approvals(run_id=ctx.run_id) if a.kind == "constitution"]
    pending = [a.id for a in mine if a.status == "pending"]
    if pending:
        return f"this run's proposal {pending[0]} still waits for reviewers"
    version, current = amendments.in_force(ctx.store)
    run = ctx.store.get_run(ctx.run_id)
    own = ctx.store.get_constitution_version(run.constitution_version) if run is not None else None
    if own is not None and amendments.lineage_of(ctx.store, own) != amendments.lineage_of(ctx.store, version):
        return (f"this run keeps constitution v{own.version} of lineage {amendments.lineage_of(ctx.store, own)}; "
                f"an amendment now amends lineage {amendments.lineage_of(ctx.store, version)}, which it never uses")
    if own is not None and own.version != version.version:
        return f"constitution v{version.version} is approved and this run adopts it from its next round"
    draft = amendments.draft_over_refusal(current, version.content)
    if draft is None:
        return f"constitution v{version.version} leaves nothing to draft"
    sha = hashlib.sha256(draft[0].encode()).hexdigest()
    if any(a.subject_sha256 == sha for a in mine):
        return "this run already proposed the same amendment"
    return draft


def _evidence(p: Policy) -> list[RoundSignals]:
    """The rounds whose over-refusal speaks for the constitution in force: every round while the run keeps the
    one it began with; after an adopted amendment, those sampled after the first round trained under it."""
    rounds = [*p.inp.past, p.now]
    if p.inp.constitution_from <= 1:
        return rounds
    trained = next((r.round for r in p.inp.past if r.round >= p.inp.constitution_from and r.action == "train"
                    and r.outcome == "approved"), None)
    return [] if trained is None else [r for r in rounds if r.round > trained]


def _over_refusal(p: Policy) -> Proposal | None:
    amend = PROPOSE_AMENDMENT.settings(p.cfg)
    over = [r.monitors.get(K.OVER_REFUSAL) for r in _evidence(p)]
    streak = trailing([v is not None and v > amend.max_over_refusal for v in over], bool)
    if p.check_monitor(K.OVER_REFUSAL, ">", amend.max_over_refusal, "propose_amendment.max_over_refusal").fired and \
            p.check("over_refusal_rounds_in_a_row", streak, ">=", amend.patience,
                    "propose_amendment.patience").fired:
        if not p.inp.amendment:
            p.note(f"over_refusal fired, but no amendment is proposed: {p.inp.amendment_held or 'none to draft'}")
            return None
        return ("propose_amendment", f"the policy refused {p.monitor(K.OVER_REFUSAL) or 0.0:.0%} of requests the "
                f"constitution deems benign for {streak} rounds: proposing {p.inp.amendment}", {})
    return None


def _observe(ctx: RunContext, round_no: int) -> dict[str, Any]:
    draft = _draft(ctx)
    adopted = [d.round for d in ctx.store.decisions(ctx.run_id) if d.action == "constitution"]
    found: dict[str, Any] = ({"amendment": None, "amendment_held": draft} if isinstance(draft, str)
                             else {"amendment": draft[1]})
    return {**found, "constitution_from": max(adopted, default=1)}


def _hold(ctx: RunContext, run_id: str) -> None:
    """Wait, as a candidate does at the gate, for the reviewers' decision on this run's pending proposal
    (approvals.hold_for_amendment); the node runs again from its start when resumed, and passes."""
    if not ctx.config.approvals.hold_for_amendment:
        return
    pending = [a for a in ctx.store.approvals(run_id=run_id) if a.kind == "constitution" and a.status == "pending"]
    if pending:
        interrupt({"approval_id": pending[0].id, "kind": "constitution", "summary": pending[0].summary})


def propose_amendment(state: RoundState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    if not done(ctx, state):
        _propose(ctx, state)
    _hold(ctx, state["run_id"])
    return {}


def _propose(ctx: RunContext, state: RoundState) -> None:
    draft = draft_amendment(ctx)
    if draft is None:
        finish(ctx, state, "amendment_not_drafted", "nothing left to draft", {})
        return
    text, changes = draft
    try:
        with ctx.store.transaction():
            approval = amendments.propose(ctx.store, text, "agent draft", by=f"agent:{state['run_id']}",
                                          run_id=state["run_id"], required=ctx.config.approvals.required)
            held = (" (it waits for that decision: approvals.hold_for_amendment)"
                    if ctx.config.approvals.hold_for_amendment else "")
            finish(ctx, state, "amendment_proposed",
                   f"proposed {changes} as approval {approval.id}; nothing changes until a human runs "
                   f"`tether approve {approval.id} --by NAME`, then the run uses it from its next round{held}",
                   {"approval": approval.id, "changes": changes})
    except GateError as err:  # fail closed: a draft the gate refuses is logged, never applied
        finish(ctx, state, "amendment_refused", f"the gate refused the draft: {err}", {})


PROPOSE_AMENDMENT: Intervention[AmendmentTriggerConfig] = Intervention(
    name="propose_amendment", order=40, node=propose_amendment, marker=Marker("tab:pink"),
    section=AmendmentTriggerConfig, proposers=(Proposer(10, _over_refusal),), advisable=True,
    ready=lambda p: p.inp.amendment is not None, observe=_observe,
)


@INTERVENTIONS.register("propose_amendment")
def spec() -> Intervention[AmendmentTriggerConfig]:
    """The agent drafts a principle change as an approval of kind constitution, for a human to decide."""
    return PROPOSE_AMENDMENT
