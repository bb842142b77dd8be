"""Typed records returned by the store.

Every record is a frozen dataclass built from a database row with ``from_row``. JSON payload
columns (config, invariants, judge, monitors, signals, metrics, details, payload) are stored as
JSON text and come back decoded; booleans come back as ``bool``; timestamps are UTC ISO-8601
strings ending in "Z" (they sort lexicographically in time order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memory.common import (
    JSON,
    ApprovalKind,
    ApprovalStatus,
    CheckpointStatus,
    Row,
    RunState,
    Split,
    from_json,
    opt_bool,
)


@dataclass(frozen=True)
class Run:
    id: str
    config: dict[str, Any]
    config_sha256: str
    seed: int
    rounds_budget: int
    constitution_version: int
    invariants: dict[str, str]  # pinned digest per invariant id (and their definitions)
    invariants_sha256: str
    state: RunState = "running"
    round: int = 0
    active_checkpoint: str | None = None
    thread_id: str | None = None
    error: str | None = None
    created_at: str = ""  # filled by Store.create_run when empty
    updated_at: str = ""

    @classmethod
    def from_row(cls, row: Row) -> Run:
        return cls(
            id=row["id"],
            config=from_json(row["config"], {}),
            config_sha256=row["config_sha256"],
            seed=int(row["seed"]),
            rounds_budget=int(row["rounds_budget"]),
            constitution_version=int(row["constitution_version"]),
            invariants=from_json(row["invariants"], {}),
            invariants_sha256=row["invariants_sha256"],
            state=row["state"],
            round=int(row["round"]),
            active_checkpoint=row["active_checkpoint"],
            thread_id=row["thread_id"],
            error=row["error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True)
class RoundRecord:
    run_id: str
    round: int
    started_at: str | None = None
    finished_at: str | None = None
    action: str | None = None
    judge: JSON = None  # {"name": ..., "settings": {...}}
    monitors: JSON = None
    n_prompts: int | None = None
    n_samples: int | None = None
    n_pairs: int | None = None
    outcome: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> RoundRecord:
        return cls(
            run_id=row["run_id"],
            round=int(row["round"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            action=row["action"],
            judge=from_json(row["judge"]),
            monitors=from_json(row["monitors"]),
            n_prompts=row["n_prompts"],
            n_samples=row["n_samples"],
            n_pairs=row["n_pairs"],
            outcome=row["outcome"],
        )


@dataclass(frozen=True)
class NewSample:
    """A sample to insert; checkpoint_id None means the base model."""

    run_id: str
    round: int
    split: Split
    prompt_id: str
    prompt: str
    family: str
    response: str
    n_tokens: int
    sample_index: int = 0
    checkpoint_id: str | None = None


@dataclass(frozen=True)
class Sample:
    id: int
    run_id: str
    round: int
    split: Split
    prompt_id: str
    prompt: str
    family: str
    checkpoint_id: str | None
    response: str
    n_tokens: int
    sample_index: int

    @classmethod
    def from_row(cls, row: Row) -> Sample:
        return cls(
            id=int(row["id"]),
            run_id=row["run_id"],
            round=int(row["round"]),
            split=row["split"],
            prompt_id=row["prompt_id"],
            prompt=row["prompt"],
            family=row["family"],
            checkpoint_id=row["checkpoint_id"],
            response=row["response"],
            n_tokens=int(row["n_tokens"]),
            sample_index=int(row["sample_index"]),
        )


@dataclass(frozen=True)
class NewJudgment:
    sample_id: int
    judge: str
    score: float | None
    valid: bool
    raw: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgment:
    id: int
    sample_id: int
    judge: str
    score: float | None
    valid: bool
    raw: str
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: Row) -> Judgment:
        return cls(
            id=int(row["id"]),
            sample_id=int(row["sample_id"]),
            judge=row["judge"],
            score=None if row["score"] is None else float(row["score"]),
            valid=bool(row["valid"]),
            raw=row["raw"],
            details=from_json(row["details"], {}),
        )


@dataclass(frozen=True)
class NewPair:
    run_id: str
    round: int
    prompt_id: str
    prompt: str
    chosen_sample_id: int
    rejected_sample_id: int
    chosen: str
    rejected: str
    margin: float


@dataclass(frozen=True)
class Pair:
    id: int
    run_id: str
    round: int
    prompt_id: str
    prompt: str
    chosen_sample_id: int
    rejected_sample_id: int
    chosen: str
    rejected: str
    margin: float

    @classmethod
    def from_row(cls, row: Row) -> Pair:
        return cls(
            id=int(row["id"]),
            run_id=row["run_id"],
            round=int(row["round"]),
            prompt_id=row["prompt_id"],
            prompt=row["prompt"],
            chosen_sample_id=int(row["chosen_sample_id"]),
            rejected_sample_id=int(row["rejected_sample_id"]),
            chosen=row["chosen"],
            rejected=row["rejected"],
            margin=float(row["margin"]),
        )


@dataclass(frozen=True)
class Decision:
    id: int
    run_id: str
    round: int
    action: str
    rationale: str
    signals: dict[str, Any]
    actor: str
    at: str

    @classmethod
    def from_row(cls, row: Row) -> Decision:
        return cls(
            id=int(row["id"]),
            run_id=row["run_id"],
            round=int(row["round"]),
            action=row["action"],
            rationale=row["rationale"],
            signals=from_json(row["signals"], {}),
            actor=row["actor"],
            at=row["at"],
        )


@dataclass(frozen=True)
class Checkpoint:
    id: str
    run_id: str | None
    round: int
    status: CheckpointStatus
    path: str
    sha256: str | None = None  # None only for the base model
    parent: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    invariant_ok: bool | None = None
    created_at: str = ""  # filled by Store.add_checkpoint when empty

    @classmethod
    def from_row(cls, row: Row) -> Checkpoint:
        return cls(
            id=row["id"],
            run_id=row["run_id"],
            round=int(row["round"]),
            status=row["status"],
            path=row["path"],
            sha256=row["sha256"],
            parent=row["parent"],
            metrics=from_json(row["metrics"], {}),
            invariant_ok=opt_bool(row["invariant_ok"]),
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class Approval:
    id: str
    kind: ApprovalKind
    run_id: str | None
    subject: str  # checkpoint id, or the constitution version as text
    subject_sha256: str
    status: ApprovalStatus
    created_at: str
    summary: str
    payload: dict[str, Any]
    decided_by: str | None
    decided_at: str | None
    note: str | None

    @classmethod
    def from_row(cls, row: Row) -> Approval:
        return cls(
            id=row["id"],
            kind=row["kind"],
            run_id=row["run_id"],
            subject=row["subject"],
            subject_sha256=row["subject_sha256"],
            status=row["status"],
            created_at=row["created_at"],
            summary=row["summary"],
            payload=from_json(row["payload"], {}),
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            note=row["note"],
        )


@dataclass(frozen=True)
class ConstitutionVersion:
    version: int
    sha256: str
    invariants_sha256: str
    content: str  # the constitution YAML text
    created_at: str
    created_by: str
    approval_id: str | None
    note: str | None

    @classmethod
    def from_row(cls, row: Row) -> ConstitutionVersion:
        return cls(
            version=int(row["version"]),
            sha256=row["sha256"],
            invariants_sha256=row["invariants_sha256"],
            content=row["content"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            approval_id=row["approval_id"],
            note=row["note"],
        )


@dataclass(frozen=True)
class Evaluation:
    checkpoint_id: str
    heldout_sha256: str
    judge: str
    oracle: float | None
    judge_score: float | None
    details: dict[str, Any]
    created_at: str

    @classmethod
    def from_row(cls, row: Row) -> Evaluation:
        return cls(
            checkpoint_id=row["checkpoint_id"],
            heldout_sha256=row["heldout_sha256"],
            judge=row["judge"],
            oracle=None if row["oracle"] is None else float(row["oracle"]),
            judge_score=None if row["judge_score"] is None else float(row["judge_score"]),
            details=from_json(row["details"], {}),
            created_at=row["created_at"],
        )
