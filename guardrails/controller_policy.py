"""Adopting a learned controller policy: an approval of kind `controller`, proposed with the policy file's exact
text and signed by reviewers like a constitution amendment (guardrails/signoff.py: the proposer may not approve,
`approvals.required` reviewers must). A run with `controller.policy: learned` uses a policy file only when its
sha256 is that of an approval whose signatures verify now: a file dropped into the workspace, or an approval row
inserted by SQL, is refused (fail closed)."""

from __future__ import annotations

import hashlib

from guardrails import keys, signoff
from guardrails.errors import GateError, TamperError
from guardrails.signoff import HumanDecision
from memory import Approval, Store
from memory.guarded import GuardedWrites

PROPOSE_ACTION = "controller.propose"


def propose(store: Store, text: str, summary: str, by: str, required: int = 1) -> Approval:
    """A pending approval of kind controller for the policy file `text` (already parsed by the caller)."""
    if not by.strip():
        raise GateError("--by must name who proposes the policy")
    sha = hashlib.sha256(text.encode()).hexdigest()
    for earlier in _approvals(store, sha):
        if earlier.status in ("pending", "approved"):
            raise GateError(f"this policy (sha256 {sha[:12]}) is already {earlier.status} as {earlier.id}")
    with store.transaction():
        approval = GuardedWrites(store).create_approval(
            kind="controller", subject=f"controller-{sha[:12]}", subject_sha256=sha,
            summary=f"{by} proposes the learned controller policy {sha[:12]}: {summary}",
            payload={"content": text, "proposed_by": by})
        store.append_audit(by, PROPOSE_ACTION, approval.id, {"sha256": sha, "required": required})
    return approval


def decide(store: Store, approval_id: str, decision: HumanDecision, signer: keys.Signer,
           note: str | None) -> Approval:
    """A reviewer's signed decision on a proposed policy; the policy is adopted once enough reviewers approved."""
    approval = store.get_approval(approval_id)
    if approval is None or approval.kind != "controller":
        raise GateError(f"no controller policy proposal '{approval_id}' (see `tether approvals`)")
    if approval.status != "pending":
        raise GateError(f"approval {approval_id} is already {approval.status} by {approval.decided_by}")
    if decision == "reject" and not (note or "").strip():
        raise GateError("a rejection needs --note saying why")
    _check_text(approval)
    signoff.check_signer(store, approval, signer)  # a refusal is audited, so outside the transaction
    with store.transaction():
        decided = signoff.sign(store, approval, decision, signer, note)
        if decided.status == "approved":
            store.append_audit(signoff.SYSTEM_ACTOR, "controller.adopt", approval.id,
                               {"sha256": approval.subject_sha256, "signed_by": decided.decided_by})
    return decided


def require_adopted(store: Store, sha256: str, path: str) -> Approval:
    """The approval that adopted the policy with this sha256, verified now; GateError when there is none (exit 2,
    with the commands that adopt it), TamperError when a row claims approval its signatures do not carry."""
    for approval in _approvals(store, sha256):
        if approval.status != "approved":
            continue
        _check_text(approval)
        if signoff.verify_decided(store, approval).approved:
            return approval
    raise GateError(f"the controller policy {path} (sha256 {sha256[:12]}) is not an approved controller policy of "
                    f"this workspace: propose it with `tether controller propose {path} --by NAME` and have a "
                    "reviewer sign it with `tether approve APPROVAL_ID --by REVIEWER`")


def _approvals(store: Store, sha256: str) -> list[Approval]:
    return [a for a in store.approvals() if a.kind == "controller" and a.subject_sha256 == sha256]


def _check_text(approval: Approval) -> None:
    text = str(approval.payload.get("content", ""))
    if hashlib.sha256(text.encode()).hexdigest() != approval.subject_sha256:
        raise TamperError(f"approval {approval.id} no longer holds the policy text that was proposed")
