"""The learned controller policy a run may use: the file `controller.policy_file` names, parsed (untrusted input)
and adopted only when its sha256 carries a verified approval of kind controller (guardrails/controller_policy.py).
Checked before a run starts, when it resumes, and at every decision, so a file swapped under a running run stops
it instead of steering it."""

from __future__ import annotations

from pathlib import Path

from agent.controller.learned import Learner, load_policy
from agent.sections.controller import ControllerSettings
from guardrails import controller_policy
from memory import Store


def adopted_learner(store: Store, cfg: ControllerSettings, seed: int) -> Learner | None:
    """The chooser for `controller.policy: learned`, or None with policy: rules. Raises PolicyFileError or
    GateError (exit 2) for a file that is not an adopted policy, TamperError (exit 1) for a forged approval."""
    if cfg.policy != "learned" or not cfg.policy_file:
        return None
    policy, sha = load_policy(Path(cfg.policy_file))
    controller_policy.require_adopted(store, sha, cfg.policy_file)
    return Learner(policy, sha, cfg.explore, seed, cfg.learned.min_decisions, cfg.learned.min_gain,
                   cfg.learned.confidence)
