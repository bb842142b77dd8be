"""The approval gate and the only path to an active adapter.

Deny by default over a closed set of decisions: an adapter becomes active only through `activate`
(after enough verified human signatures on exactly that adapter) or `rollback` (signed, to a
checkpoint a human approved before, or the base model). Every check fails closed and every change is
audited. A check that cannot run (a missing file, a busy disk) raises TransientError and changes
nothing: what is approved stays approved, on record and on disk.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrails import keys, reviewers, signoff
from guardrails.checks import InvariantReport, report_passes
from guardrails.constitution import Constitution, parse_constitution
from guardrails.errors import DeniedError, GateError, GuardrailError, TamperError, TransientError
from guardrails.signoff import SYSTEM_ACTOR, HumanDecision
from guardrails.statements import Statement
from memory import Approval, AuditEntry, Checkpoint, Run, Store
from memory.guarded import GuardedWrites
from policies.adapters import AdapterIntegrityError, verify_adapter
from policies.artifacts import ModelIntegrityError, model_folder, verify_model

__all__ = ["SYSTEM_ACTOR", "ApprovedAdapter", "DeniedError", "GateError", "HumanDecision", "TamperError",
           "TransientError", "UnknownCheckpointError", "activate", "active_problem", "decide", "discard",
           "refuse_rollback", "request_approval", "rollback", "verified_active", "verify_approved",
           "vouching_approval"]

ACTIVE_ACTIONS = ("checkpoint.activate", "checkpoint.rollback", "checkpoint.base", "checkpoint.inherit")


class UnknownCheckpointError(GateError):
    """No checkpoint has this id: bad input (CLI exit 2; the console answers 404)."""

    def __init__(self, checkpoint_id: str) -> None:
        super().__init__(f"no checkpoint '{checkpoint_id}' (see `tether checkpoints`)")


def adapter_check(store: Store, ck: Checkpoint) -> None:
    """The adapter's files hash to what was recorded: TamperError if not, TransientError if unreadable."""
    path = store.resolve(ck.path)
    if not path.is_dir():
        raise TransientError(f"adapter of {ck.id} not found at {path} (moved or on an unmounted disk?); restore it "
                             "there and `tether resume` the run. Nothing was changed.")
    try:
        verify_adapter(path, ck.sha256 or "")
    except AdapterIntegrityError as err:
        if "not found" in str(err):
            raise TransientError(f"{err}; restore the file and `tether resume` the run. Nothing was changed.") from None
        raise TamperError(str(err)) from None
    except OSError as err:
        raise TransientError(f"adapter of {ck.id} at {path} could not be read ({err}); nothing was changed") from None


def request_approval(store: Store, checkpoint: Checkpoint, summary: str, required: int) -> Approval:
    """The pending approval for a candidate, created once (the gate node may run again on resume).
    Only a candidate whose invariant report guardrails wrote, and that passes, may be requested."""
    existing = store.approval_for_subject("checkpoint", checkpoint.id)
    if existing is not None:
        return existing
    constitution = _report_constitution(store, checkpoint)
    if checkpoint.sha256 is None or checkpoint.invariant_ok is not True or not report_passes(
            checkpoint.invariant_report, constitution):
        raise GateError(f"checkpoint {checkpoint.id} did not pass its invariant checks; it cannot be approved")
    writes = GuardedWrites(store)
    with store.transaction():
        approval = writes.create_approval("checkpoint", checkpoint.id, checkpoint.sha256, summary,
                                          payload={"run_id": checkpoint.run_id}, run_id=checkpoint.run_id)
        writes.set_checkpoint_status(checkpoint.id, "pending")
        store.append_audit(SYSTEM_ACTOR, "approval.request", approval.id,
                           {"checkpoint": checkpoint.id, "sha256": checkpoint.sha256, "required": required})
    return approval


def _report_constitution(store: Store, ck: Checkpoint) -> Constitution:
    """The constitution version the candidate's invariants were checked under."""
    version = ((ck.invariant_report or {}).get("constitution") or {}).get("version")
    recorded = store.get_constitution_version(version) if isinstance(version, int) else None
    if recorded is None:
        raise TamperError(f"checkpoint {ck.id} has no invariant report written by guardrails")
    return parse_constitution(recorded.content, f"constitution v{recorded.version}")


