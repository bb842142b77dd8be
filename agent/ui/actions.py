"""The console's three state changes: approve, reject and rollback, signed with a reviewer's key.

Each one takes exactly the CLI's path (agent/cli_review.py `_decide` and `rollback`): the key comes
from the user's key folder through `agent.cli_common.load_signer` (the CLI's `signer`), and the
decision goes through `guardrails.gate` / `guardrails.amendments`, so a refusal (an unregistered
key, `tether`, `agent:<RUN>`, the proposer) has the same message and the same audit entry as the
CLI's. The CLI's exit codes map to HTTP statuses: exit 1 (refused, tampering) is 403, exit 2 (bad
input) is 400, an unknown id is 404, a failure of the machine is 503.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.cli_common import Passphrase, SignerRefused, environment_problem, load_signer
from agent.workspace import Workspace
from guardrails import amendments, gate, keys
from guardrails.constitution import ConstitutionError
from guardrails.errors import DeniedError, GateError, TamperError, TransientError
from guardrails.signoff import HumanDecision
from memory import Store

DECISIONS: tuple[HumanDecision, ...] = ("approve", "reject")

# One state change at a time from this server (the store serialises writers too; this keeps a
# double-clicked button from racing itself into a confusing second message).
_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """What a state change did: an HTTP status and one line, the same words the CLI prints."""

    status: int
    message: str

    @property
    def ok(self) -> bool:
        return self.status == 200


def passphrase_source(given: str | None) -> Passphrase:
    """The passphrase typed in the form, else the server's $TETHER_KEY_PASSPHRASE (as the CLI reads it);
    the server never prompts."""

    def source(folder: Path, name: str) -> str | None:
        return given if given else os.environ.get(keys.PASSPHRASE_ENV)

    return source


def decide(ws: Workspace, approval_id: str, decision: str, by: str, note: str | None,
           passphrase: str | None, accept_not_met: bool = False) -> Outcome:
    """`tether approve|reject APPROVAL_ID --by BY [--note NOTE] [--accept-not-met]` (the form's checkbox)."""
    if decision not in DECISIONS:
        return Outcome(400, f"unknown decision {decision!r}: approve or reject")
    choice: HumanDecision = "approve" if decision == "approve" else "reject"
    note = note if note and note.strip() else None
    with _WRITE_LOCK, _store(ws) as store:
        pending = store.get_approval(approval_id)
        if pending is None:
            return Outcome(404, f"no approval '{approval_id}' (see `tether approvals`)")
        try:
            key = load_signer(store, by, approval_id, passphrase_source(passphrase))
            version = None
            if pending.kind == "constitution":
                decided, version = amendments.decide(store, approval_id, choice, key, note, ws.constitution_path)
            else:
                decided = gate.decide(store, approval_id, choice, key, note, accept_not_met)
        except (SignerRefused, TamperError, DeniedError) as err:
            return Outcome(403, str(err))
        except (GateError, ConstitutionError) as err:
            return Outcome(400, str(err))
        except (sqlite3.OperationalError, OSError) as err:
            return _environment(err, ws)
    if decided.status == "pending":
        return Outcome(200, f"{decided.id}: signed by {by}; it needs more reviewers (approvals.required) before it "
                            "is decided")
    if version is not None:
        return Outcome(200, f"{decided.id} approved by {decided.decided_by}: constitution v{version.version} is in "
                            "force; runs use it from their next round")
    return Outcome(200, f"{decided.id} {decided.status} by {decided.decided_by}"
                        + (f"; `tether resume {decided.run_id}` continues the run" if decided.run_id else ""))


def rollback(ws: Workspace, checkpoint_id: str, by: str, reason: str, passphrase: str | None) -> Outcome:
    """`tether rollback CHECKPOINT_ID --by BY --reason REASON`."""
    with _WRITE_LOCK, _store(ws) as store:
        if store.get_checkpoint(checkpoint_id) is None:
            return Outcome(404, f"no checkpoint '{checkpoint_id}' (see `tether checkpoints`)")
        try:
            key = load_signer(store, by, checkpoint_id, passphrase_source(passphrase))
            ck = gate.rollback(store, checkpoint_id, key, reason)
        except (SignerRefused, TamperError, DeniedError) as err:
            return Outcome(403, str(err))
        except TransientError as err:
            return Outcome(503, str(err))
        except GateError as err:
            return Outcome(400, str(err))
        except (sqlite3.OperationalError, OSError) as err:
            return _environment(err, ws)
    return Outcome(200, f"{ck.id} is now the active checkpoint of {ck.run_id}")


def _store(ws: Workspace) -> Store:
    return Store(ws.db_path)


def _environment(err: BaseException, ws: Workspace) -> Outcome:
    problem = environment_problem(err, ws.home)
    if problem is None:
        raise err
    return Outcome(503, problem)
