"""Shared helpers: JSON codec, UTC timestamps, enum-like value sets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from tether_types import EXIT_USAGE, TetherError

JSON: TypeAlias = Any  # a decoded JSON value (dict, list, str, number, bool or None)
Row: TypeAlias = Mapping[str, Any]

RunState = Literal["running", "paused", "stopped", "failed"]
# A sample's split: training, or a held-out evaluation's. "validation" and "test" are the two held-out sets a run
# evaluates (agent/run/splits.py); "heldout" is the one set of a run evaluated before that split existed.
Split = Literal["train", "heldout", "validation", "test"]
CheckpointStatus = Literal["base", "candidate", "pending", "approved", "rejected", "discarded"]
ApprovalKind = Literal["checkpoint", "constitution", "controller"]
ApprovalStatus = Literal["pending", "approved", "rejected", "withdrawn"]  # withdrawn: its run was stopped

RUN_STATES: frozenset[str] = frozenset({"running", "paused", "stopped", "failed"})
SPLITS: frozenset[str] = frozenset({"train", "heldout", "validation", "test"})
CHECKPOINT_STATUSES: frozenset[str] = frozenset(
    {"base", "candidate", "pending", "approved", "rejected", "discarded"}
)
APPROVAL_KINDS: frozenset[str] = frozenset({"checkpoint", "constitution", "controller"})
# A decision's measured outcome (memory.records.DecisionOutcome): its window is still open, it was measured, or it
# closed without a validation score to measure it by (the reason says why).
OutcomeStatus = Literal["pending", "measured", "unmeasured"]
OUTCOME_STATUSES: frozenset[str] = frozenset({"pending", "measured", "unmeasured"})
APPROVAL_STATUSES: frozenset[str] = frozenset({"pending", "approved", "rejected", "withdrawn"})


def utc_now() -> str:
    """Current UTC time as ISO-8601 with microseconds and a "Z" suffix."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_json(value: JSON) -> str:
    """Canonical JSON text (sorted keys, compact) so equal payloads store identical text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def from_json(text: str | None, default: JSON = None) -> JSON:
    """Decode a JSON column; SQL NULL and JSON null both give ``default``."""
    value = None if text is None else json.loads(text)
    return default if value is None else value


def opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


class StoreError(TetherError):
    """Base class for errors raised by the store."""


class NotFoundError(StoreError, KeyError):
    """The referenced row does not exist."""
    exit_code = EXIT_USAGE

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class ApprovalStateError(StoreError):
    """An approval was decided while not pending (e.g. a concurrent approver won first).

    ``approval`` is the current (already decided) Approval record, when known.
    """
    exit_code = EXIT_USAGE

    def __init__(self, message: str, approval: Any = None) -> None:
        super().__init__(message)
        self.approval = approval
