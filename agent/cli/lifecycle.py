"""`tether stop`: end a paused or failed run for good (audited); and what `run` and `resume` read of the
kill tests' fault injection."""

from __future__ import annotations

from typing import Annotated

import typer

from agent.cli.common import fail, open_store, say
from agent.run import faults
from agent.run.lifecycle import stop as stop_run
from agent.run.locks import is_driven


def stop(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to end.")],
    by: Annotated[str, typer.Option(
        "--by", help="The person who stops it, as a reviewer name (recorded in the audit log); never the run's own "
        "actors (tether, agent:RUN).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")],
) -> None:
    """End a paused or failed run: it will not resume, its pending approvals are withdrawn and their
    candidates discarded. Approved checkpoints stay, and `tether run --from CHECKPOINT` continues from one."""
    ws, store = open_store(ctx)
    run = store.get_run(run_id)
    if run is None:
        fail(f"no run '{run_id}' (see `tether status`)")
    withdrawn = stop_run(ws, store, run, by, reason, is_driven(ws, run_id))
    say(f"run {run_id} stopped by {by}" + (f"; withdrawn: {', '.join(withdrawn)}" if withdrawn else ""))


def fault_from_env() -> faults.Fault | None:
    """$TETHER_FAULT (agent/run/faults.py), read by `run` and `resume` before they write anything: exit 2 when
    malformed, ignored with a warning unless the kill tests' switch is on."""
    from agent.run.graph import NODES  # heavy (langgraph): `run` and `resume` load it anyway

    try:
        return faults.from_env(NODES, say)
    except faults.FaultSpecError as err:
        fail(f"{err}; nothing was started")
