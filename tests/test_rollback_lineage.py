"""Rollback follows the loader's rule, lineage included: a run started from another run's approved adapter
(`tether run --from`) can be rolled back to its start, from the CLI and the console, by the one rule the
loader applies (guardrails.gate.vouching_approval). Every refused rollback is audited (who tried, the
checkpoint, why), exits with its code and changes nothing else; a checkpoint set to approved by SQL, with
no signed approval behind it, is refused (exit 1)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from agent.run.workspace import Workspace
from agent.ui import actions
from conftest import clone_workspace, load_factor, raw_db, signer
from guardrails import audit, gate, keys
from memory import Store

runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def _killed_in(home: Path, node: str, *args: str) -> None:
    """`tether ARGS` killed (the kill tests' fault injection) before node `node` writes anything: what the
    command wrote before the graph ran (a new run, its inherited start, an activation) stays."""
    env = {**os.environ, "TETHER_FAULT": f"{node}:before", "TETHER_TEST_FAULTS": "1"}
    result = subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), *args], capture_output=True,
                            text=True, env=env, timeout=600 * load_factor())
    assert result.returncode == -signal.SIGKILL, result.stderr


def _newest_run(home: Path, but: set[str]) -> str:
    with Store(home / "tether.db", readonly=True) as store:
        return next(r.id for r in store.list_runs() if r.id not in but)


def _inherited(gated_workspace, tmp_path: Path) -> tuple[Path, str, str]:
    """(home, run_id, new_id): round 1's candidate approved and activated (the resume killed in the plan of
    round 2), and a new run started from it (killed in its first plan): NEW-r0 is active by inheritance."""
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0
    _killed_in(home, "plan", "resume", run_id)
    _killed_in(home, "plan", "run", "--from", f"{run_id}-r1", "--rounds", "1")
    return home, run_id, _newest_run(home, {run_id})


def _state(home: Path) -> list[str]:
    """Everything in the store but the audit log (and its sequence), to show a refusal changed nothing else."""
    with closing(sqlite3.connect(home / "tether.db")) as db:
        return [line for line in db.iterdump() if "\"audit\"" not in line and "sqlite_sequence" not in line]


def _refusals(home: Path, subject: str) -> list[dict]:
    with Store(home / "tether.db", readonly=True) as store:
        return [e.details for e in store.audit_entries(subject=subject) if e.action == "rollback.refused"]


def test_a_run_started_from_another_runs_adapter_rolls_back_to_its_start(gated_workspace, tmp_path: Path) -> None:
    home, run_id, new_id = _inherited(gated_workspace, tmp_path)
    start = f"{new_id}-r0"
    store = Store(home / "tether.db")
    assert store.get_run(new_id).active_checkpoint == start and store.get_checkpoint(start).parent == f"{run_id}-r1"
    assert store.approval_for_subject("checkpoint", start) is None  # the source's approval vouches for it

    for target in (f"{new_id}-base", start):  # away from the inherited start, and back to it
        result = tether(home, "rollback", target, "--by", "bob", "--reason", f"back to {target}")
        assert result.exit_code == 0, result.output
        assert gate.verified_active(store, store.get_run(new_id)) == target  # the loader accepts what it made active
    assert tether(home, "checkpoints", new_id).exit_code == 0  # listed active and verified

    ws = Workspace(home)  # the console: the same rule through the same gate
    assert actions.rollback(ws, f"{new_id}-base", signer("carol"), "console: base").ok
    outcome = actions.rollback(ws, start, signer("carol"), "console: the inherited start again")
    assert outcome.ok, outcome.message
    assert gate.verified_active(store, store.get_run(new_id)) == start

    # A run started from the inherited start: its lineage vouches down to round 1's signed approval.
    _killed_in(home, "plan", "run", "--from", start, "--rounds", "1")
    third = _newest_run(home, {run_id, new_id})
    assert gate.verified_active(store, store.get_run(third)) == f"{third}-r0"
    assert store.get_checkpoint(f"{third}-r0").parent == start
    assert tether(home, "rollback", f"{third}-r0", "--by", "alice", "--reason", "lineage of two").exit_code == 0

    # The inherited start's files changed on disk: refused as tampering (exit 1), audited, nothing else changed.
    weights = home / store.get_checkpoint(start).path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    tether(home, "rollback", f"{new_id}-base", "--by", "bob", "--reason", "away again")
    before = _state(home)
    result = tether(home, "rollback", start, "--by", "bob", "--reason", "onto changed files")
    assert result.exit_code == 1 and "failed its integrity check" in result.output
    assert _state(home) == before
    assert _refusals(home, start)[-1]["by"] == "bob" and "integrity" in _refusals(home, start)[-1]["reason"]
    assert "tamper.detected" in [e.action for e in store.audit_entries(subject=start)]
    assert audit.verify(store).ok


@pytest.fixture()
def gated(gated_workspace, tmp_path: Path) -> tuple[Path, str, str]:
    return clone_workspace(gated_workspace, tmp_path / "ws")


def test_every_refused_rollback_is_audited_and_changes_nothing_else(gated) -> None:
    home, run_id, approval_id = gated
    candidate = f"{run_id}-r1"  # pending at round 1's gate
    folder = Path(os.environ["TETHER_KEYS_DIR"])  # the clone's copy of the session key folder
    if not keys.has_key(folder, "mallory"):
        keys.create_key(folder, "mallory")  # a key, but not a reviewer of this workspace
    cases = [  # (checkpoint, --by, exit code, what the message and the audit entry say)
        ("ck-nope", "alice", 2, "no checkpoint 'ck-nope'"),
        (candidate, "alice", 2, f"checkpoint {candidate} is pending"),
        (f"{run_id}-base", "mallory", 1, "'mallory' is not a registered reviewer"),
    ]
    for checkpoint, by, code, needle in cases:
        before = _state(home)
        result = tether(home, "rollback", checkpoint, "--by", by, "--reason", "try")
        assert result.exit_code == code and needle in " ".join(result.output.split()), (checkpoint, result.output)
        assert _state(home) == before, checkpoint
        refused = _refusals(home, checkpoint)
        assert refused and refused[-1]["by"] == by and needle in refused[-1]["reason"], (checkpoint, refused)

    # The attack: the candidate's row set to approved by SQL. `checkpoints` lists it approved, but no signed
    # approval of it exists, so the loader's rule refuses it: exit 1, audited, nothing else changed.
    with raw_db(home) as db:
        db.execute("UPDATE checkpoints SET status = 'approved' WHERE id = ?", (candidate,))
    before = _state(home)
    result = tether(home, "rollback", candidate, "--by", "alice", "--reason", "it says approved")
    assert result.exit_code == 1 and "no human approval of exactly this adapter" in result.output
    assert _state(home) == before
    assert "no human approval" in _refusals(home, candidate)[-1]["reason"]
    # ... and its approval row set to approved too, with no signature behind it: a bad signature, exit 1.
    with raw_db(home) as db:
        db.execute("UPDATE approvals SET status = 'approved', decided_by = 'alice', decided_at = 'now' WHERE id = ?",
                   (approval_id,))
    before = _state(home)
    outcome = actions.rollback(Workspace(home), candidate, signer("bob"), "the console, same attack")
    assert outcome.status == 403 and "valid approving signature" in outcome.message
    assert _state(home) == before
    assert _refusals(home, candidate)[-1]["by"] == "bob"
    # The console's unknown id: 404, audited the same way.
    assert actions.rollback(Workspace(home), "ck-gone", signer("bob"), "x").status == 404
    assert _refusals(home, "ck-gone")[-1]["by"] == "bob"

    store = Store(home / "tether.db")
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-base"
    assert not [e for e in store.audit_entries() if e.action == "checkpoint.rollback"]
    assert audit.verify(store).ok


def test_the_loader_refuses_a_rollback_an_older_tether_signed_onto_a_forged_row(
        gated, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the rule was shared, rollback trusted a row's status with a pending approval behind it. A pointer
    moved that way (signed by a real reviewer, so its rollback signature verifies) is refused on every load."""
    home, run_id, _ = gated
    candidate = f"{run_id}-r1"
    with raw_db(home) as db:
        db.execute("UPDATE checkpoints SET status = 'approved' WHERE id = ?", (candidate,))
    with monkeypatch.context() as old:  # the old rollback: no vouching approval asked for
        old.setattr(gate, "vouching_approval", lambda store, ck: None)
        gate.rollback(Store(home / "tether.db"), candidate, signer("alice"), "it said approved")
    store = Store(home / "tether.db")
    assert gate.active_problem(store, store.get_run(run_id)) == (
        f"checkpoint {candidate} has no human approval of exactly this adapter")
    status = tether(home, "status", run_id)
    assert status.exit_code == 1 and "UNVERIFIED" in status.output


def test_a_malformed_name_is_no_ones_attempt_and_writes_nothing(gated) -> None:
    home, run_id, _ = gated
    with Store(home / "tether.db", readonly=True) as store:
        before = store.audit_entries()
    for checkpoint in ("ck-nope", f"{run_id}-base"):
        result = tether(home, "rollback", checkpoint, "--by", "[/]", "--reason", "x")
        assert result.exit_code == 2, result.output
    with Store(home / "tether.db", readonly=True) as store:
        assert store.audit_entries() == before
