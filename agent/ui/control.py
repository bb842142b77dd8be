"""The console's run controls: start, resume and stop a run, as `tether run`, `tether resume RUN` and
`tether stop RUN --by NAME --reason WHY` do, by the reviewer who started the console (`tether ui --as NAME`).

Start and resume launch those very commands as detached processes (agent/ui/launch.py): the run's own checks
decide, and refuse, as they do in a shell. Stop is `agent.run.lifecycle.stop`, the CLI's function, with the
console's reviewer as `--by`; a run this console is driving is first sent SIGTERM (it records why it ended),
which is what the CLI asks a person to do first ("interrupt it"). A console started without `--as` reads
only; a run driven by a process the console did not start is refused as the CLI refuses it.
"""

from __future__ import annotations

import sqlite3

from agent.run.lifecycle import stop as stop_run
from agent.run.locks import is_driven
from agent.run.workspace import Workspace
from agent.sections.base import MAX_ROUNDS, MAX_SEED
from agent.ui.actions import READ_ONLY, WRITE_LOCK, Outcome, environment, open_store, refusal
from agent.ui.launch import Launches
from guardrails import keys
from memory import Run
from tether_types import TetherError

DisplayState = str  # a run's RunState, or "starting" / "resuming" (a process started, not yet driving it)


def display_state(ws: Workspace, run: Run, launches: Launches) -> DisplayState:
    """How the console shows a run: as `tether status` does (a "running" run no process drives has failed
    mid-step), and "starting" or "resuming" while a process this console started for it has not yet taken it.
    A stopped run is final (the console never resumes one): a live process of ours for it is only exiting."""
    driven = is_driven(ws, run.id)
    launch = launches.driving(run.id)
    if launch is not None and run.state != "stopped" and not (driven and run.state == "running"):
        return "resuming" if launch.command.startswith("tether resume") else "starting"
    if run.state == "running" and not driven:
        return "failed"
    return run.state


def is_busy(ws: Workspace, run_id: str, launches: Launches) -> bool:
    """A process drives the run, or one this console started is about to."""
    return is_driven(ws, run_id) or launches.driving(run_id) is not None


def may_resume(ws: Workspace, run: Run, launches: Launches) -> bool:
    return display_state(ws, run, launches) in ("paused", "failed") and not is_driven(ws, run.id)


def may_stop(ws: Workspace, run: Run, launches: Launches) -> bool:
    """A paused or failed run, or one this console drives (a run driven from a shell is stopped there)."""
    state = display_state(ws, run, launches)
    return state != "stopped" and (not is_driven(ws, run.id) or launches.driving(run.id) is not None)


def resume(ws: Workspace, launches: Launches, run_id: str, key: keys.Signer | None) -> Outcome:
    """`tether resume RUN_ID`, as a detached process."""
    if key is None:
        return READ_ONLY
    with open_store(ws) as store:
        run = store.get_run(run_id)
    if run is None:
        return Outcome(404, f"no run '{run_id}' (see Runs)")
    if run.state == "stopped":
        return Outcome(400, f"run {run_id} has stopped; start a new one (Runs), or `tether run --from CHECKPOINT` "
                            "continues from one of its approved adapters")
    if is_busy(ws, run_id, launches):
        return Outcome(400, f"run {run_id} is being driven by a process now; nothing was started (its page "
                            "shows when it pauses or ends)")
    launch = launches.resume(run_id)
    return Outcome(200, f"run {run_id} is resuming in a process this console started (pid {launch.proc.pid}); "
                        f"its output goes to {launch.log}")


def stop(ws: Workspace, launches: Launches, run_id: str, key: keys.Signer | None, reason: str) -> Outcome:
    """`tether stop RUN_ID --by NAME --reason REASON`, NAME being the console's reviewer."""
    if key is None:
        return READ_ONLY
    if not reason.strip():
        return Outcome(400, "stopping a run needs a reason (recorded in the audit log); nothing was changed")
    with open_store(ws) as store:
        if store.get_run(run_id) is None:
            return Outcome(404, f"no run '{run_id}' (see Runs)")
    if not launches.terminate(run_id):
        return Outcome(503, f"run {run_id}'s process did not end within a minute of SIGTERM; nothing was changed. "
                            "Try again once its page shows it failed or paused")
    with WRITE_LOCK, open_store(ws) as store:
        run = store.get_run(run_id)
        if run is None:
            return Outcome(404, f"no run '{run_id}' (see Runs)")
        try:
            withdrawn = stop_run(ws, store, run, key.name, reason, is_driven(ws, run_id))
        except TetherError as err:
            return refusal(err)
        except (sqlite3.OperationalError, OSError) as err:
            return environment(err, ws)
    return Outcome(200, f"run {run_id} stopped by {key.name}"
                        + (f"; withdrawn: {', '.join(withdrawn)}" if withdrawn else ""))


def start(ws: Workspace, launches: Launches, key: keys.Signer | None, rounds: str, seed: str) -> Outcome:
    """`tether run [--rounds N] [--seed N]` on the workspace's config, as a detached process; a bad number is
    400 and nothing is started. The run's own checks (config, constitution, world, model) run in it, and a
    refusal shows in its log on the Runs page, as it would in a shell."""
    if key is None:
        return READ_ONLY
    options: list[str] = []
    for flag, text, most in (("--rounds", rounds, MAX_ROUNDS), ("--seed", seed, MAX_SEED)):
        text = text.strip()
        if not text:
            continue
        low = 1 if flag == "--rounds" else 0
        if not text.isdigit() or not low <= int(text) <= most:
            return Outcome(400, f"{flag} must be a whole number from {low} to {most}, not {text!r}; leave it empty "
                                "for the config's value. Nothing was started")
        options += [flag, str(int(text))]
    launch = launches.start(options)
    return Outcome(200, f"`{launch.command}` started from this console (pid {launch.proc.pid}), its output in "
                        f"{launch.log}; the run shows below once it has its id")


def after_decision(ws: Workspace, launches: Launches, run_id: str, key: keys.Signer | None, resume_it: bool) -> str:
    """What happens to the run after a checkpoint decision, in words: its waiting process (`--wait`) goes on by
    itself, or this console resumes it when asked to, or the reviewer is told how to."""
    if is_busy(ws, run_id, launches):
        return f"run {run_id} goes on: the process waiting at its gate continues it now"
    if resume_it:
        return resume(ws, launches, run_id, key).message
    return f"resume run {run_id} from its page here, or with `tether resume {run_id}`"
