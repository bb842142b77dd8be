"""How a run that stops moving is recorded and told: its state and error in the store with an audit entry
(a store that cannot be written, e.g. a full disk, is said in the message, never raised from inside the
handler), a SIGTERM that came outside any node, and the notice to the configured people (agent/run/notify.py),
whose failure is audited, never fatal. The runner (agent/run/runner.py) calls these at each way a run ends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Literal

from agent.run import notify
from agent.run.context import RunContext
from agent.run.terminate import Terminated
from memory import Store


def tell(ctx: RunContext, event: notify.Event, detail: str, command: str, page: str,
         say: Callable[[str], None]) -> None:
    """Tell the configured people (`command`: the tether subcommand to run next; `page`: the desk's path for
    it); a failure is said and audited, never raised."""
    run = ctx.store.get_run(ctx.run_id)
    notice = notify.make_notice(ctx.config.notify, event, ctx.run_id, run.round if run else 0, detail,
                                ctx.workspace.home, command, page)
    for failure in notify.send(ctx.config.notify, notice):
        say(f"warning: {failure}")
        try:
            ctx.store.append_audit("tether", "notify.failed", ctx.run_id, {"event": event, "error": failure})
        except (sqlite3.Error, OSError):
            pass  # a full disk must not turn a failed notification into a failed run


def record_end(store: Store, run_id: str, state: Literal["paused", "failed"], error: str,
               details: dict[str, Any]) -> str:
    """Record why a run stopped moving; when the store itself cannot be written (a full disk), say so
    in the message instead of raising a second error from inside the handler."""
    try:
        with store.transaction():
            store.update_run(run_id, state=state, error=error)
            store.append_audit("tether", f"run.{state}", run_id, {"error": error, **details})
    except (sqlite3.Error, OSError) as unrecorded:
        return f"{error} (not recorded in the store: {unrecorded})"
    return error


def terminated_outside_nodes(store: Store, run_id: str, err: Terminated) -> str:
    """Record a SIGTERM that came outside any node: a paused run stays paused (an approval it waits for
    still waits), a stopped run stays stopped, any other is failed and resumable."""
    run = store.get_run(run_id)
    if run is not None and run.state == "stopped":
        return f"{err} after the run stopped"
    if run is not None and run.state == "paused":
        return record_end(store, run_id, "paused", f"{err} while the run was paused", {})
    return record_end(store, run_id, "failed", str(err), {})
