"""The approval gate and the only path to an active adapter.

Deny by default over a closed set of decisions: an adapter becomes active only through `activate`
(after a human approval of exactly that file) or `rollback` (to a checkpoint a human approved
before, or the base model). Every check fails closed and every change is audited.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from memory import Approval, ApprovalStateError, Checkpoint, Store
from policies.adapters import AdapterIntegrityError, verify_adapter

HumanDecision = Literal["approve", "reject"]
SYSTEM_ACTOR = "tether"


class GateError(RuntimeError):
    """The request is refused; nothing changed."""


class TamperError(RuntimeError):
    """An artifact no longer matches its recorded hash."""


def request_approval(store: Store, checkpoint: Checkpoint, summary: str) -> Approval:
    """The pending approval for a candidate, created once (the gate node may run again on resume)."""
    existing = store.approval_for_subject("checkpoint", checkpoint.id)
    if existing is not None:
        return existing
    if checkpoint.invariant_ok is not True or checkpoint.sha256 is None:
        raise GateError(f"checkpoint {checkpoint.id} did not pass its invariant checks; it cannot be approved")
    with store.transaction():
        approval = store.create_approval(
            kind="checkpoint",
            run_id=checkpoint.run_id,
            subject=checkpoint.id,
            subject_sha256=checkpoint.sha256,
            summary=summary,
            payload=checkpoint.metrics or {},
        )
        store.update_checkpoint(checkpoint.id, status="pending")
        store.append_audit(SYSTEM_ACTOR, "approval.request", approval.id, {"checkpoint": checkpoint.id})
    return approval


def decide(store: Store, approval_id: str, decision: HumanDecision, by: str, note: str | None) -> Approval:
    """Record a human decision on a pending approval (from any process)."""
    if not by.strip():
        raise GateError("--by must name the person deciding")
    if decision == "reject" and not (note or "").strip():
        raise GateError("a rejection needs --note saying why")
    approval = store.get_approval(approval_id)
    if approval is None:
        raise GateError(f"no approval '{approval_id}' (see `tether approvals`)")
    if approval.status != "pending":
        raise GateError(f"approval {approval_id} is already {approval.status} by {approval.decided_by}")
    if approval.kind == "constitution" and decision == "approve":
        raise GateError("an amendment is approved through guardrails.amendments.approve, which re-checks it")
    if approval.kind == "checkpoint" and decision == "approve":
        _verify_candidate(store, approval)
    status = "approved" if decision == "approve" else "rejected"
    try:
        with store.transaction():
            decided = store.decide_approval(approval_id, status, by, note)
            store.append_audit(by, f"approval.{status}", approval_id, {"note": note, "subject": approval.subject})
    except ApprovalStateError as err:
        raise GateError(str(err)) from None
    return decided


def _verify_candidate(store: Store, approval: Approval) -> None:
    ck = store.get_checkpoint(approval.subject)
    if ck is None or ck.status != "pending" or ck.invariant_ok is not True:
        raise GateError(f"checkpoint {approval.subject} is not a candidate awaiting approval")
    try:
        verify_adapter(Path(ck.path), approval.subject_sha256)
    except (AdapterIntegrityError, OSError) as err:
        # Fail closed: a candidate whose file changed after its checks is rejected for good.
        with store.transaction():
            store.decide_approval(approval.id, "rejected", SYSTEM_ACTOR, f"tampering: {err}")
            store.update_checkpoint(ck.id, status="rejected")
            store.append_audit(SYSTEM_ACTOR, "tamper.detected", ck.id, {"error": str(err)})
        raise TamperError(f"candidate {ck.id} was modified after its checks ({err}); rejected") from None


def activate(store: Store, checkpoint_id: str) -> Checkpoint:
    """Make an approved candidate the run's active adapter. Every precondition is re-checked."""
    ck = store.get_checkpoint(checkpoint_id)
    if ck is None or ck.sha256 is None:
        raise GateError(f"checkpoint {checkpoint_id} is not an adapter candidate")
    approval = store.approval_for_subject("checkpoint", ck.id)
    if approval is None or approval.status != "approved":
        raise GateError(f"checkpoint {ck.id} has no human approval")
    if approval.subject_sha256 != ck.sha256 or ck.invariant_ok is not True:
        raise GateError(f"checkpoint {ck.id} does not match what was approved")
    run = store.get_run(ck.run_id)
    if run is None or run.active_checkpoint != ck.parent:
        raise GateError(
            f"checkpoint {ck.id} was trained from {ck.parent}, but {run.active_checkpoint if run else '?'} "
            "is active now (rolled back since?); it would undo that change"
        )
    verify_adapter(Path(ck.path), ck.sha256)
    with store.transaction():
        store.update_checkpoint(ck.id, status="approved")
        store.update_run(ck.run_id, active_checkpoint=ck.id)
        store.append_audit(SYSTEM_ACTOR, "checkpoint.activate", ck.id,
                           {"approval": approval.id, "approved_by": approval.decided_by, "sha256": ck.sha256})
    updated = store.get_checkpoint(ck.id)
    assert updated is not None
    return updated


def discard(store: Store, checkpoint_id: str, reason: str, actor: str = SYSTEM_ACTOR) -> None:
    """Reject a candidate for good and delete its adapter files, so it can never be loaded."""
    ck = store.get_checkpoint(checkpoint_id)
    if ck is None:
        return
    with store.transaction():
        store.update_checkpoint(ck.id, status="rejected")
        store.append_audit(actor, "checkpoint.discard", ck.id, {"reason": reason})
    shutil.rmtree(ck.path, ignore_errors=True)


def rollback(store: Store, checkpoint_id: str, by: str, reason: str) -> Checkpoint:
    """Make an earlier approved checkpoint, or the run's base, active again."""
    if not by.strip() or not reason.strip():
        raise GateError("rollback needs --by and --reason")
    ck = store.get_checkpoint(checkpoint_id)
    if ck is None:
        raise GateError(f"no checkpoint '{checkpoint_id}' (see `tether checkpoints`)")
    if ck.status not in ("approved", "base"):
        raise GateError(f"checkpoint {ck.id} is {ck.status}; only approved checkpoints or a base can be made active")
    if ck.sha256 is not None:
        try:
            verify_adapter(Path(ck.path), ck.sha256)
        except (AdapterIntegrityError, OSError) as err:
            store.append_audit(SYSTEM_ACTOR, "tamper.detected", ck.id, {"error": str(err)})
            raise TamperError(f"checkpoint {ck.id} failed its integrity check: {err}") from None
    run = store.get_run(ck.run_id)
    assert run is not None
    with store.transaction():
        store.update_run(ck.run_id, active_checkpoint=ck.id)
        store.append_audit(by, "checkpoint.rollback", ck.id, {"reason": reason, "from": run.active_checkpoint})
    return ck
