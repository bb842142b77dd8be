"""Hash-chained, append-only audit log.

Each entry's hash is sha256 over the canonical JSON of {seq, at, actor, action, subject, details,
prev_hash}; prev_hash is the previous entry's hash (64 zeros for the first). Editing, deleting or
re-ordering any entry therefore breaks the chain at that entry, and ``verify_chain`` names it.
Triggers refuse UPDATE and DELETE at the database level (see memory/schema.py); the chain is what
catches someone who drops the triggers or edits the file by other means.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from memory.base import StoreBase
from memory.common import Row, from_json

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: Row) -> AuditEntry:
        return cls(
            seq=int(row["seq"]),
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            subject=row["subject"],
            details=from_json(row["details"], {}),
            prev_hash=row["prev_hash"],
            hash=row["hash"],
        )


@dataclass(frozen=True)
class AuditReport:
    """Result of recomputing the chain; first_bad_seq names the first broken entry."""

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str | None = None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def entry_hash(
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str | None,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    body = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def verify_chain(rows: Iterable[Row], highest_issued: int | None = None) -> AuditReport:
    """Recompute the chain over rows ordered by seq.

    ``highest_issued`` is the largest seq the database ever assigned (sqlite_sequence); if the
    last surviving entry is below it, the tail was deleted.
    """
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    for row in rows:
        seq = int(row["seq"])
        if seq != expected_seq:
            return AuditReport(
                False, count, expected_seq,
                f"entry {expected_seq} is missing or out of order (the log goes from {expected_seq - 1} to {seq})",
            )
        if row["prev_hash"] != prev:
            return AuditReport(
                False, count, seq, "prev_hash does not match the previous entry's hash"
            )
        try:
            details = json.loads(row["details"])
        except (TypeError, ValueError):
            return AuditReport(False, count, seq, "details is not valid JSON")
        recomputed = entry_hash(
            seq, row["at"], row["actor"], row["action"], row["subject"], details, row["prev_hash"]
        )
        if recomputed != row["hash"]:
            return AuditReport(False, count, seq, "hash mismatch: entry content was modified")
        prev = row["hash"]
        expected_seq += 1
        count += 1
    if highest_issued is not None and highest_issued >= expected_seq:
        return AuditReport(
            False,
            count,
            expected_seq,
            f"truncated: entries up to seq {highest_issued} were written, "
            f"the log ends at {expected_seq - 1}",
        )
    return AuditReport(True, count)


class AuditMixin(StoreBase):
    def append_audit(
        self,
        actor: str,
        action: str,
        subject: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry; reading the last hash and inserting happen in one write lock."""
        # Round-trip through JSON so the returned entry equals what verify will decode
        # (tuples become lists) and non-JSON values fail here, before anything is written.
        details_text = canonical_json(dict(details or {}))
        normalized = json.loads(details_text)
        with self.transaction():
            last = self._one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            seq = 1 if last is None else int(last["seq"]) + 1
            prev = GENESIS_HASH if last is None else last["hash"]
            at = self.now()
            digest = entry_hash(seq, at, actor, action, subject, normalized, prev)
            self._insert(
                "audit",
                {
                    "seq": seq,
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "details": details_text,
                    "prev_hash": prev,
                    "hash": digest,
                },
            )
        return AuditEntry(seq, at, actor, action, subject, normalized, prev, digest)

    def audit_entries(
        self, subject: str | None = None, since_seq: int = 0, limit: int | None = None
    ) -> list[AuditEntry]:
        sql = "SELECT * FROM audit WHERE seq > ?"
        params: list[Any] = [since_seq]
        if subject is not None:
            sql += " AND subject = ?"
            params.append(subject)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [AuditEntry.from_row(r) for r in self._rows(sql, params)]

    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the newest entry; (0, GENESIS_HASH) for an empty log."""
        last = self._one("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        return (0, GENESIS_HASH) if last is None else (int(last["seq"]), str(last["hash"]))

    def audit_entry(self, seq: int) -> AuditEntry | None:
        row = self._one("SELECT * FROM audit WHERE seq = ?", (seq,))
        return None if row is None else AuditEntry.from_row(row)

    def verify_audit(self) -> AuditReport:
        with self._lock:
            issued = self._one("SELECT seq FROM sqlite_sequence WHERE name = 'audit'")
            rows = self._rows("SELECT * FROM audit ORDER BY seq")
        return verify_chain(rows, None if issued is None else int(issued["seq"]))
