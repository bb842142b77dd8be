"""Signed statements: what a reviewer's signature binds, as an in-toto Statement v1.

A statement names its subject by digest (an adapter's sha256, an amendment's, a reviewer's public key
fingerprint) and carries a predicate of type ``https://tether.dev/<kind>/v1`` with the decision and
everything it was made against: the parent checkpoint, the pinned base model, the constitution version,
the evaluation report's digest, the note, the time, and the audit chain's head at that moment. The
signature is Ed25519 over the statement's canonical JSON bytes (sorted keys, no whitespace), stored
exactly as signed, so any Ed25519 tool can check it against the reviewer's public key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from tether_types import TetherError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_BASE = "https://tether.dev"

Decision = Literal["approve", "reject", "rollback", "reviewer.add", "reviewer.remove", "judge.audit"]
DECISIONS: frozenset[str] = frozenset({"approve", "reject", "rollback", "reviewer.add", "reviewer.remove",
                                       "judge.audit"})


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(value: Any) -> str:
    """SHA-256 of a JSON value's canonical bytes: how reports and payloads are named in statements."""
    return hashlib.sha256(canonical(value)).hexdigest()


@dataclass(frozen=True)
class Statement:
    """A decoded statement. ``subject`` is (name, sha256); ``predicate`` holds the decision's facts."""

    kind: str  # approval | rollback | reviewer | judge-audit
    subject: str
    subject_sha256: str
    predicate: dict[str, Any]

    @property
    def decision(self) -> str:
        return str(self.predicate.get("decision", ""))

    @property
    def reviewer(self) -> str:
        return str(self.predicate.get("reviewer", ""))

    @property
    def audit_head(self) -> tuple[int, str] | None:
        head = self.predicate.get("audit_head")
        if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
            return None
        return head["seq"], head["hash"]

    def to_bytes(self) -> bytes:
        return canonical({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.subject, "digest": {"sha256": self.subject_sha256}}],
            "predicateType": f"{PREDICATE_BASE}/{self.kind}/v1",
            "predicate": self.predicate,
        })


class StatementError(TetherError, ValueError):
    """Bytes that are not a well-formed tether statement."""


def parse(text: str) -> Statement:
    """Decode a stored statement, refusing anything that is not exactly the canonical form it was signed in."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise StatementError(f"not JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise StatementError("not an in-toto Statement v1")
    subjects = doc.get("subject")
    predicate_type = str(doc.get("predicateType", ""))
    predicate = doc.get("predicate")
    if (not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict)
            or not isinstance(predicate, dict) or not predicate_type.startswith(PREDICATE_BASE + "/")):
        raise StatementError("malformed subject or predicate")
    kind = predicate_type[len(PREDICATE_BASE) + 1:].removesuffix("/v1")
    sha = (subjects[0].get("digest") or {}).get("sha256")
    statement = Statement(kind, str(subjects[0].get("name", "")), str(sha), predicate)
    if statement.to_bytes() != text.encode("utf-8"):
        raise StatementError("not in canonical form")
    if statement.decision not in DECISIONS:
        raise StatementError(f"unknown decision {statement.decision!r}")
    return statement
