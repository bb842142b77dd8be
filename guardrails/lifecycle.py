"""A run's life beyond its rounds: stopped for good, continued from another run's approved adapter,
or resumed under changed settings. Each is audited; none can activate anything a person did not sign.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from guardrails import keys
from guardrails.errors import GateError
from guardrails.gate import adapter_check, vouching_approval
from guardrails.signoff import SYSTEM_ACTOR
from memory import Checkpoint, Run, Store
from memory.guarded import GuardedWrites


def stop(store: Store, run: Run, by: str, reason: str) -> list[str]:
    """End a run for good: pending approvals of it are withdrawn (no signature can decide them any more)
    and their candidates discarded. Returns the withdrawn approval ids. Only a person stops a run this way
    (the graph ends its own run without withdrawing anything), so `by` must be a person's name: the
    run's own actors (`tether`, `agent:RUN`) may never withdraw what waits for a person."""
    if not reason.strip():
        raise GateError("stopping a run needs --reason")
    problem = keys.name_problem(by)
    if problem is not None:
        raise GateError(f"--by {problem}; only a person stops a run and withdraws what waits for a reviewer. "
                        "Nothing was changed")
    if run.state == "stopped":
        raise GateError(f"run {run.id} has already stopped")
    writes = GuardedWrites(store)
    withdrawn = []
    with store.transaction():
        for approval in store.approvals(status="pending", run_id=run.id):
            writes.decide_approval(approval.id, "withdrawn", by, f"run stopped: {reason}")
            if approval.kind == "checkpoint":
                writes.set_checkpoint_status(approval.subject, "discarded")
            withdrawn.append(approval.id)
        store.update_run(run.id, state="stopped")
        store.append_audit(by, "run.stop", run.id, {"reason": reason, "withdrawn": withdrawn, "by_person": True})
    for approval_id in withdrawn:  # files of withdrawn (never approved) candidates go once the record says so
        ck = store.get_checkpoint(store.get_approval(approval_id).subject)  # type: ignore[union-attr]
        if ck is not None and ck.sha256 is not None:
            shutil.rmtree(store.resolve(ck.path), ignore_errors=True)
    return withdrawn


def inherit(store: Store, run_id: str, source_id: str, folder: Path) -> Checkpoint:
    """Start `run_id` from an approved adapter of an earlier run: its files are copied into the new run
    (`folder`), verified against the source's digest, and made active with the lineage recorded. The
    source's signed approval stays what vouches for it (checked on every load, like any activation)."""
    source = store.get_checkpoint(source_id)
    if source is None or source.sha256 is None or source.status != "approved" or source.run_id is None:
        raise GateError(f"{source_id} is not an approved adapter (see `tether checkpoints`)")
    approval = vouching_approval(store, source)  # the loader's rule: a source inherited itself is vouched for too
    run, origin = store.get_run(run_id), store.get_run(source.run_id)
    if run is None or origin is None:
        raise GateError(f"run {run_id} or {source.run_id} is not in the store")
    if (run.base_model or {}).get("sha256") != (origin.base_model or {}).get("sha256"):
        raise GateError(f"{source_id} was trained on another base model than this run's; a LoRA adapter only "
                        "applies to the base it was trained on")
    adapter_check(store, source)
    shutil.copytree(store.resolve(source.path), folder)
    ck_id = f"{run_id}-r0"
    writes = GuardedWrites(store)
    with store.transaction():
        ck = writes.add_checkpoint(Checkpoint(
            id=ck_id, run_id=run_id, round=0, status="approved", path=store.relative(folder), sha256=source.sha256,
            parent=source.id, metrics={"inherited_from": source.id}, invariant_ok=source.invariant_ok,
            invariant_report=source.invariant_report))
        writes.set_active(run_id, ck_id)
        store.append_audit(SYSTEM_ACTOR, "checkpoint.inherit", ck_id,
                           {"run": run_id, "source": source.id, "approval": approval.id, "sha256": source.sha256})
    adapter_check(store, ck)
    return ck


def change_config(store: Store, run: Run, config: dict[str, Any], config_sha256: str, by: str,
                  changes: list[str]) -> None:
    """Record a paused or failed run's new settings (the caller has checked that only changeable ones
    changed); the audit entry is what `approvals.required` and later checks read the config from."""
    if run.state not in ("paused", "failed"):
        raise GateError(f"run {run.id} is {run.state}; only a paused or failed run's settings can change")
    with store.transaction():
        GuardedWrites(store).set_run_config(run.id, config, config_sha256)
        store.append_audit(by, "run.config", run.id, {"run": run.id, "config_sha256": config_sha256,
                                                      "changes": changes})
