"""Typed records returned by the store.

Every record is a frozen dataclass built from a database row with ``from_row``. JSON payload
columns (config, invariants, judge, monitors, signals, metrics, details, payload) are stored as
JSON text and come back decoded; booleans come back as ``bool``; timestamps are UTC ISO-8601
strings ending in "Z" (they sort lexicographically in time order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from memory.common import (
    JSON,
    ApprovalKind,
    ApprovalStatus,
    CheckpointStatus,
    OutcomeStatus,
    Row,
    RunState,
    Split,
    from_json,
    opt_bool,
)


def _none() -> None:
    return None


class _Record:
    """Builds a record from a row by its field names: JSON columns decoded (``_json`` maps each to
    the factory of its default for NULL), flag columns (``_bools``) back to bool (None stays None)."""

    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {}
    _bools: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_row(cls, row: Row) -> Self:
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            raw = row[f.name]
            if f.name in cls._json:
                values[f.name] = from_json(raw, cls._json[f.name]())
            elif f.name in cls._bools:
                values[f.name] = opt_bool(raw)
            else:
                values[f.name] = raw
        return cls(**values)


@dataclass(frozen=True)
class Run(_Record):
    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"config": dict, "invariants": dict, "base_model": _none}
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
    judge_slot: int = 0  # no longer written or read: a pool's slot is counted from the rounds' switch outcomes
    # The base model pinned when the run started: {"ref": ..., "sha256": ..., "files": {name: sha256}}.
    base_model: JSON = None


@dataclass(frozen=True)
class RoundRecord(_Record):
    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"judge": _none, "monitors": _none}
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

    @property
    def judge_label(self) -> str | None:
        """The judge that scored the round as the plan node recorded it: its pool label (a round recorded
        before labels existed: its name)."""
        judge = self.judge or {}
        label = judge.get("label") or judge.get("name")
        return str(label) if label else None


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
    served_by: str | None = None  # the model name a completions server answered with; None: sampled locally


@dataclass(frozen=True)
class Sample(_Record):
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
    served_by: str | None = None


@dataclass(frozen=True)
class RunPrompt(_Record):
    """A prompt a run made for itself: written by self-prompting or mutated by the adversarial
    curriculum. `meta` carries the family's verifier inputs (inherited from a parent) and provenance."""

    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"meta": dict}
    run_id: str
    id: str
    round: int  # the round whose intervention made it
    source: str  # "regenerated" | "adversarial"
    text: str
    family: str
    meta: dict[str, Any]
    created_at: str = ""


@dataclass(frozen=True)
class NewJudgment:
    sample_id: int
    judge: str
    score: float | None
    valid: bool
    raw: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgment(_Record):
    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"details": dict}
    _bools: ClassVar[frozenset[str]] = frozenset({"valid"})
    id: int
    sample_id: int
    judge: str
    score: float | None
    valid: bool
    raw: str
    details: dict[str, Any]


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
class Pair(_Record):
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


@dataclass(frozen=True)
class Decision(_Record):
    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"signals": dict}
    id: int
    run_id: str
    round: int
    action: str
    rationale: str
    signals: dict[str, Any]
    actor: str
    at: str


@dataclass(frozen=True)
class DecisionOutcome(_Record):
    """What a controller decision led to over its window (agent/controller/outcomes.py says what is measured).
    `outcome` holds the measures, each null until it can be measured, with `why` for every null one."""

    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"outcome": dict}
    decision_id: int
    run_id: str
    round: int
    process: str  # which process decided: CPU marks of one process only are comparable
    cpu_mark: float  # that process's CPU seconds (its own and its waited-for children's) when it decided
    status: OutcomeStatus
    outcome: dict[str, Any]
    updated_at: str


@dataclass(frozen=True)
class Checkpoint(_Record):
    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"metrics": dict, "invariant_report": _none}
    _bools: ClassVar[frozenset[str]] = frozenset({"invariant_ok"})
    id: str
    run_id: str | None
    round: int
    status: CheckpointStatus
    path: str  # relative to the workspace folder when inside it (see Store.resolve)
    sha256: str | None = None  # None only for the base model
    parent: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the agent's: train and eval
    invariant_ok: bool | None = None  # written by guardrails only, from invariant_report
    created_at: str = ""  # filled when the checkpoint is registered
    invariant_report: JSON = None  # guardrails' invariant report (rates, bounds, targets)


@dataclass(frozen=True)
class Approval(_Record):
    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"payload": dict}
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


@dataclass(frozen=True)
class ConstitutionVersion(_Record):
    version: int
    sha256: str
    invariants_sha256: str
    content: str  # the constitution YAML text
    created_at: str
    created_by: str
    approval_id: str | None
    note: str | None


@dataclass(frozen=True)
class Evaluation(_Record):
    _json: ClassVar[Mapping[str, Callable[[], Any]]] = {"details": dict}
    checkpoint_id: str
    heldout_sha256: str
    judge: str
    oracle: float | None
    judge_score: float | None
    details: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class Signature(_Record):
    """A reviewer's signed statement about an approval (or a rollback): the statement's exact bytes
    (canonical JSON text) and the Ed25519 signature over them, hex encoded."""

    id: int
    approval_id: str | None
    subject: str
    decision: str
    reviewer: str
    fingerprint: str
    statement: str
    signature: str
    at: str


@dataclass(frozen=True)
class ReviewerEvent(_Record):
    """A reviewer added or removed, signed by a reviewer registered before it (the first signs itself)."""

    seq: int
    action: str  # "add" | "remove"
    name: str
    public_key: str  # raw Ed25519 public key, hex
    fingerprint: str
    signed_by: str
    statement: str
    signature: str
    at: str
