"""The meta-controller policy: a pure function from what the monitors saw to an action.

No I/O here: the `decide` node gathers the inputs and writes the decision log. Each decision says
which signals, against which thresholds, led to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.config import ControllerConfig
from agent.state import Action


@dataclass(frozen=True)
class RoundSignals:
    round: int
    budget: int
    pairs: int | None  # None when the round was not run (budget spent)
    monitors: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    action: Action
    rationale: str
    signals: dict[str, Any]


def decide(now: RoundSignals, cfg: ControllerConfig) -> Decision:
    signals: dict[str, Any] = {
        "round": now.round,
        "budget": now.budget,
        "pairs": now.pairs,
        "min_pairs": cfg.min_pairs,
        "max_invalid_share": cfg.max_invalid_share,
        **{f"monitor.{k}": v for k, v in now.monitors.items()},
    }
    if now.round > now.budget or now.pairs is None:
        return Decision("stop", f"round budget spent ({now.budget} of {now.budget} rounds run)", signals)
    invalid = now.monitors.get("invalid_share", 0.0)
    if invalid > cfg.max_invalid_share:
        return Decision(
            "skip",
            f"{invalid:.0%} of round {now.round}'s judgments were invalid (> max_invalid_share="
            f"{cfg.max_invalid_share:.0%}): the judge cannot be trusted on this round, so it is not trained on",
            signals,
        )
    if now.pairs < cfg.min_pairs:
        return Decision(
            "stop",
            f"round {now.round} yielded {now.pairs} preference pair(s), fewer than min_pairs="
            f"{cfg.min_pairs}: nothing to train on",
            signals,
        )
    # Interventions (regenerate prompts, switch judge, adversarial curriculum, amendment) are
    # chosen here from the monitor history before falling back to training.
    return Decision("train", f"round {now.round} yielded {now.pairs} pair(s) >= min_pairs={cfg.min_pairs}", signals)
