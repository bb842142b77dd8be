"""The tether store: one SQLite file per workspace, opened through sqlite_utils.

``Store`` combines the table mixins (data.py, governance.py, audit.py) with runs, rounds and the
decision log defined here. It holds no policy: callers decide, the store records.
"""

from __future__ import annotations

from typing import Any

from memory.audit import AuditMixin
from memory.common import OUTCOME_STATUSES, RUN_STATES, NotFoundError, to_json
from memory.data import DataMixin
from memory.governance import GovernanceMixin
from memory.records import Decision, DecisionOutcome, RoundRecord, Run

# The run's own progress. Its active checkpoint, pinned base model, constitution version, config and
# invariants are guardrails' (memory.guarded), so they are not updatable here.
_RUN_UPDATABLE = frozenset({"rounds_budget", "state", "round", "thread_id", "error", "judge_slot"})
_RUN_JSON = frozenset({"config", "invariants"})

_ROUND_FIELDS = frozenset(
    {
        "started_at",
        "finished_at",
        "action",
        "judge",
        "monitors",
        "n_prompts",
        "n_samples",
        "n_pairs",
        "outcome",
    }
)
_ROUND_JSON = frozenset({"judge", "monitors"})


class Store(DataMixin, GovernanceMixin, AuditMixin):
    """``Store(path)`` opens or creates the database (WAL, 30 s busy timeout, migrations).

    Safe to share between threads, and between processes through the file. Use
    ``with store.transaction(): ...`` to make several writes (e.g. a state change and its audit
    entry) atomic; write methods called inside it join that transaction.
    """

    # -- runs ------------------------------------------------------------------------------

    def create_run(self, run: Run) -> Run:
        """Insert a new run. It starts with no active checkpoint and no pinned base model: guardrails
        register both (memory.guarded)."""
        self._check_value("run state", run.state, RUN_STATES)
        if run.active_checkpoint is not None or run.base_model is not None:
            raise ValueError("a run's active checkpoint and base model are set by guardrails, not at creation")
        now = self.now()
        values = self._encode(
            {
                "id": run.id,
                "created_at": run.created_at or now,
                "config": run.config,
                "config_sha256": run.config_sha256,
                "seed": run.seed,
                "rounds_budget": run.rounds_budget,
                "constitution_version": run.constitution_version,
                "invariants": run.invariants,
                "invariants_sha256": run.invariants_sha256,
                "state": run.state,
                "round": run.round,
                "active_checkpoint": run.active_checkpoint,
                "thread_id": run.thread_id,
                "error": run.error,
                "judge_slot": run.judge_slot,
                "updated_at": run.updated_at or now,
            },
            _RUN_JSON,
        )
        with self.transaction():
            self._insert("runs", values)
            return self._require_run(run.id)

    def get_run(self, run_id: str) -> Run | None:
        row = self._one("SELECT * FROM runs WHERE id = ?", (run_id,))
        return None if row is None else Run.from_row(row)

    def list_runs(self) -> list[Run]:
        """All runs, newest first."""
        rows = self._rows("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC")
        return [Run.from_row(r) for r in rows]

    def update_run(self, run_id: str, **fields: Any) -> Run:
        """Set the given columns and updated_at.

        Raises ValueError for unknown or read-only columns (id, created_at, updated_at) or an
        invalid state, and NotFoundError if the run does not exist.
        """
        self._check_fields("runs", fields, _RUN_UPDATABLE)
        if "state" in fields:
            self._check_value("run state", fields["state"], RUN_STATES)
        values = self._encode(fields, _RUN_JSON)
        values["updated_at"] = self.now()
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction():
            cur = self._exec(f"UPDATE runs SET {sets} WHERE id = ?", [*values.values(), run_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"no run {run_id!r}")
            return self._require_run(run_id)

    def _require_run(self, run_id: str) -> Run:
        run = self.get_run(run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id!r}")
        return run

    # -- rounds ----------------------------------------------------------------------------

    def upsert_round(self, run_id: str, round: int, **fields: Any) -> RoundRecord:
        """Create the (run_id, round) row or update only the given fields of it.

        A new row gets started_at = now unless one is given.
        """
        self._check_fields("rounds", fields, _ROUND_FIELDS)
        values = self._encode(fields, _ROUND_JSON)
        insert = {"run_id": run_id, "round": round, "started_at": self.now(), **values}
        cols = ", ".join(insert)
        marks = ", ".join("?" for _ in insert)
        if values:
            conflict = "DO UPDATE SET " + ", ".join(f"{k} = excluded.{k}" for k in values)
        else:
            conflict = "DO NOTHING"
        with self.transaction():
            self._exec(
                f"INSERT INTO rounds ({cols}) VALUES ({marks}) "
                f"ON CONFLICT (run_id, round) {conflict}",
                list(insert.values()),
            )
            record = self.get_round(run_id, round)
            assert record is not None
            return record

    def get_round(self, run_id: str, round: int) -> RoundRecord | None:
        row = self._one("SELECT * FROM rounds WHERE run_id = ? AND round = ?", (run_id, round))
        return None if row is None else RoundRecord.from_row(row)

    def rounds(self, run_id: str) -> list[RoundRecord]:
        rows = self._rows("SELECT * FROM rounds WHERE run_id = ? ORDER BY round", (run_id,))
        return [RoundRecord.from_row(r) for r in rows]

    # -- decision log ----------------------------------------------------------------------

    def add_decision(
        self,
        run_id: str,
        round: int,
        action: str,
        rationale: str,
        signals: dict[str, Any],
        actor: str = "controller",
    ) -> Decision:
        with self.transaction():
            decision_id = self._insert(
                "decisions",
                {
                    "run_id": run_id,
                    "round": round,
                    "action": action,
                    "rationale": rationale,
                    "signals": to_json(signals),
                    "actor": actor,
                    "at": self.now(),
                },
                returning="id",
            )
            row = self._one("SELECT * FROM decisions WHERE id = ?", (decision_id,))
            assert row is not None
            return Decision.from_row(row)

    def decisions(self, run_id: str, round: int | None = None) -> list[Decision]:
        """The decision log of a run (optionally one round), in the order it was written."""
        if round is None:
            rows = self._rows("SELECT * FROM decisions WHERE run_id = ? ORDER BY id", (run_id,))
        else:
            rows = self._rows(
                "SELECT * FROM decisions WHERE run_id = ? AND round = ? ORDER BY id",
                (run_id, round),
            )
        return [Decision.from_row(r) for r in rows]

    # -- decision outcomes -----------------------------------------------------------------

    def add_outcome(self, decision: Decision, process: str, cpu_mark: float, outcome: dict[str, Any]) -> None:
        """A decision's outcome row, pending: its window has only begun."""
        with self.transaction():
            self._insert("decision_outcomes", {
                "decision_id": decision.id, "run_id": decision.run_id, "round": decision.round, "process": process,
                "cpu_mark": float(cpu_mark), "status": "pending", "outcome": to_json(outcome),
                "updated_at": self.now()})

    def update_outcome(self, decision_id: int, status: str, outcome: dict[str, Any]) -> None:
        self._check_value("outcome status", status, OUTCOME_STATUSES)
        with self.transaction():
            self._exec(
                "UPDATE decision_outcomes SET status = ?, outcome = ?, updated_at = ? WHERE decision_id = ?",
                (status, to_json(outcome), self.now(), decision_id))

    def outcomes(self, run_id: str) -> list[DecisionOutcome]:
        """The outcome rows of a run's decisions, in decision order (a decision logged before outcomes were
        measured has none)."""
        rows = self._rows("SELECT * FROM decision_outcomes WHERE run_id = ? ORDER BY decision_id", (run_id,))
        return [DecisionOutcome.from_row(r) for r in rows]
