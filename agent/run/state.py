"""Graph state: small and typed; ids only, never model objects."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from tether_types import Action, GateOutcome


class RoundState(TypedDict):
    run_id: str
    round: int
    prompt_ids: NotRequired[list[str]]
    action: NotRequired[Action | None]
    candidate: NotRequired[str | None]
    outcome: NotRequired[GateOutcome | None]