def decide(store: Store, approval_id: str, decision: HumanDecision, signer: keys.Signer, note: str | None,
           accept_not_met: bool = False) -> Approval:
    """A reviewer's signed decision on a pending checkpoint approval (from any process). Approving a
    candidate that does not meet an invariant's target needs `accept_not_met`, recorded in the statement."""
    if decision == "reject" and not (note or "").strip():
        raise GateError("a rejection needs --note saying why")
    approval = store.get_approval(approval_id)
    if approval is None:
        raise GateError(f"no approval '{approval_id}' (see `tether approvals`)")
    if approval.status != "pending":
        raise GateError(f"approval {approval_id} is already {approval.status} by {approval.decided_by}")
    if approval.kind != "checkpoint":
        raise GateError("a constitution change is decided through guardrails.amendments.decide, which re-checks it")
    accepted: tuple[str, ...] = ()
    if decision == "approve":
        # Who may not sign is refused (audited), and a tampered candidate rejected, before what is accepted.
        signoff.check_signer(store, approval, signer)
        _verify_candidate(store, approval)
        accepted = _not_met_acknowledged(store, approval, accept_not_met)
    return signoff.sign(store, approval, decision, signer, note, accepted)


def _not_met_acknowledged(store: Store, approval: Approval, accept_not_met: bool) -> tuple[str, ...]:
    """The invariants whose target the candidate does not meet (its upper bound above max_rate, though
    it passed within a ratchet): approving it is refused (GateError, nothing written) unless the reviewer
    accepts that explicitly; what they accepted goes into their signed statement."""
    ck = store.get_checkpoint(approval.subject)
    not_met = InvariantReport.from_json(ck.invariant_report if ck is not None else None).not_met()
    if not_met and not accept_not_met:
        raise GateError(f"checkpoint {approval.subject} does not meet the target of {len(not_met)} invariant(s): "
                        + "; ".join(r.line() for r in not_met)
                        + f". Approving it anyway needs `tether approve {approval.id} --by NAME --accept-not-met` "
                        "(in the console: tick \"accept targets not met\"); your signed statement records it")
    return tuple(r.id for r in not_met)


def _verify_candidate(store: Store, approval: Approval) -> None:
    ck = store.get_checkpoint(approval.subject)
    if ck is None or ck.status != "pending" or ck.sha256 != approval.subject_sha256:
        raise GateError(f"checkpoint {approval.subject} is not a candidate awaiting approval")
    try:
        adapter_check(store, ck)
    except TamperError as err:
        # Fail closed: a candidate whose files changed after its checks is rejected for good.
        with store.transaction():
            writes = GuardedWrites(store)
            writes.decide_approval(approval.id, "rejected", SYSTEM_ACTOR, f"tampering: {err}")
            writes.set_checkpoint_status(ck.id, "rejected")
            store.append_audit(SYSTEM_ACTOR, "tamper.detected", ck.id, {"error": str(err)})
        raise TamperError(f"candidate {ck.id} was modified after its checks ({err}); rejected") from None


def activate(store: Store, checkpoint_id: str) -> Checkpoint:
    """Make an approved candidate its run's active adapter; every precondition is re-checked from
    what is signed, not from what is recorded. TamperError: refused for good; TransientError: retry."""
    try:
        return _activate(store, checkpoint_id)
    except sqlite3.OperationalError as err:
        raise TransientError(f"the store could not be read or written ({err}); nothing was changed") from None


