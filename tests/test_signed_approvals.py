"""Signed human approvals, attacked as someone with write access to the workspace would.

Each attack works on its own copy of a real run paused at the gate (the tiny model, real SQLite) and
must end the same way: nothing activated, exit 1, and an audit entry that says what was refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from agent.run.runner import RunTamperError, resume_run
from agent.run.workspace import Workspace
from conftest import clone_workspace, raw_db, signer, tether_cli, write_test_config
from guardrails import keys, signoff
from memory import Store

runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def _resume(home: Path, run_id: str):
    ws = Workspace(home)
    return resume_run(ws, Store(ws.db_path), run_id, say=lambda _m: None, wait=False, progress=False)


def _forge_approved(home: Path, approval_id: str) -> None:
    with raw_db(home) as db:
        db.execute("UPDATE approvals SET status = 'approved', decided_by = 'alice', decided_at = 'now' "
                   "WHERE id = ?", (approval_id,))


def _assert_refused_at_commit(home: Path, run_id: str) -> None:
    with pytest.raises(RunTamperError):
        _resume(home, run_id)
    store = Store(home / "tether.db")
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-base"
    assert store.get_run(run_id).state == "failed"
    assert store.get_checkpoint(f"{run_id}-r1").status == "rejected"
    assert "tamper.detected" in [e.action for e in store.audit_entries()]


@pytest.fixture()
def gated(gated_workspace, tmp_path: Path) -> tuple[Path, str, str]:
    return clone_workspace(gated_workspace, tmp_path / "ws")


def test_an_approval_row_edited_by_hand_activates_nothing(gated) -> None:
    home, run_id, approval_id = gated
    _forge_approved(home, approval_id)
    _assert_refused_at_commit(home, run_id)


def test_a_signature_row_inserted_by_hand_is_refused(gated) -> None:
    home, run_id, approval_id = gated
    store = Store(home / "tether.db")
    approval = store.get_approval(approval_id)
    statement = signoff.statement_for(store, approval, "approve", "alice", None).to_bytes().decode()
    with raw_db(home) as db:  # alice's name and fingerprint, but nobody's signature
        db.execute("INSERT INTO signatures (approval_id, subject, decision, reviewer, fingerprint, statement, "
                   "signature, at) VALUES (?, ?, 'approve', 'alice', ?, ?, ?, 'now')",
                   (approval_id, approval.subject, signer("alice").fingerprint, statement, "00" * 64))
    _forge_approved(home, approval_id)
    _assert_refused_at_commit(home, run_id)


def test_a_signature_replayed_from_another_subject_is_refused(gated) -> None:
    home, run_id, approval_id = gated
    # alice's genuine signature on constitution v1 (made at init), copied onto the candidate's approval.
    with raw_db(home) as db:
        db.execute("INSERT INTO signatures (approval_id, subject, decision, reviewer, fingerprint, statement, "
                   "signature, at) SELECT ?, subject, decision, reviewer, fingerprint, statement, signature, at "
                   "FROM signatures WHERE reviewer = 'alice' AND decision = 'approve' LIMIT 1", (approval_id,))
    _forge_approved(home, approval_id)
    _assert_refused_at_commit(home, run_id)


def test_a_correct_statement_signed_by_an_unregistered_key_is_refused(gated) -> None:
    home, run_id, approval_id = gated
    folder = Path(os.environ["TETHER_KEYS_DIR"])  # the clone's copy of the session key folder
    mallory = signer("mallory") if keys.has_key(folder, "mallory") else keys.create_key(folder, "mallory")
    store = Store(home / "tether.db")
    approval = store.get_approval(approval_id)
    # Through the CLI: a key nobody registered here signs nothing (exit 1, audited).
    result = tether(home, "approve", approval_id, "--by", "mallory")
    assert result.exit_code == 1 and "not a registered reviewer" in result.output
    assert store.get_approval(approval_id).status == "pending"
    assert "approval.refused" in [e.action for e in store.audit_entries(subject=approval_id)]
    # By hand: a perfectly formed statement, validly signed, with mallory's key.
    body = signoff.statement_for(store, approval, "approve", "mallory", None).to_bytes()
    with raw_db(home) as db:
        db.execute("INSERT INTO signatures (approval_id, subject, decision, reviewer, fingerprint, statement, "
                   "signature, at) VALUES (?, ?, 'approve', 'mallory', ?, ?, ?, 'now')",
                   (approval_id, approval.subject, mallory.fingerprint, body.decode(), mallory.sign(body)))
    _forge_approved(home, approval_id)
    _assert_refused_at_commit(home, run_id)


def test_a_reviewer_registered_by_hand_breaks_the_registry(gated, keys_dir: Path) -> None:
    home, _, approval_id = gated
    mallory = signer("mallory") if keys.has_key(keys_dir, "mallory") else keys.create_key(keys_dir, "mallory")
    with raw_db(home) as db:
        db.execute("INSERT INTO reviewer_events (action, name, public_key, fingerprint, signed_by, statement, "
                   "signature, at) VALUES ('add', 'mallory', ?, ?, 'mallory', '{}', '00', 'now')",
                   (mallory.public_hex, mallory.fingerprint))
    result = tether(home, "approve", approval_id, "--by", "mallory")
    assert result.exit_code == 1
    assert tether(home, "reviewer", "list").exit_code == 1
    assert Store(home / "tether.db").get_approval(approval_id).status == "pending"


@pytest.mark.parametrize("actor", ["tether", "agent:{run_id}"])
def test_the_software_itself_can_never_approve(gated, actor: str) -> None:
    home, run_id, approval_id = gated
    by = actor.format(run_id=run_id)
    result = tether(home, "approve", approval_id, "--by", by)
    assert result.exit_code == 1 and "not a person" in result.output
    store = Store(home / "tether.db")
    assert store.get_approval(approval_id).status == "pending"
    refused = [e for e in store.audit_entries(subject=approval_id) if e.action == "decision.refused"]
    assert refused and refused[-1].details["by"] == by


def test_an_active_pointer_set_by_hand_is_shown_unverified(gated) -> None:
    """The pointer moved to the pending candidate by SQL: status and checkpoints say UNVERIFIED with the
    loader's reason and exit 1 (tampering found); the loader itself refuses it."""
    home, run_id, approval_id = gated
    candidate = f"{run_id}-r1"
    clean = json.loads(tether_cli(home, "status", run_id, "--json", check=True).stdout)
    assert clean["active_checkpoint"] == f"{run_id}-base" and clean["active_verified"] is True
    with raw_db(home) as db:
        db.execute("UPDATE runs SET active_checkpoint = ? WHERE id = ?", (candidate, run_id))
    table = tether_cli(home, "status", run_id)
    assert table.returncode == 1 and "UNVERIFIED" in table.stdout, table.stdout
    assert f"active checkpoint {candidate} is not the one its audit log activated" in table.stderr
    doc = json.loads((as_json := tether_cli(home, "status", "--json")).stdout)[0]
    assert as_json.returncode == 1 and doc["active_checkpoint"] == candidate and doc["active_verified"] is False
    assert "set outside the gate" in doc["active_problem"]
    listed = tether_cli(home, "checkpoints", run_id)
    assert listed.returncode == 1 and "UNVERIFIED" in listed.stdout and "set outside the gate" in listed.stderr
    rows = {r["id"]: r for r in json.loads(tether_cli(home, "checkpoints", "--json").stdout)}
    assert rows[candidate]["active"] and "set outside the gate" in rows[candidate]["active_problem"]
    assert rows[f"{run_id}-base"]["active_problem"] is None
    # the desk shows it the same way: UNVERIFIED on the run page and the checkpoints page, never "active"
    from starlette.testclient import TestClient

    from agent.ui.app import create_app

    desk = create_app(home)
    client = TestClient(desk, base_url="http://127.0.0.1")
    client.get(f"/?token={desk.state.secrets.access}")
    for page in (f"/runs/{run_id}", "/checkpoints"):
        html = client.get(page).text
        assert "UNVERIFIED" in html and "set outside the gate" in html, page
        assert '<span class="badge active">active</span>' not in html, page
    assert tether(home, "reject", approval_id, "--by", "alice", "--note", "tampered").exit_code == 0
    with pytest.raises(RunTamperError, match="set outside the gate"):  # the next round loads the active adapter
        _resume(home, run_id)


