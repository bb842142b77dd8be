"""Ending, continuing and re-configuring runs (the agent's side; guardrails/lifecycle.py records them)."""

from __future__ import annotations

from typing import Any

from agent.config import TetherConfig
from agent.run.workspace import Workspace
from guardrails import lifecycle
from memory import Run, Store
from tether_types import EXIT_USAGE, TetherError

# Settings a run keeps for life: what it is evaluated on and who must approve it. Changing any of them
# mid-run would make its rounds incomparable, or loosen its gate.
FIXED: tuple[str, ...] = ("model", "world", "inputs", "approvals", "seed", "evaluation", "prompts.heldout")


class LifecycleError(TetherError, ValueError):
    """The request does not fit the run's state or settings; nothing changed (CLI exit 2)."""
    exit_code = EXIT_USAGE


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(changes as "key: old -> new", the ones that touch a fixed setting)."""
    before, after = _flatten(old), _flatten(new)
    changes = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(before.keys() | after.keys())
               if before.get(k) != after.get(k)]
    fixed = [c for c in changes if any(c == f or c.startswith(f"{f}.") or c.startswith(f"{f}:") for f in FIXED)]
    return changes, fixed


def reconfigure(store: Store, run: Run, config: TetherConfig, by: str) -> list[str]:
    """Give a paused or failed run new (changeable) settings; logged in its decision log and audited."""
    # Through the model: a run stored before a section existed compares against that section's defaults.
    before = TetherConfig.model_validate(run.config).model_dump(mode="json")
    changes, fixed = config_changes(before, config.model_dump(mode="json"))
    if fixed:
        raise LifecycleError("these settings are fixed for the life of a run: " + "; ".join(fixed)
                             + " (start a new run, or `tether run --from CHECKPOINT` to continue from its adapter)")
    if not changes:
        return []
    with store.transaction():
        lifecycle.change_config(store, run, config.model_dump(mode="json"), config.sha256(), by, changes)
        store.update_run(run.id, rounds_budget=config.controller.rounds)
        store.add_decision(run.id, run.round, "config_change",
                           f"{by} changed {len(changes)} setting(s) for the rounds to come: " + "; ".join(changes),
                           {"changes": changes}, actor=by)
    return changes


def stop(ws: Workspace, store: Store, run: Run, by: str, reason: str, driven: bool) -> list[str]:
    if driven:
        raise LifecycleError(f"run {run.id} is being driven by a process now; interrupt it (Ctrl-C) first")
    if run.state not in ("paused", "failed", "running"):
        raise LifecycleError(f"run {run.id} is {run.state}")
    return lifecycle.stop(store, run, by, reason)
