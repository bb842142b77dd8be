"""Human sign-off: reviewers sign statements about approvals; guardrails count only what verifies.

An approval's status is never trusted as written. `verify` replays the reviewer registry, checks every
signature on the approval against the key registered for its reviewer at that point of the audit
chain, checks that each signed statement names exactly this approval, its subject's digest and the
facts it was made against (parent checkpoint, pinned base model, constitution version, evaluation
report), that its audit head is in the chain, and counts distinct reviewers. A row inserted or edited
by hand, a signature replayed from another subject, a key nobody registered, and an actor of the
software itself all fail here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from guardrails import keys, reviewers
from guardrails.errors import DeniedError, GateError, TamperError
from guardrails.statements import Statement, StatementError, digest, parse
from memory import Approval, Store
from memory.guarded import GuardedWrites

HumanDecision = Literal["approve", "reject"]
SYSTEM_ACTOR = "tether"
REQUEST_ACTIONS = ("approval.request", "constitution.propose", "constitution.init", "constitution.new",
                   "controller.propose")
# Kinds whose proposer names the change and so may never decide it (a checkpoint is the run's, not a person's).
PROPOSED = ("constitution", "controller")


@dataclass(frozen=True)
class SignOff:
    """What the verified signatures of one approval add up to."""

    approval_id: str
    required: int
    approved_by: tuple[str, ...] = ()
    rejected_by: tuple[tuple[str, str | None], ...] = ()
    signatures: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def approved(self) -> bool:
        return not self.rejected_by and len(self.approved_by) >= self.required

    @property
    def rejected(self) -> bool:
        return bool(self.rejected_by)


def evaluation_digest(metrics: dict[str, Any] | None, invariant_report: dict[str, Any] | None) -> str:
    """The digest of what a reviewer was shown: held-out evaluation and the invariant report."""
    return digest({"eval": (metrics or {}).get("eval"), "invariants": invariant_report})


def _request_entry(store: Store, approval: Approval) -> dict[str, Any]:
    """The audited details of the approval's creation: its required count lives there, where the
    signed audit chain protects it (the approvals row itself can be edited)."""
    for entry in store.audit_entries(subject=approval.id):
        if entry.action in REQUEST_ACTIONS:
            return entry.details
    raise TamperError(f"approval {approval.id} has no audited request: it was not created by tether")


def required_for(store: Store, approval: Approval) -> int:
    required = _request_entry(store, approval).get("required", 1)
    if not isinstance(required, int) or required < 1:
        raise TamperError(f"approval {approval.id} has an invalid required count {required!r} in its audit entry")
    return required


def facts(store: Store, approval: Approval) -> dict[str, Any]:
    """Everything a statement about this approval must name, recomputed from the store now."""
    common: dict[str, Any] = {"approval_id": approval.id, "kind": approval.kind, "run_id": approval.run_id,
                              "workspace": reviewers.workspace_id(store)}
    if approval.kind == "constitution":
        # lineage: the one a `tether constitution new` proposal founds; None (and absent from the statement) for
        # an amendment or v1, so a payload edited to add or drop it no longer matches what was signed.
        return {**common, "base_version": approval.payload.get("base_version"),
                "proposed_by": approval.payload.get("proposed_by"), "lineage": approval.payload.get("lineage")}
    if approval.kind == "controller":
        return {**common, "proposed_by": approval.payload.get("proposed_by")}
    ck = store.get_checkpoint(approval.subject)
    if ck is None or ck.run_id is None:
        raise TamperError(f"approval {approval.id} names checkpoint {approval.subject}, which is not in the store")
    run = store.get_run(ck.run_id)
    report = ck.invariant_report or {}
    base = (run.base_model or {}) if run is not None else {}
    return {**common, "parent": ck.parent, "base_model": base.get("sha256"),
            "constitution": report.get("constitution"),
            "evaluation_sha256": evaluation_digest(ck.metrics, ck.invariant_report)}


def statement_for(store: Store, approval: Approval, decision: str, reviewer: str, note: str | None,
                  accept_not_met: tuple[str, ...] = ()) -> Statement:
    """What a reviewer signs. `accept_not_met` names the invariants whose target the candidate does not
    meet and that the reviewer approves anyway (the key is absent when there are none, as in statements
    signed before it existed)."""
    seq, head = store.audit_head()
    accepted = {"accept_not_met": list(accept_not_met)} if accept_not_met else {}
    named = {k: v for k, v in facts(store, approval).items() if not (k == "lineage" and v is None)}
    return Statement("approval", approval.subject, approval.subject_sha256, {
        **named, "decision": decision, "reviewer": reviewer, "note": note, **accepted,
        "time": store.now(), "audit_head": {"seq": seq, "hash": head},
    })


def check_head(store: Store, statement: Statement, what: str) -> None:
    head = statement.audit_head
    entry = store.audit_entry(head[0]) if head is not None and head[0] > 0 else None
    if head is None or (head[0] > 0 and (entry is None or entry.hash != head[1])):
        raise TamperError(f"{what} names audit head {head} that is not in the audit chain")


def verify_signature_row(store: Store, sig: Any, registry: dict[str, reviewers.Reviewer], what: str) -> Statement:
    """Parse and verify one stored signature: a registered key at that time, a valid Ed25519 signature."""
    try:
        statement = parse(sig.statement)
    except StatementError as err:
        raise TamperError(f"{what} has a malformed statement: {err}") from None
    name = statement.reviewer
    if keys.name_problem(name) or name != sig.reviewer or statement.decision != sig.decision:
        raise TamperError(f"{what} does not match its signed statement (reviewer {name!r})")
    reviewer = registry.get(name)
    head = statement.audit_head
    if (reviewer is None or reviewer.fingerprint != sig.fingerprint or head is None
            or not reviewer.could_sign_at(head[0])):
        raise TamperError(f"{what} is signed by a key not registered to '{name}' at that time")
    if not keys.verify(reviewer.public_hex, sig.statement.encode("utf-8"), sig.signature):
        raise TamperError(f"{what} has a signature that does not verify")
    check_head(store, statement, what)
    return statement


def verify(store: Store, approval: Approval) -> SignOff:
    """Every signature of `approval`, verified; raises TamperError on the first that is not genuine."""
    expected = facts(store, approval)
    proposed_sha = _request_entry(store, approval).get("sha256") if approval.kind in PROPOSED else None
    if proposed_sha is not None and proposed_sha != approval.subject_sha256:
        raise TamperError(f"approval {approval.id} names another text than the one its audited proposal named")
    registry = reviewers.registry(store, include_removed=True)
    proposer = approval.payload.get("proposed_by") if approval.kind in PROPOSED else None
    approved: list[str] = []
    rejected: list[tuple[str, str | None]] = []
    shown: list[dict[str, Any]] = []
    for sig in store.signatures(approval_id=approval.id):
        what = f"signature {sig.id} on {approval.id}"
        statement = verify_signature_row(store, sig, registry, what)
        p = statement.predicate
        if (statement.kind != "approval" or statement.subject != approval.subject
                or statement.subject_sha256 != approval.subject_sha256
                or any(p.get(k) != v for k, v in expected.items())):
            raise TamperError(f"{what} was signed for another subject or against other facts (replayed?)")
        if statement.reviewer == proposer:
            raise TamperError(f"{what}: '{proposer}' proposed this change and cannot approve it")
        if statement.reviewer in approved or any(statement.reviewer == r for r, _ in rejected):
            raise TamperError(f"{what}: '{statement.reviewer}' signed this approval twice")
        if statement.decision == "approve":
            approved.append(statement.reviewer)
        else:
            rejected.append((statement.reviewer, p.get("note")))
        shown.append({"reviewer": statement.reviewer, "decision": statement.decision, "time": p.get("time"),
                      "note": p.get("note"), "accept_not_met": _accepted(p), "fingerprint": sig.fingerprint})
    return SignOff(approval.id, required_for(store, approval), tuple(approved), tuple(rejected), tuple(shown))


def _accepted(predicate: dict[str, Any]) -> list[str]:
    """The invariants a signed approval accepted as not met (none in statements signed before the field)."""
    value = predicate.get("accept_not_met")
    return [str(v) for v in value] if isinstance(value, list) else []


def verify_decided(store: Store, approval: Approval) -> SignOff:
    """An approval whose recorded status its signatures do not support is tampering."""
    signoff = verify(store, approval)
    if approval.status == "approved" and not signoff.approved:
        raise TamperError(f"approval {approval.id} is recorded as approved but has {len(signoff.approved_by)} valid "
                          f"approving signature(s) of {signoff.required} required: the row was not written by tether")
    if approval.status == "rejected" and not signoff.rejected:
        raise TamperError(f"approval {approval.id} is recorded as rejected without a valid signed rejection")
    return signoff


def refuse(store: Store, approval_id: str, actor: str, why: str) -> DeniedError:
    """Audit a refused decision and return the error to raise."""
    store.append_audit(SYSTEM_ACTOR, "approval.refused", approval_id, {"by": actor, "reason": why})
    return DeniedError(why)


def check_signer(store: Store, approval: Approval, signer: keys.Signer) -> None:
    """Refuse (audited, DeniedError) a signer who may not decide this approval. Call it outside any
    transaction that a refusal would roll back, or the refusal's audit entry goes with it."""
    problem = keys.name_problem(signer.name)
    if problem:
        raise refuse(store, approval.id, signer.name, problem)
    registered = reviewers.registry(store).get(signer.name)
    if registered is None or registered.public_hex != signer.public_hex:
        raise refuse(store, approval.id, signer.name,
                     f"'{signer.name}' is not a registered reviewer of this workspace with this key "
                     "(see `tether reviewer list`)")
    if approval.kind in PROPOSED and signer.name == approval.payload.get("proposed_by"):
        raise refuse(store, approval.id, signer.name,
                     f"'{signer.name}' proposed this change; the proposer can never approve or reject it")