def test_approvals_required_needs_distinct_reviewers(gated_workspace, tmp_path: Path,
                                                     tiny_world_model_dir: Path) -> None:
    home, _, _ = clone_workspace(gated_workspace, tmp_path / "ws")
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 1}, approvals={"required": 2})
    result = tether(home, "run")
    assert result.exit_code == 0, result.output
    store = Store(home / "tether.db")
    run_id = [r for r in store.list_runs() if r.rounds_budget == 1][0].id
    approval = store.approvals(status="pending", run_id=run_id)[0]
    assert tether(home, "approve", approval.id, "--by", "alice", "--accept-not-met").exit_code == 0
    assert store.get_approval(approval.id).status == "pending"  # one of two
    assert tether(home, "approve", approval.id, "--by", "alice", "--accept-not-met").exit_code == 2  # same person twice
    assert _resume(home, run_id).state == "paused"  # still waiting at the gate
    assert tether(home, "approve", approval.id, "--by", "bob", "--accept-not-met").exit_code == 0
    decided = store.get_approval(approval.id)
    assert decided.status == "approved" and decided.decided_by == "alice, bob"
    assert _resume(home, run_id).state == "stopped"
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-r1"


def test_the_proposer_of_a_constitution_change_cannot_approve_it(gated, tmp_path: Path) -> None:
    home, _, _ = gated
    text = (home / "constitution.yaml").read_text().replace("weight: 0.3", "weight: 0.4")
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text(text)
    assert tether(home, "constitution", "propose", str(proposal), "--by", "alice").exit_code == 0
    approval = Store(home / "tether.db").approvals(status="pending", run_id=None)
    amendment = [a for a in approval if a.kind == "constitution"][0]
    result = tether(home, "approve", amendment.id, "--by", "alice")
    assert result.exit_code == 1 and "proposed this change" in result.output
    assert tether(home, "approve", amendment.id, "--by", "bob").exit_code == 0


