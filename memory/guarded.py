"""The writes that decide what may become active: guardrails' alone.

Checkpoint status, path, sha256 and invariant verdict; a run's active checkpoint, pinned base model,
constitution version and config; approvals, signatures, reviewers and constitution versions. The
`Store` offers none of these to other rooms (its own update methods refuse those columns), and a test
checks that nothing outside guardrails/ imports this module. Each method records; the rules live in
guardrails/.
"""

from __future__ import annotations

import secrets
from typing import Any

from memory.common import (
    APPROVAL_KINDS,
    CHECKPOINT_STATUSES,
    ApprovalStateError,
    NotFoundError,
    to_json,
)
from memory.records import Approval, Checkpoint, ConstitutionVersion, ReviewerEvent, Signature
from memory.store import Store


class GuardedWrites:
    """Guarded writes on one store; join the store's transactions like its own methods."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- checkpoints and runs ----------------------------------------------------------------

    def add_checkpoint(self, ck: Checkpoint) -> Checkpoint:
        s = self.store
        s._check_value("checkpoint status", ck.status, CHECKPOINT_STATUSES)
        values = s._encode(
            {
                "id": ck.id, "run_id": ck.run_id, "round": ck.round, "status": ck.status, "path": ck.path,
                "sha256": ck.sha256, "parent": ck.parent, "created_at": ck.created_at or s.now(),
                "metrics": ck.metrics, "invariant_ok": ck.invariant_ok, "invariant_report": ck.invariant_report,
            },
            frozenset({"metrics", "invariant_report"}),
            frozenset({"invariant_ok"}),
        )
        with s.transaction():
            s._insert("checkpoints", values)
            return s._require_checkpoint(ck.id)

    def set_checkpoint_status(self, checkpoint_id: str, status: str) -> Checkpoint:
        self.store._check_value("checkpoint status", status, CHECKPOINT_STATUSES)
        return self._set_checkpoint(checkpoint_id, status=status)

    def set_invariant_verdict(self, checkpoint_id: str, ok: bool, report: dict[str, Any]) -> Checkpoint:
        return self._set_checkpoint(checkpoint_id, invariant_ok=int(bool(ok)), invariant_report=to_json(report))

    def _set_checkpoint(self, checkpoint_id: str, **values: Any) -> Checkpoint:
        s = self.store
        sets = ", ".join(f"{k} = ?" for k in values)
        with s.transaction():
            if s._exec(f"UPDATE checkpoints SET {sets} WHERE id = ?", [*values.values(), checkpoint_id]).rowcount != 1:
                raise NotFoundError(f"no checkpoint {checkpoint_id!r}")
            return s._require_checkpoint(checkpoint_id)

    def set_active(self, run_id: str, checkpoint_id: str) -> None:
        self._set_run(run_id, active_checkpoint=checkpoint_id)

    def set_base_model(self, run_id: str, base_model: dict[str, Any]) -> None:
        self._set_run(run_id, base_model=to_json(base_model))

    def set_constitution_version(self, run_id: str, version: int) -> None:
        self._set_run(run_id, constitution_version=int(version))

    def set_run_config(self, run_id: str, config: dict[str, Any], config_sha256: str) -> None:
        self._set_run(run_id, config=to_json(config), config_sha256=config_sha256)

    def _set_run(self, run_id: str, **values: Any) -> None:
        s = self.store
        values["updated_at"] = s.now()
        sets = ", ".join(f"{k} = ?" for k in values)
        with s.transaction():
            if s._exec(f"UPDATE runs SET {sets} WHERE id = ?", [*values.values(), run_id]).rowcount != 1:
                raise NotFoundError(f"no run {run_id!r}")

    # -- approvals and signatures ------------------------------------------------------------

    def create_approval(self, kind: str, subject: str, subject_sha256: str, summary: str,
                        payload: dict[str, Any] | None = None, run_id: str | None = None,
                        status: str = "pending") -> Approval:
        """A new approval with a short random id ("ap-" + 8 hex)."""
        s = self.store
        s._check_value("approval kind", kind, APPROVAL_KINDS)
        values = {"kind": kind, "run_id": run_id, "subject": str(subject), "subject_sha256": subject_sha256,
                  "status": status, "created_at": s.now(), "summary": summary, "payload": to_json(payload or {})}
        with s.transaction():
            while True:  # retry on the (astronomically rare) id collision
                approval_id = "ap-" + secrets.token_hex(4)
                if s.get_approval(approval_id) is None:
                    break
            s._insert("approvals", {"id": approval_id, **values})
            return s._require_approval(approval_id)

    def decide_approval(self, approval_id: str, status: str, by: str, note: str | None = None) -> Approval:
        """Move a pending approval to approved/rejected exactly once (guarded by status = 'pending'
        in one BEGIN IMMEDIATE transaction, so of two concurrent deciders exactly one wins)."""
        if status not in ("approved", "rejected", "withdrawn"):
            raise ValueError(f"decision must be 'approved', 'rejected' or 'withdrawn', not {status!r}")
        s = self.store
        with s.transaction():
            current = s._require_approval(approval_id)
            if current.status != "pending":
                raise ApprovalStateError(
                    f"approval {approval_id} is already {current.status} (by {current.decided_by} at "
                    f"{current.decided_at})", current)
            s._exec("UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, note = ? "
                    "WHERE id = ? AND status = 'pending'", (status, by, s.now(), note, approval_id))
            return s._require_approval(approval_id)

    def add_signature(self, approval_id: str | None, subject: str, decision: str, reviewer: str,
                      fingerprint: str, statement: str, signature: str) -> Signature:
        s = self.store
        with s.transaction():
            sig_id = s._insert("signatures", {
                "approval_id": approval_id, "subject": subject, "decision": decision, "reviewer": reviewer,
                "fingerprint": fingerprint, "statement": statement, "signature": signature, "at": s.now(),
            }, returning="id")
            return Signature.from_row(s._one("SELECT * FROM signatures WHERE id = ?", (sig_id,)) or {})

    def add_reviewer_event(self, action: str, name: str, public_key: str, fingerprint: str, signed_by: str,
                           statement: str, signature: str) -> ReviewerEvent:
        s = self.store
        with s.transaction():
            seq = s._insert("reviewer_events", {
                "action": action, "name": name, "public_key": public_key, "fingerprint": fingerprint,
                "signed_by": signed_by, "statement": statement, "signature": signature, "at": s.now(),
            }, returning="seq")
            return ReviewerEvent.from_row(s._one("SELECT * FROM reviewer_events WHERE seq = ?", (seq,)) or {})

    # -- constitution versions and workspace identity ------------------------------------------

    def add_constitution_version(self, content: str, sha256: str, invariants_sha256: str, created_by: str,
                                 approval_id: str | None = None, note: str | None = None) -> ConstitutionVersion:
        """Append version latest+1, or return the latest unchanged if its sha256 is the same."""
        s = self.store
        with s.transaction():
            latest = s.latest_constitution()
            if latest is not None and latest.sha256 == sha256:
                return latest
            version = 1 if latest is None else latest.version + 1
            s._insert("constitution_versions", {
                "version": version, "sha256": sha256, "invariants_sha256": invariants_sha256, "content": content,
                "created_at": s.now(), "created_by": created_by, "approval_id": approval_id, "note": note,
            })
            found = s.get_constitution_version(version)
            if found is None:
                raise NotFoundError(f"constitution v{version} vanished inside its own transaction")
            return found

    def set_meta(self, key: str, value: str) -> None:
        with self.store.transaction():
            self.store._exec("INSERT INTO workspace_meta (key, value) VALUES (?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