def sign(store: Store, approval: Approval, decision: HumanDecision, signer: keys.Signer, note: str | None,
         accept_not_met: tuple[str, ...] = ()) -> Approval:
    """Record `signer`'s signed decision on a pending approval, then settle its status if it is decided.
    `accept_not_met`: the invariants whose target not met the reviewer accepts (gate.decide asks for them)."""
    check_signer(store, approval, signer)
    current = verify(store, approval)
    if signer.name in current.approved_by or any(signer.name == r for r, _ in current.rejected_by):
        raise GateError(f"'{signer.name}' has already signed {approval.id}; it needs another reviewer")
    statement = statement_for(store, approval, decision, signer.name, note, accept_not_met)
    body = statement.to_bytes()
    writes = GuardedWrites(store)
    with store.transaction():
        writes.add_signature(approval.id, approval.subject, decision, signer.name, signer.fingerprint,
                             body.decode("utf-8"), signer.sign(body))
        store.append_audit(signer.name, "approval.signed", approval.id,
                           {"decision": decision, "note": note, "subject": approval.subject,
                            **({"accept_not_met": list(accept_not_met)} if accept_not_met else {}),
                            "statement_sha256": hashlib.sha256(body).hexdigest()})
        settled = verify(store, approval)
        if settled.rejected:
            return writes.decide_approval(approval.id, "rejected", signer.name, note)
        if settled.approved:
            return writes.decide_approval(approval.id, "approved", ", ".join(settled.approved_by), note)
    found = store.get_approval(approval.id)
    if found is None:
        raise GateError(f"approval {approval.id} vanished")
    return found
