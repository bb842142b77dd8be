"""Graph state: small and typed; ids only, never model objects."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# Every action the controller may choose. Interventions (regenerate_prompts, switch_judge,
# add_adversarial, propose_amendment) join this set, each with its own node.
Action = Literal["train", "skip", "stop"]
GateOutcome = Literal["approved", "rejected", "failed_invariants", "failed_checks"]


class RoundState(TypedDict):
    run_id: str
    round: int
    prompt_ids: NotRequired[list[str]]
    action: NotRequired[Action | None]
    candidate: NotRequired[str | None]
    outcome: NotRequired[GateOutcome | None]
