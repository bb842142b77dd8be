"""The workspace's reviewers: people with keys, registered by signed, audited events.

The registry is never read from a table as is: it is replayed from the reviewer events, each checked
against the registry before it. The replay starts from the root of trust pinned outside the workspace
(guardrails/trust.py): the first event must be the pinned first reviewer's own registration, with the
pinned key, naming the pinned `workspace.init` entry as its audit head. Every later addition or removal
is signed by a reviewer registered before it, names an audit head the chain carries (never an earlier
one than the event before it), and is recorded by an audit entry after that head. The head the
reviewer's commands last witnessed must still be in the chain. An event inserted, edited, re-signed or
re-rooted by hand breaks the replay and is reported as tampering, naming the event.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from guardrails import keys, trust
from guardrails.errors import GateError, TamperError
from guardrails.statements import Statement, StatementError, parse
from memory import Store
from memory.guarded import GuardedWrites
from memory.records import ReviewerEvent

WORKSPACE_ID_KEY = "workspace_id"


@dataclass(frozen=True)
class Reviewer:
    name: str
    public_hex: str
    fingerprint: str
    added_at_seq: int  # audit head seq named in the statement that added it
    removed_at_seq: int | None = None  # and in the one that removed it

    def could_sign_at(self, audit_seq: int) -> bool:
        """Registered before a statement naming that audit head, and not removed before it."""
        return self.added_at_seq <= audit_seq and (self.removed_at_seq is None or audit_seq < self.removed_at_seq)


def workspace_id(store: Store) -> str:
    """The id every statement names, so a signature cannot be replayed into another workspace."""
    found = store.meta(WORKSPACE_ID_KEY)
    if found is None:
        found = "ws-" + secrets.token_hex(8)
        GuardedWrites(store).set_meta(WORKSPACE_ID_KEY, found)
    return found


def _event_statement(store: Store, action: str, name: str, public_hex: str, by: str, note: str | None) -> Statement:
    seq, head = store.audit_head()
    return Statement("reviewer", name, keys.fingerprint(public_hex), {
        "decision": f"reviewer.{action}", "reviewer": by, "public_key": public_hex, "note": note,
        "workspace": workspace_id(store), "time": store.now(), "audit_head": {"seq": seq, "hash": head},
    })


def registry(store: Store, *, include_removed: bool = False) -> dict[str, Reviewer]:
    """Replay and verify every reviewer event from the pinned root; raises TamperError naming the first
    bad one (or the missing pin, or a witnessed head the log no longer carries)."""
    ws = store.meta(WORKSPACE_ID_KEY)
    if ws is None:
        raise TamperError("the workspace has no id: it was not created by `tether init`")
    root = trust.require(store, ws)
    trust.check_witness(store, ws)
    current: dict[str, Reviewer] = {}
    everyone: dict[str, Reviewer] = {}
    last_head = 0
    for event in store.reviewer_events():
        statement = _checked_event(event, ws, current, root if not everyone else None)
        last_head = _checked_head(store, event, statement, last_head)
        if event.action == "add":
            current[event.name] = everyone[event.name] = Reviewer(event.name, event.public_key, event.fingerprint,
                                                                  last_head)
        else:
            removed = current.pop(event.name)
            everyone[event.name] = Reviewer(removed.name, removed.public_hex, removed.fingerprint,
                                            removed.added_at_seq, last_head)
    if not everyone:
        raise TamperError(f"the workspace has no reviewer events; its pinned first reviewer is '{root.reviewer}'")
    return everyone if include_removed else current


def _checked_head(store: Store, event: ReviewerEvent, statement: Statement, last_head: int) -> int:
    """The event's audit head is in the chain, not before the previous event's, and the event is recorded
    by an audit entry after it."""
    what = f"reviewer event {event.seq} ({event.action} '{event.name}')"
    head = statement.audit_head
    entry = store.audit_entry(head[0]) if head is not None else None
    if head is None or entry is None or entry.hash != head[1]:
        raise TamperError(f"{what} names audit head {head}, which the audit chain does not carry")
    if head[0] < last_head:
        raise TamperError(f"{what} names audit head {head[0]}, before the event preceding it ({last_head})")
    body_sha = hashlib.sha256(event.statement.encode("utf-8")).hexdigest()
    if not any(e.seq > head[0] and e.action == f"reviewer.{event.action}" and e.details.get("event") == event.seq
               and e.details.get("statement_sha256") == body_sha for e in store.audit_entries(subject=event.name)):
        raise TamperError(f"{what} is not recorded in the audit log after the head it names")
    return head[0]


def _checked_event(event: ReviewerEvent, ws: str, current: dict[str, Reviewer],
                   root: trust.TrustRoot | None) -> Statement:
    """One event against the registry before it; `root` is given for the first event only."""
    def bad(why: str) -> TamperError:
        return TamperError(f"reviewer event {event.seq} ({event.action} '{event.name}') {why}")

    try:
        statement = parse(event.statement)
    except StatementError as err:
        raise bad(f"has a malformed statement: {err}") from None
    p = statement.predicate
    if (statement.kind != "reviewer" or statement.decision != f"reviewer.{event.action}"
            or statement.subject != event.name or p.get("public_key") != event.public_key):
        raise bad("does not match its signed statement")
    if keys.fingerprint(event.public_key) != event.fingerprint or statement.subject_sha256 != event.fingerprint:
        raise bad("names a key that is not the one it registers")
    if p.get("workspace") != ws:
        raise bad("was signed for another workspace")
    if statement.reviewer != event.signed_by:
        raise bad("names another signer than its statement")
    if root is not None:
        if event.action != "add" or event.signed_by != event.name:
            raise bad("is not the first reviewer's own registration")
        if (event.name, event.public_key) != (root.reviewer, root.public_key):
            raise bad(f"re-roots the registry: the pinned first reviewer is '{root.reviewer}' with key "
                      f"{root.fingerprint[:16]}, not '{event.name}' with key {event.fingerprint[:16]}")
        if statement.audit_head != (1, root.genesis):
            raise bad("does not name the pinned workspace.init entry as its audit head")
        signer_key = event.public_key
    else:
        signer = current.get(event.signed_by)
        if signer is None:
            raise bad(f"is signed by '{event.signed_by}', who was not a reviewer then")
        signer_key = signer.public_hex
    if not keys.verify(signer_key, event.statement.encode("utf-8"), event.signature):
        raise bad("has a signature that does not verify")
    if event.action == "add" and event.name in current:
        raise bad("adds a reviewer already registered")
    if event.action == "remove" and event.name not in current:
        raise bad("removes someone who is not a reviewer")
    return statement


def _record(store: Store, action: str, statement: Statement, public_hex: str, signer: keys.Signer) -> ReviewerEvent:
    body = statement.to_bytes()
    with store.transaction():
        event = GuardedWrites(store).add_reviewer_event(
            action, statement.subject, public_hex, keys.fingerprint(public_hex), signer.name, body.decode("utf-8"),
            signer.sign(body))
        store.append_audit(signer.name, f"reviewer.{action}", statement.subject,
                           {"fingerprint": keys.fingerprint(public_hex), "event": event.seq,
                            "statement_sha256": hashlib.sha256(body).hexdigest(),
                            "note": statement.predicate.get("note")})
    return event


def register_first(store: Store, signer: keys.Signer) -> ReviewerEvent:
    """The workspace's first reviewer registers themselves (at `tether init`)."""
    if store.reviewer_events():
        raise GateError("this workspace already has reviewers; an existing reviewer adds new ones")
    problem = keys.name_problem(signer.name)
    if problem:
        raise GateError(problem)
    statement = _event_statement(store, "add", signer.name, signer.public_hex, signer.name, "first reviewer")
    return _record(store, "add", statement, signer.public_hex, signer)


