"""Signed judge audits: what makes a `judge.audit` entry of the audit log evidence a run may trust.

Anyone who can write the workspace's database can append a well-chained `judge.audit` entry with whatever
measures they like, so the entry alone proves nothing. `tether judge audit --by NAME` therefore has a
registered reviewer sign an in-toto statement of the audit (predicate type `https://tether.dev/judge-audit/v1`):
the judge and world digests, tether's version, the probes' source, the verdict, every measure, the time, the
workspace, and the audit head the entry is appended after. Signature and statement are stored in the entry's
details. `verify` accepts an entry only when its signature verifies against the key the replayed reviewer
registry (guardrails/reviewers.py) holds for the signer, and the statement names exactly this entry's facts at
exactly this place of the chain, so a signature copied onto other measures, another judge, or a replay of the
whole entry later in the log is refused as tampering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guardrails import keys, reviewers
from guardrails.errors import DeniedError, TamperError
from guardrails.statements import Statement, StatementError, canonical, parse
from memory import AuditEntry, Store

KIND = "judge-audit"
DECISION = "judge.audit"
SIGNATURE_KEY = "signature"  # where the signature lives in the entry's details
# The entry's details a signature binds (everything but the signature itself).
SIGNED_FIELDS = ("judge", "settings", "judge_sha256", "world", "world_sha256", "tether", "source", "verdict",
                 "measures")


@dataclass(frozen=True)
class Signed:
    """The verified signer of one audit entry."""

    reviewer: str
    fingerprint: str
    time: str
    current: bool  # False once the signer was removed from the registry: their audits no longer count


def _facts(details: Mapping[str, Any]) -> dict[str, Any]:
    return {k: details.get(k) for k in SIGNED_FIELDS}


def require_reviewer(store: Store, signer: keys.Signer) -> None:
    """DeniedError (exit 1) unless `signer` is a reviewer of the verified registry with this very key."""
    registered = reviewers.registry(store).get(signer.name)
    if registered is None or registered.public_hex != signer.public_hex:
        raise DeniedError(f"'{signer.name}' is not a registered reviewer of this workspace with this key (see "
                          "`tether reviewer list`): only a reviewer's signature makes an audit count; nothing was "
                          "written")


def statement_for(store: Store, subject: str, details: Mapping[str, Any], reviewer: str) -> Statement:
    """What `reviewer` signs for an audit entry about to be appended with `details` under `subject`."""
    seq, head = store.audit_head()
    return Statement(KIND, subject, str(details.get("judge_sha256")), {
        **_facts(details), "decision": DECISION, "reviewer": reviewer, "workspace": reviewers.workspace_id(store),
        "time": store.now(), "audit_head": {"seq": seq, "hash": head},
    })


def signed_details(store: Store, subject: str, details: Mapping[str, Any], signer: keys.Signer) -> dict[str, Any]:
    """`details` with `signer`'s signature. Call inside the transaction that appends the entry, so that it is
    the entry right after the head the statement names."""
    require_reviewer(store, signer)
    body = statement_for(store, subject, details, signer.name).to_bytes()
    return {**details, SIGNATURE_KEY: {"reviewer": signer.name, "fingerprint": signer.fingerprint,
                                       "statement": body.decode("utf-8"), "signature": signer.sign(body)}}


def verify(entry: AuditEntry, registry: Mapping[str, reviewers.Reviewer], workspace: str) -> Signed | None:
    """The verified signer of `entry` (None when it is unsigned); TamperError when it carries a signature that
    is malformed, by a key the registry never held for that name, invalid, or made for other facts or another
    place in the log. `registry`: `reviewers.registry(store, include_removed=True)`."""
    what = f"judge audit entry {entry.seq}"
    sig = entry.details.get(SIGNATURE_KEY)
    if sig is None:
        return None
    fields = ("reviewer", "fingerprint", "statement", "signature")
    if not isinstance(sig, dict) or not all(isinstance(sig.get(k), str) for k in fields):
        raise TamperError(f"{what} has a malformed signature")
    try:
        statement = parse(sig["statement"])
    except StatementError as err:
        raise TamperError(f"{what} has a malformed signed statement: {err}") from None
    reviewer = registry.get(statement.reviewer)
    head = statement.audit_head
    if (reviewer is None or statement.reviewer != sig["reviewer"] or reviewer.fingerprint != sig["fingerprint"]
            or head is None or not reviewer.could_sign_at(head[0])):
        raise TamperError(f"{what} is signed by a key that was not registered to reviewer "
                          f"{statement.reviewer!r} when it was signed")
    if not keys.verify(reviewer.public_hex, sig["statement"].encode("utf-8"), sig["signature"]):
        raise TamperError(f"{what} has a signature that does not verify")
    p = statement.predicate
    if (statement.kind != KIND or statement.decision != DECISION or statement.subject != entry.subject
            or statement.subject_sha256 != entry.details.get("judge_sha256") or p.get("workspace") != workspace
            or canonical(_facts(p)) != canonical(_facts(entry.details))):
        raise TamperError(f"{what} carries a signature made for another audit: its signed statement does not "
                          "name this entry's judge, world and measures")
    # The statement names the head the entry was appended after: a copy of the whole entry sits elsewhere.
    if entry.seq != head[0] + 1 or entry.prev_hash != head[1]:
        raise TamperError(f"{what} carries a signature made for audit entry {head[0] + 1} (replayed)")
    if entry.actor != reviewer.name:
        raise TamperError(f"{what} is recorded as {entry.actor!r}'s, but signed by {reviewer.name!r}")
    return Signed(reviewer.name, reviewer.fingerprint, str(p.get("time")), reviewer.removed_at_seq is None)