def test_a_signature_verifies_with_standard_tooling(gated, tmp_path: Path) -> None:
    home, _, approval_id = gated
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0
    sig = Store(home / "tether.db").signatures(approval_id=approval_id)[0]
    (tmp_path / "statement.json").write_text(sig.statement)
    (tmp_path / "statement.sig").write_bytes(bytes.fromhex(sig.signature))
    (tmp_path / "alice.pem").write_text(keys.public_pem(signer("alice").public_hex))
    cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "alice.pem"), "-rawin",
           "-in", str(tmp_path / "statement.json"), "-sigfile", str(tmp_path / "statement.sig")]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    (tmp_path / "statement.json").write_text(sig.statement.replace("alice", "alicf"))
    assert subprocess.run(cmd, capture_output=True, text=True).returncode != 0


def test_the_run_process_never_reads_a_private_key(gated, monkeypatch: pytest.MonkeyPatch) -> None:
    home, run_id, approval_id = gated
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0

    def no_keys(*_a: object, **_k: object) -> None:
        raise AssertionError("the run process read a private key")

    monkeypatch.setattr(keys, "load_key", no_keys)
    monkeypatch.setattr(keys, "create_key", no_keys)
    # A folder with no key at all, only the workspace's public root of trust (a service account's, say).
    public_only = home.parent / "no-keys-here"
    shutil.copytree(Path(os.environ["TETHER_KEYS_DIR"]) / "trust", public_only / "trust")
    monkeypatch.setitem(os.environ, "TETHER_KEYS_DIR", str(public_only))
    outcome = _resume(home, run_id)  # activates r1 (verifying alice's signature) and reaches round 2's gate
    assert outcome.state == "paused"
    assert Store(home / "tether.db").get_run(run_id).active_checkpoint == f"{run_id}-r1"
