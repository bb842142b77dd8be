"""Audit verification against signed heads: a chain that was rewritten or cut short is found.

The hash chain alone catches an edited, deleted or reordered entry, but not a chain recomputed end to
end, nor a cut tail. Every reviewer signature (approvals, rejections, rollbacks, reviewer changes)
names the audit head at the moment it was made, and is itself recorded by an audit entry. So:

1. the chain must recompute (memory.audit.verify_chain);
2. the entry at every signed head must carry the hash the reviewer signed: a recomputed chain cannot;
3. the entry recording every signature must still be there: a tail cut after the last signed head
   loses at least that entry;
4. the head each reviewer's commands last witnessed (guardrails/trust.py: the one in this reviewer's key
   folder, and any other reviewer's witness file given) must still be in the chain with the hash seen:
   a tail cut or rewritten after the last signature, but before a reviewer's last look, is found.

What stays out of reach: entries written after every reviewer's last look and cut or rewritten before
the next one; the first reviewer command after that witnesses the shortened log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from guardrails import judge_audits, reviewers, trust
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


def verify(store: Store, witnesses: list[Path] | None = None) -> AuditReport:
    """The whole audit log against its chain, every signed head and every witnessed head; names the first
    bad entry."""
    report = store.verify_audit()
    if not report.ok:
        return report
    try:
        for seen in _witnessed(store, witnesses or []):
            problem = trust.witness_problem(store, seen)
            if problem:
                return AuditReport(False, report.entries, min(seen.seq, store.audit_head()[0] + 1), problem)
    except TamperError as err:
        return AuditReport(False, report.entries, None, str(err))
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


def _witnessed(store: Store, files: list[Path]) -> list[trust.Witnessed]:
    """The head witnessed in this reviewer's folder, and those of the witness files given."""
    workspace = store.meta(reviewers.WORKSPACE_ID_KEY)
    if workspace is None:
        raise TamperError("the workspace has no id: it was not created by `tether init`")
    found = [trust.witnessed(workspace, path) for path in [None, *files]]
    for path, seen in zip(files, found[1:], strict=True):
        if seen is None or seen.workspace != workspace:
            raise TamperError(f"{path} is not a witness of workspace {workspace}")
    return [seen for seen in found if seen is not None]


def _check_signatures(store: Store) -> None:
    """Every stored signature verifies against the registry (which replays and verifies itself), and so does
    every signed judge audit of the log (a forged one would otherwise show only when its judge is next used)."""
    registry = reviewers.registry(store, include_removed=True)
    for sig in store.signatures():
        verify_signature_row(store, sig, registry, f"signature {sig.id} by {sig.reviewer}")
    workspace = reviewers.workspace_id(store)
    for entry in store.audit_entries():
        if entry.action == judge_audits.DECISION:
            judge_audits.verify(entry, registry, workspace)
