"""Checkpoints, approvals, constitution versions and the evaluation cache.

These rows only record what callers decided; the rules (what may be approved, which checkpoint
becomes active) live in guardrails/ and agent/.
"""

from __future__ import annotations

import secrets
from typing import Any

from memory.base import StoreBase
from memory.common import (
    APPROVAL_KINDS,
    APPROVAL_STATUSES,
    CHECKPOINT_STATUSES,
    ApprovalStateError,
    NotFoundError,
    to_json,
)
from memory.records import Approval, Checkpoint, ConstitutionVersion, Evaluation

_CHECKPOINT_UPDATABLE = frozenset(
    {"run_id", "round", "status", "path", "sha256", "parent", "metrics", "invariant_ok"}
)


class GovernanceMixin(StoreBase):
    # -- checkpoints -----------------------------------------------------------------------

    def add_checkpoint(self, ck: Checkpoint) -> Checkpoint:
        self._check_value("checkpoint status", ck.status, CHECKPOINT_STATUSES)
        values = self._encode(
            {
                "id": ck.id,
                "run_id": ck.run_id,
                "round": ck.round,
                "status": ck.status,
                "path": ck.path,
                "sha256": ck.sha256,
                "parent": ck.parent,
                "created_at": ck.created_at or self.now(),
                "metrics": ck.metrics,
                "invariant_ok": ck.invariant_ok,
            },
            frozenset({"metrics"}),
            frozenset({"invariant_ok"}),
        )
        with self.transaction():
            self._insert("checkpoints", values)
            return self._require_checkpoint(ck.id)

    def get_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        row = self._one("SELECT * FROM checkpoints WHERE id = ?", (checkpoint_id,))
        return None if row is None else Checkpoint.from_row(row)

    def checkpoints(self, run_id: str | None = None) -> list[Checkpoint]:
        """All checkpoints (or one run's), oldest first."""
        if run_id is None:
            rows = self._rows("SELECT * FROM checkpoints ORDER BY created_at, rowid")
        else:
            rows = self._rows(
                "SELECT * FROM checkpoints WHERE run_id = ? ORDER BY created_at, rowid", (run_id,)
            )
        return [Checkpoint.from_row(r) for r in rows]

    def update_checkpoint(self, checkpoint_id: str, **fields: Any) -> Checkpoint:
        """Set the given columns; ValueError for unknown ones, NotFoundError for a bad id."""
        self._check_fields("checkpoints", fields, _CHECKPOINT_UPDATABLE)
        if "status" in fields:
            self._check_value("checkpoint status", fields["status"], CHECKPOINT_STATUSES)
        values = self._encode(fields, frozenset({"metrics"}), frozenset({"invariant_ok"}))
        with self.transaction():
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                self._exec(
                    f"UPDATE checkpoints SET {sets} WHERE id = ?", [*values.values(), checkpoint_id]
                )
            return self._require_checkpoint(checkpoint_id)

    def _require_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        ck = self.get_checkpoint(checkpoint_id)
        if ck is None:
            raise NotFoundError(f"no checkpoint {checkpoint_id!r}")
        return ck

    # -- approvals -------------------------------------------------------------------------

    def create_approval(
        self,
        kind: str,
        subject: str | int,
        subject_sha256: str,
        summary: str,
        payload: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Approval:
        """A new pending approval with a short random id ("ap-" + 8 hex)."""
        self._check_value("approval kind", kind, APPROVAL_KINDS)
        values = {
            "kind": kind,
            "run_id": run_id,
            "subject": str(subject),
            "subject_sha256": subject_sha256,
            "status": "pending",
            "created_at": self.now(),
            "summary": summary,
            "payload": to_json(payload or {}),
        }
        with self.transaction():
            while True:  # retry on the (astronomically rare) id collision
                approval_id = "ap-" + secrets.token_hex(4)
                if self._one("SELECT 1 AS x FROM approvals WHERE id = ?", (approval_id,)) is None:
                    break
            self._insert("approvals", {"id": approval_id, **values})
            return self._require_approval(approval_id)

    def get_approval(self, approval_id: str) -> Approval | None:
        row = self._one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return None if row is None else Approval.from_row(row)

    def approvals(self, status: str | None = None, run_id: str | None = None) -> list[Approval]:
        """Approvals filtered by status and/or run, oldest first."""
        sql = "SELECT * FROM approvals WHERE 1 = 1"
        params: list[Any] = []
        if status is not None:
            self._check_value("approval status", status, APPROVAL_STATUSES)
            sql += " AND status = ?"
            params.append(status)
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        rows = self._rows(sql + " ORDER BY created_at, rowid", params)
        return [Approval.from_row(r) for r in rows]

    def approval_for_subject(self, kind: str, subject: str | int) -> Approval | None:
        """The newest approval for this subject (a subject may be re-proposed after a reject)."""
        row = self._one(
            "SELECT * FROM approvals WHERE kind = ? AND subject = ? "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (kind, str(subject)),
        )
        return None if row is None else Approval.from_row(row)

    def decide_approval(
        self, approval_id: str, status: str, by: str, note: str | None = None
    ) -> Approval:
        """Move a pending approval to approved/rejected exactly once.

        The check and the update share one BEGIN IMMEDIATE transaction, and the UPDATE is
        guarded by ``status = 'pending'``, so of two concurrent deciders exactly one wins; the
        other gets ApprovalStateError.
        """
        if status not in ("approved", "rejected"):
            raise ValueError(f"decision must be 'approved' or 'rejected', not {status!r}")
        if not by:
            raise ValueError("an approval decision needs a decider name (by)")
        with self.transaction():
            current = self._require_approval(approval_id)
            if current.status != "pending":
                raise ApprovalStateError(
                    f"approval {approval_id} is already {current.status} "
                    f"(by {current.decided_by} at {current.decided_at})",
                    current,
                )
            cur = self._exec(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, note = ? "
                "WHERE id = ? AND status = 'pending'",
                (status, by, self.now(), note, approval_id),
            )
            if cur.rowcount != 1:  # unreachable under the write lock; kept as a backstop
                raise ApprovalStateError(f"approval {approval_id} is no longer pending")
            return self._require_approval(approval_id)

    def _require_approval(self, approval_id: str) -> Approval:
        ap = self.get_approval(approval_id)
        if ap is None:
            raise NotFoundError(f"no approval {approval_id!r}")
        return ap

    # -- constitution versions -------------------------------------------------------------

    def add_constitution_version(
        self,
        content: str,
        sha256: str,
        invariants_sha256: str,
        created_by: str,
        approval_id: str | None = None,
        note: str | None = None,
    ) -> ConstitutionVersion:
        """Append version latest+1, or return the latest unchanged if its sha256 is the same."""
        with self.transaction():
            latest = self.latest_constitution()
            if latest is not None and latest.sha256 == sha256:
                return latest
            version = 1 if latest is None else latest.version + 1
            self._insert(
                "constitution_versions",
                {
                    "version": version,
                    "sha256": sha256,
                    "invariants_sha256": invariants_sha256,
                    "content": content,
                    "created_at": self.now(),
                    "created_by": created_by,
                    "approval_id": approval_id,
                    "note": note,
                },
            )
            found = self.get_constitution_version(version)
            assert found is not None
            return found

    def constitution_versions(self) -> list[ConstitutionVersion]:
        rows = self._rows("SELECT * FROM constitution_versions ORDER BY version")
        return [ConstitutionVersion.from_row(r) for r in rows]

    def latest_constitution(self) -> ConstitutionVersion | None:
        row = self._one("SELECT * FROM constitution_versions ORDER BY version DESC LIMIT 1")
        return None if row is None else ConstitutionVersion.from_row(row)

    def get_constitution_version(self, version: int) -> ConstitutionVersion | None:
        row = self._one("SELECT * FROM constitution_versions WHERE version = ?", (version,))
        return None if row is None else ConstitutionVersion.from_row(row)

    # -- evaluation cache ------------------------------------------------------------------

    def put_evaluation(
        self,
        checkpoint_id: str,
        heldout_sha256: str,
        judge: str,
        oracle: float | None,
        judge_score: float | None,
        details: dict[str, Any] | None = None,
    ) -> Evaluation:
        """Insert or replace the cached scores for (checkpoint, held-out set, judge)."""
        with self.transaction():
            self._exec(
                "INSERT INTO evaluations (checkpoint_id, heldout_sha256, judge, oracle, "
                "judge_score, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (checkpoint_id, heldout_sha256, judge) DO UPDATE SET "
                "oracle = excluded.oracle, judge_score = excluded.judge_score, "
                "details = excluded.details, created_at = excluded.created_at",
                (
                    checkpoint_id,
                    heldout_sha256,
                    judge,
                    None if oracle is None else float(oracle),
                    None if judge_score is None else float(judge_score),
                    to_json(details or {}),
                    self.now(),
                ),
            )
            found = self.get_evaluation(checkpoint_id, heldout_sha256, judge)
            assert found is not None
            return found

    def get_evaluation(
        self, checkpoint_id: str, heldout_sha256: str, judge: str
    ) -> Evaluation | None:
        row = self._one(
            "SELECT * FROM evaluations WHERE checkpoint_id = ? AND heldout_sha256 = ? "
            "AND judge = ?",
            (checkpoint_id, heldout_sha256, judge),
        )
        return None if row is None else Evaluation.from_row(row)