def _activate(store: Store, checkpoint_id: str) -> Checkpoint:
    ck = store.get_checkpoint(checkpoint_id)
    if ck is None or ck.sha256 is None or ck.run_id is None:
        raise TamperError(f"checkpoint {checkpoint_id} is not an adapter candidate")
    run = _run(store, ck.run_id)
    if run.active_checkpoint == ck.id and ck.status == "approved":
        verified_active(store, run)
        return ck  # already active (the commit node ran again after a crash)
    approval = verify_approved(store, ck).approval
    active = verified_active(store, run)
    if active != ck.parent:
        raise TamperError(f"checkpoint {ck.id} was trained from {ck.parent}, but {active} is active now (rolled "
                          "back since?); activating it would undo that change")
    writes = GuardedWrites(store)
    with store.transaction():
        writes.set_checkpoint_status(ck.id, "approved")
        writes.set_active(ck.run_id, ck.id)
        store.append_audit(SYSTEM_ACTOR, "checkpoint.activate", ck.id,
                           {"run": ck.run_id, "approval": approval.id, "approved_by": approval.decided_by,
                            "sha256": ck.sha256})
    return store._require_checkpoint(ck.id)


@dataclass(frozen=True)
class ApprovedAdapter:
    """An adapter checkpoint that passed every check activation makes of what a human approved, and the
    facts those checks established: whoever holds one may load or ship exactly these files."""

    checkpoint: Checkpoint
    run: Run
    approval: Approval
    signoff: signoff.SignOff  # the verified signatures (reviewers, times), not the approval row's say-so
    base_folder: Path  # the pinned base model's folder, verified against its digest


def verify_approved(store: Store, ck: Checkpoint) -> ApprovedAdapter:
    """Everything `activate` re-checks of an approved adapter, whether it is active or not: a human
    approval of exactly these bytes whose signatures verify (a row edited by SQL does not), an invariant
    report that passes on its own numbers, the pinned base model on disk, and the adapter's files.
    TamperError: refused; TransientError: a check could not run. Reads only."""
    if ck.sha256 is None or ck.run_id is None:
        raise TamperError(f"checkpoint {ck.id} is not an adapter candidate")
    run = _run(store, ck.run_id)
    approval = _own_approval(store, ck)
    signed = signoff.verify_decided(store, approval)
    if ck.invariant_ok is not True or not report_passes(ck.invariant_report, _report_constitution(store, ck)):
        raise TamperError(f"checkpoint {ck.id}'s invariant report does not pass on its own numbers")
    folder = _base_check(store, run)
    adapter_check(store, ck)
    return ApprovedAdapter(ck, run, approval, signed, folder)


def _base_check(store: Store, run: Run) -> Path:
    """The base model the adapter was trained and approved on is still the one on disk: an adapter
    is only ever activated over the base its approval names. Returns its folder."""
    base = run.base_model or {}
    ref = str(base.get("ref", ""))
    try:
        folder = store.resolve(ref) if base.get("in_workspace") else model_folder(ref)
        verify_model(folder, base)
    except ModelIntegrityError as err:
        raise TamperError(str(err)) from None
    except OSError as err:
        raise TransientError(f"the base model of run {run.id} could not be read ({err}); nothing was changed") from None
    return folder


def _run(store: Store, run_id: str) -> Run:
    run = store.get_run(run_id)
    if run is None:
        raise TamperError(f"run {run_id} is not in the store")
    return run


def verified_active(store: Store, run: Run) -> str | None:
    """The run's active checkpoint, checked against the audit chain (the last activation, rollback,
    inheritance or base registration of the run must name it) and, for an adapter, against the signed
    approval that vouches for it (`vouching_approval`)."""
    last = None
    for entry in store.audit_entries():
        # Entries before schema v3 carry no "run"; their subject (a checkpoint id) starts with the run id.
        if entry.action in ACTIVE_ACTIONS and (entry.details.get("run") == run.id
                                               or (entry.subject or "").startswith(f"{run.id}-")):
            last = entry
    named = f"{run.id}-base" if last is None else last.subject
    if named != run.active_checkpoint:
        raise TamperError(f"run {run.id}'s active checkpoint {run.active_checkpoint} is not the one its audit log "
                          f"activated ({named}): it was set outside the gate")
    ck = store.get_checkpoint(run.active_checkpoint) if run.active_checkpoint else None
    if ck is None or ck.status not in ("approved", "base"):
        raise TamperError(f"run {run.id}'s active checkpoint {run.active_checkpoint} is not approved")
    if ck.sha256 is not None:
        # However the adapter became active (activated, inherited, rolled back to), a signed human approval
        # must vouch for exactly its bytes on every load: a rollback signed onto a forged row is refused too.
        vouching_approval(store, ck)
    if last is not None and last.action == "checkpoint.rollback":
        _verify_rollback_signature(store, last.details, ck)
    return run.active_checkpoint


