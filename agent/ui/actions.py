"""The console's three state changes: approve, reject and rollback, signed with the key of the reviewer
who started the console (`tether ui --as NAME`), never as a name typed into a form.

Each one takes exactly the CLI's path (agent/cli/review.py `_decide` and `rollback`): the decision goes
through `guardrails.gate` / `guardrails.amendments`, so a refusal (a removed reviewer, the proposer)
has the same message and the same audit entry as the CLI's. A console started without `--as` reads
only. A `TetherError`'s exit code maps to an HTTP status in one place (`refusal`): exit 1 (refused,
tampering) is 403, exit 2 (bad input) is 400, and a check that could not run is 503; an unknown id is
404, a failure of the machine is 503.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

from agent.run.workspace import Workspace, environment_problem
from guardrails import amendments, controller_policy, gate, keys
from guardrails.errors import TransientError
from guardrails.signoff import HumanDecision
from memory import Store
from tether_types import EXIT_CHECK_FAILED, TetherError

DECISIONS: tuple[HumanDecision, ...] = ("approve", "reject")

# One state change at a time from this server (the store serialises writers too; this keeps a
# double-clicked button from racing itself into a confusing second message).
WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """What a state change did: an HTTP status and one line, the same words the CLI prints."""

    status: int
    message: str
    decided_run: str | None = None  # the run whose candidate a decision settled: it may go on now

    @property
    def ok(self) -> bool:
        return self.status == 200


READ_ONLY = Outcome(403, "this console reads only: it was started without --as NAME, so it signs nothing; "
                         "restart it as yourself with `tether ui --as NAME`")


def decide(ws: Workspace, approval_id: str, decision: str, key: keys.Signer | None, note: str | None,
           accept_not_met: bool = False) -> Outcome:
    """`tether approve|reject APPROVAL_ID --by NAME [--note NOTE] [--accept-not-met]` (the form's checkbox),
    NAME being the console's reviewer."""
    if key is None:
        return READ_ONLY
    if decision not in DECISIONS:
        return Outcome(400, f"unknown decision {decision!r}: approve or reject")
    choice: HumanDecision = "approve" if decision == "approve" else "reject"
    note = note if note and note.strip() else None
    with WRITE_LOCK, open_store(ws) as store:
        pending = store.get_approval(approval_id)
        if pending is None:
            return Outcome(404, f"no approval '{approval_id}' (see `tether approvals`)")
        try:
            version = None
            if pending.kind == "constitution":
                decided, version = amendments.decide(store, approval_id, choice, key, note, ws.constitution_path)
            elif pending.kind == "controller":
                decided = controller_policy.decide(store, approval_id, choice, key, note)
            else:
                decided = gate.decide(store, approval_id, choice, key, note, accept_not_met)
        except TetherError as err:
            return refusal(err)
        except (sqlite3.OperationalError, OSError) as err:
            return environment(err, ws)
    if decided.status == "pending":
        return Outcome(200, f"{decided.id}: signed by {key.name}; it needs more reviewers (approvals.required) "
                            "before it is decided")
    if version is not None:
        return Outcome(200, f"{decided.id} approved by {decided.decided_by}: constitution v{version.version} is in "
                            "force; runs use it from their next round")
    # What happens to the run next (its waiting process goes on, or a resume) is the caller's to say:
    # agent/ui/control.py `after_decision`.
    return Outcome(200, f"{decided.id} {decided.status} by {decided.decided_by}", decided.run_id)


def rollback(ws: Workspace, checkpoint_id: str, key: keys.Signer | None, reason: str) -> Outcome:
    """`tether rollback CHECKPOINT_ID --by NAME --reason REASON`, NAME being the console's reviewer: the same
    rule (any checkpoint a run would load) and the same audited refusals."""
    if key is None:
        return READ_ONLY
    with WRITE_LOCK, open_store(ws) as store:
        try:
            ck = gate.rollback(store, checkpoint_id, key, reason)  # audits every refusal, an unknown id's too
        except gate.UnknownCheckpointError as err:
            return Outcome(404, str(err))
        except TetherError as err:
            return refusal(err)
        except (sqlite3.OperationalError, OSError) as err:
            return environment(err, ws)
    return Outcome(200, f"{ck.id} is now the active checkpoint of {ck.run_id}")


def refusal(err: TetherError) -> Outcome:
    """A refused state change as the CLI ends it (agent/cli/common.py `TetherGroup`), as an HTTP status:
    exit 1 is 403 and exit 2 is 400; a check that could not run (a missing file, a busy disk) is 503, a
    retry after fixing it, as for a failure of the machine."""
    message = f"{err}; fix: {err.hint}" if err.hint else str(err)
    if isinstance(err, TransientError):
        return Outcome(503, message)
    return Outcome(403 if err.exit_code == EXIT_CHECK_FAILED else 400, message)


def open_store(ws: Workspace) -> Store:
    return Store(ws.db_path)


def environment(err: BaseException, ws: Workspace) -> Outcome:
    problem = environment_problem(err, ws.home)
    if problem is None:
        raise err
    return Outcome(503, problem)
