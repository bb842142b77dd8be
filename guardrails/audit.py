"""Audit verification against signed heads: a chain that was rewritten or cut short is found.

The hash chain alone catches an edited, deleted or reordered entry, but not a chain recomputed end to
end, nor a cut tail. Every reviewer signature (approvals, rejections, rollbacks, reviewer changes)
names the audit head at the moment it was made, and is itself recorded by an audit entry. So:

1. the chain must recompute (memory.audit.verify_chain);
2. the entry at every signed head must carry the hash the reviewer signed: a recomputed chain cannot;
3. the entry recording every signature must still be there: a tail cut after the last signed head
   loses at least that entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from guardrails import reviewers
from guardrails.errors import TamperError
from guardrails.signoff import verify_signature_row
from guardrails.statements import StatementError, parse
from memory import AuditReport, Store


def _signed_heads(store: Store) -> Iterator[tuple[int, str, str, str]]:
    """(head seq, head hash, who signed, the sha256 of the statement) for every signature."""
    for event in store.reviewer_events():
        yield from _head(event.statement, f"reviewer event {event.seq} ({event.action} '{event.name}')")
    for sig in store.signatures():
        yield from _head(sig.statement, f"signature {sig.id} by {sig.reviewer}")


def _head(text: str, what: str) -> Iterator[tuple[int, str, str, str]]:
    try:
        head = parse(text).audit_head
    except StatementError as err:
        raise TamperError(f"{what} has a malformed statement: {err}") from None
    if head is None:
        raise TamperError(f"{what} names no audit head")
    yield head[0], head[1], what, hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify(store: Store) -> AuditReport:
    """The whole audit log against its chain and every signed head; names the first bad entry."""
    report = store.verify_audit()
    if not report.ok:
        return report
    try:
        heads = sorted(_signed_heads(store))
    except TamperError as err:
        return AuditReport(False, report.entries, None, str(err))
    entries = {e.seq: e for e in store.audit_entries()}
    end = max(entries, default=0)
    last_good = 0
    for seq, digest, what, _ in heads:
        entry = entries.get(seq)
        if seq > end:
            return AuditReport(False, report.entries, end + 1,
                               f"truncated: {what} signed audit head {seq}, but the log ends at {end}")
        if seq > 0 and (entry is None or entry.hash != digest):
            return AuditReport(False, report.entries, last_good + 1,
                               f"rewritten: entry {seq} does not carry the hash {what} signed; the chain was "
                               f"recomputed from an entry between {last_good + 1} and {seq}")
        last_good = max(last_good, seq)
    recorded = {e.details.get("statement_sha256") for e in entries.values()}
    for seq, _, what, statement_sha in heads:
        if statement_sha not in recorded:
            return AuditReport(False, report.entries, seq + 1,
                               f"truncated or deleted: the audit entry recording {what} (made after entry {seq}) "
                               "is missing")
    try:
        _check_signatures(store)
    except TamperError as err:
        return AuditReport(False, report.entries, None, str(err))
    return report


def _check_signatures(store: Store) -> None:
    """Every stored signature verifies against the registry (which replays and verifies itself)."""
    registry = reviewers.registry(store, include_removed=True)
    for sig in store.signatures():
        verify_signature_row(store, sig, registry, f"signature {sig.id} by {sig.reviewer}")