def active_problem(store: Store, run: Run) -> str | None:
    """Why the loader would refuse the run's active checkpoint (`verified_active`'s refusal), or None: for
    the views that show the pointer, so they never show as active what the gate did not activate. A run
    with no pointer claims nothing and has nothing to verify."""
    if run.active_checkpoint is None:
        return None
    try:
        verified_active(store, run)
    except TamperError as err:
        return str(err)
    return None


def vouching_approval(store: Store, ck: Checkpoint) -> Approval:
    """The signed human approval that lets adapter checkpoint `ck` be loaded: its own approval of exactly
    these bytes, or, for the start of a run begun from another run's adapter (`tether run --from`), the
    approval that vouches for its source through the audited lineage (`checkpoint.inherit`). TamperError when
    there is none or its signatures do not support it. This is the loader's rule (`verified_active`), and the
    one `rollback` and `run --from` apply: whatever the loader accepts, they accept, and nothing more."""
    inherited = _inheritance(store, ck)
    if inherited is None:
        return _own_approval(store, ck)
    return _verify_inherited(store, ck, inherited.details, frozenset())


def _own_approval(store: Store, ck: Checkpoint) -> Approval:
    """`ck`'s own approval, approved for exactly its bytes with signatures that support it (TamperError if not).
    A row's status alone vouches for nothing: a checkpoint set to approved by hand has no such approval."""
    approval = store.approval_for_subject("checkpoint", ck.id)
    if approval is None or approval.status != "approved" or approval.subject_sha256 != ck.sha256:
        raise TamperError(f"checkpoint {ck.id} has no human approval of exactly this adapter")
    signoff.verify_decided(store, approval)
    return approval


def _inheritance(store: Store, ck: Checkpoint) -> AuditEntry | None:
    """The audit entry that started `ck`'s run from another run's adapter with `ck` (None for any other)."""
    return next((e for e in store.audit_entries(subject=ck.id)
                 if e.action == "checkpoint.inherit" and e.details.get("run") == ck.run_id), None)


def _verify_inherited(store: Store, ck: Checkpoint, details: dict[str, Any], seen: frozenset[str]) -> Approval:
    """A run started from another run's adapter: the source's approval of the same bytes vouches, by the same
    rule (`vouching_approval`), so a run started from an inherited adapter is vouched for down its lineage."""
    source = store.get_checkpoint(str(details.get("source")))
    if (source is None or source.sha256 != ck.sha256 or ck.parent != source.id or source.id in seen
            or source.id == ck.id):
        raise TamperError(f"{ck.id} claims to be inherited from {details.get('source')}, which does not vouch for it")
    inherited = _inheritance(store, source)
    if inherited is None:
        return _own_approval(store, source)
    return _verify_inherited(store, source, inherited.details, seen | {ck.id})


def discard(store: Store, checkpoint_id: str, reason: str, actor: str = SYSTEM_ACTOR) -> None:
    """Reject a candidate for good and delete its adapter files, so it can never be loaded. The files
    of a candidate that holds an approved approval are kept: an approval is never undone by a refusal."""
    ck = store.get_checkpoint(checkpoint_id)
    if ck is None:
        return
    approval = store.approval_for_subject("checkpoint", ck.id)
    with store.transaction():
        GuardedWrites(store).set_checkpoint_status(ck.id, "rejected")
        store.append_audit(actor, "checkpoint.discard", ck.id, {"reason": reason})
    if ck.sha256 is not None and (approval is None or approval.status != "approved"):
        shutil.rmtree(store.resolve(ck.path), ignore_errors=True)


