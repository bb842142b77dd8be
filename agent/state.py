"""Graph state: small and typed; ids only, never model objects."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# Every action the controller may choose; each intervention is a node of its own that leads to
# the next round (agent/config.py:Intervention lists them for the config).
Action = Literal["train", "skip", "stop", "switch_judge", "regenerate_prompts", "add_adversarial",
                 "propose_amendment", "switch_pairs"]
GateOutcome = Literal["approved", "rejected", "failed_invariants", "failed_checks"]


class RoundState(TypedDict):
    run_id: str
    round: int
    prompt_ids: NotRequired[list[str]]
    action: NotRequired[Action | None]
    candidate: NotRequired[str | None]
    outcome: NotRequired[GateOutcome | None]
