"""Checkpoints, approvals, constitution versions and the evaluation cache.

Reads for everyone; the writes that decide what may become active (checkpoint status, path, sha256,
invariant verdict, approvals, signatures, reviewers, constitution versions) live in memory.guarded,
which only guardrails/ imports.
"""

from __future__ import annotations

from typing import Any

from memory.base import StoreBase
from memory.common import APPROVAL_STATUSES, NotFoundError, to_json
from memory.records import Approval, Checkpoint, ConstitutionVersion, Evaluation, ReviewerEvent, Signature

_CHECKPOINT_UPDATABLE = frozenset({"metrics"})


class GovernanceMixin(StoreBase):
    # -- checkpoints -----------------------------------------------------------------------

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
        """Set the agent's own columns (``metrics``); status, path, sha256, the active checkpoint and
        the invariant verdict are guardrails' and change only through memory.guarded."""
        self._check_fields("checkpoints", fields, _CHECKPOINT_UPDATABLE)
        values = self._encode(fields, frozenset({"metrics"}))
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

    def _require_approval(self, approval_id: str) -> Approval:
        ap = self.get_approval(approval_id)
        if ap is None:
            raise NotFoundError(f"no approval {approval_id!r}")
        return ap

    # -- constitution versions -------------------------------------------------------------

    def constitution_versions(self) -> list[ConstitutionVersion]:
        rows = self._rows("SELECT * FROM constitution_versions ORDER BY version")
        return [ConstitutionVersion.from_row(r) for r in rows]

    def latest_constitution(self) -> ConstitutionVersion | None:
        row = self._one("SELECT * FROM constitution_versions ORDER BY version DESC LIMIT 1")
        return None if row is None else ConstitutionVersion.from_row(row)

    def get_constitution_version(self, version: int) -> ConstitutionVersion | None:
        row = self._one("SELECT * FROM constitution_versions WHERE version = ?", (version,))
        return None if row is None else ConstitutionVersion.from_row(row)

    # -- signatures, reviewers, workspace identity -------------------------------------------

    def signatures(self, approval_id: str | None = None, subject: str | None = None) -> list[Signature]:
        """Signatures of an approval (or about a subject), oldest first."""
        sql, params = "SELECT * FROM signatures WHERE 1 = 1", []
        if approval_id is not None:
            sql += " AND approval_id = ?"
            params.append(approval_id)
        if subject is not None:
            sql += " AND subject = ?"
            params.append(subject)
        return [Signature.from_row(r) for r in self._rows(sql + " ORDER BY id", params)]

    def reviewer_events(self) -> list[ReviewerEvent]:
        return [ReviewerEvent.from_row(r) for r in self._rows("SELECT * FROM reviewer_events ORDER BY seq")]

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM workspace_meta WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

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