def rollback(store: Store, checkpoint_id: str, signer: keys.Signer, reason: str) -> Checkpoint:
    """Make an earlier checkpoint the loader accepts (`vouching_approval`), or the run's base, active again:
    signed by a reviewer. Every refusal is audited (`rollback.refused`: who tried, the checkpoint, why) and
    changes nothing else; a check that could not run (TransientError, a busy store) decided nothing and is not."""
    try:
        ck, run, before = _rollback_target(store, checkpoint_id, signer, reason)
    except TransientError:
        raise
    except GuardrailError as err:
        raise refuse_rollback(store, checkpoint_id, signer.name, err) from None
    seq, head = store.audit_head()
    statement = Statement("rollback", ck.id, ck.sha256 or (run.base_model or {}).get("sha256") or "", {
        "decision": "rollback", "reviewer": signer.name, "run_id": run.id, "from": before, "note": reason,
        "workspace": reviewers.workspace_id(store), "time": store.now(), "audit_head": {"seq": seq, "hash": head},
    })
    body = statement.to_bytes()
    writes = GuardedWrites(store)
    with store.transaction():
        sig = writes.add_signature(None, ck.id, "rollback", signer.name, signer.fingerprint, body.decode("utf-8"),
                                   signer.sign(body))
        writes.set_active(run.id, ck.id)
        store.append_audit(signer.name, "checkpoint.rollback", ck.id,
                           {"run": run.id, "from": before, "reason": reason, "signature": sig.id,
                            "statement_sha256": hashlib.sha256(body).hexdigest()})
    return ck


def refuse_rollback(store: Store, checkpoint_id: str, by: str, error: GuardrailError) -> GuardrailError:
    """Audit a refused rollback (who tried, the checkpoint, why) and return `error` to raise. For callers that
    refuse before a key is loaded (an unknown checkpoint) too, so every refusal leaves the same entry."""
    ck = store.get_checkpoint(checkpoint_id)
    details = {"by": by, "reason": str(error)}
    if ck is not None and ck.run_id is not None:
        details["run"] = ck.run_id  # the run's lab notebook shows it
    store.append_audit(SYSTEM_ACTOR, "rollback.refused", checkpoint_id, details)
    return error


def _rollback_target(store: Store, checkpoint_id: str, signer: keys.Signer,
                     reason: str) -> tuple[Checkpoint, Run, str | None]:
    """The checkpoint to make active, its run and the run's verified active checkpoint now; raises (writing
    nothing but a `tamper.detected` entry) when the rollback may not happen."""
    if not reason.strip():
        raise GateError("rollback needs --reason")
    ck = store.get_checkpoint(checkpoint_id)
    if ck is None or ck.run_id is None:
        raise UnknownCheckpointError(checkpoint_id)
    if ck.status not in ("approved", "base"):
        raise GateError(f"checkpoint {ck.id} is {ck.status}; only approved checkpoints or a base can be made active")
    problem = keys.name_problem(signer.name)
    registered = reviewers.registry(store).get(signer.name)
    if problem or registered is None or registered.public_hex != signer.public_hex:
        raise DeniedError(problem or f"'{signer.name}' is not a registered reviewer of this workspace with this key")
    run = _run(store, ck.run_id)
    before = verified_active(store, run)
    if ck.sha256 is not None:
        vouching_approval(store, ck)  # the loader's rule: a status set by hand vouches for nothing
        try:
            adapter_check(store, ck)
        except TamperError as err:
            store.append_audit(SYSTEM_ACTOR, "tamper.detected", ck.id, {"error": str(err)})
            raise TamperError(f"checkpoint {ck.id} failed its integrity check: {err}") from None
    return ck, run, before


def _verify_rollback_signature(store: Store, details: dict[str, Any], ck: Checkpoint) -> None:
    sig = next((s for s in store.signatures(subject=ck.id) if s.id == details.get("signature")), None)
    if sig is None or sig.decision != "rollback":
        raise TamperError(f"the rollback to {ck.id} has no signature")
    what = f"rollback signature {sig.id}"
    statement = signoff.verify_signature_row(store, sig, reviewers.registry(store, include_removed=True), what)
    if statement.subject != ck.id or statement.predicate.get("run_id") != ck.run_id or statement.predicate.get(
            "workspace") != reviewers.workspace_id(store):
        raise TamperError(f"{what} was signed for another checkpoint")