def add(store: Store, name: str, public_hex: str, by: keys.Signer, note: str | None = None) -> ReviewerEvent:
    """Register `name` with `public_hex`, signed by the existing reviewer `by`."""
    problem = keys.name_problem(name)
    if problem:
        raise GateError(problem)
    current = registry(store)
    _require_signer(current, by)
    if name in current:
        raise GateError(f"'{name}' is already a reviewer of this workspace")
    if any(r.public_hex == public_hex for r in current.values()):
        raise GateError("that public key is already registered to another reviewer; one person, one key")
    return _record(store, "add", _event_statement(store, "add", name, public_hex, by.name, note), public_hex, by)


def remove(store: Store, name: str, by: keys.Signer, reason: str) -> ReviewerEvent:
    if not reason.strip():
        raise GateError("removing a reviewer needs --reason")
    current = registry(store)
    _require_signer(current, by)
    if name not in current:
        raise GateError(f"'{name}' is not a reviewer of this workspace (see `tether reviewer list`)")
    if len(current) == 1:
        raise GateError(f"'{name}' is the last reviewer; add another before removing them")
    target = current[name]
    statement = _event_statement(store, "remove", name, target.public_hex, by.name, reason)
    return _record(store, "remove", statement, target.public_hex, by)


def _require_signer(current: dict[str, Reviewer], signer: keys.Signer) -> None:
    registered = current.get(signer.name)
    if registered is None:
        raise TamperError(f"'{signer.name}' is not a registered reviewer of this workspace")
    if registered.public_hex != signer.public_hex:
        raise TamperError(f"the key of '{signer.name}' in the key folder is not the one registered in this workspace")
