"""Your own constitution (issue 21.1), attacked as someone with write access to the workspace and its database,
through the real CLI (the lawful path: test_own_constitution.py):

- fewer signatures than required, a signature by a key nobody registered, and a text, lineage or version row
  swapped in the database after signing never put anything in force;
- a run started before the new lineage keeps the version it pinned (and a row edited to move it fails it);
  a run started after pins the new lineage.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from test_own_constitution import EXAMPLE, _in_force, _lineage_text, _propose, _workspace, tether

from conftest import REVIEWERS, clone_workspace, raw_db, tether_cli
from guardrails import keys, signoff
from guardrails.constitution import default_constitution_yaml, parse_constitution
from memory import Store
from memory.guarded import GuardedWrites

# -- attacks with write access to the workspace and its database ----------------------------------------------


def test_fewer_signatures_than_required_never_put_a_lineage_in_force(tmp_path: Path,
                                                                      tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    approval_id = _propose(home)["id"]
    assert tether(home, "approve", approval_id, "--by", "alice").exit_code == 0  # 1 of 3
    text = EXAMPLE.read_text()
    with raw_db(home) as db:
        db.execute("UPDATE approvals SET status = 'approved', decided_by = 'alice, bob, carol' WHERE id = ?",
                   (approval_id,))
        db.execute("INSERT INTO constitution_versions (version, sha256, invariants_sha256, content, created_at, "
                   "created_by, approval_id, note) VALUES (2, ?, ?, ?, 'now', 'researcher', ?, NULL)",
                   (hashlib.sha256(text.encode()).hexdigest(), parse_constitution(text, "x").invariants_sha256(),
                    text, approval_id))
    (home / "constitution.yaml").write_text(text)  # and the workspace file, to match
    for args in (["constitution", "show"], ["run"]):
        result = tether_cli(home, *args)
        assert result.returncode == 1, result.stderr
        assert "1 valid approving signature(s) of 3 required" in result.stderr
        assert "will not fall back" in result.stderr
    with Store(home / "tether.db", readonly=True) as store:
        assert store.list_runs() == []


def test_a_signature_by_an_unregistered_key_does_not_count(tmp_path: Path, tiny_world_model_dir: Path,
                                                            keys_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    approval_id = _propose(home)["id"]
    mallory = keys.load_key(keys_dir, "mallory") if keys.has_key(keys_dir, "mallory") else \
        keys.create_key(keys_dir, "mallory")
    refused = tether(home, "approve", approval_id, "--by", "mallory")
    assert refused.exit_code == 1 and "not a registered reviewer" in refused.stderr
    with Store(home / "tether.db") as store:  # mallory signs statements in bob's and carol's names
        approval = store.get_approval(approval_id)
        for name in ("bob", "carol"):
            body = signoff.statement_for(store, approval, "approve", name, None).to_bytes()
            GuardedWrites(store).add_signature(approval_id, approval.subject, "approve", name, mallory.fingerprint,
                                               body.decode(), mallory.sign(body))
    result = tether(home, "approve", approval_id, "--by", "alice")
    assert result.exit_code == 1 and "key not registered to 'bob'" in result.stderr
    view = json.loads(tether(home, "show", approval_id, "--json").stdout)
    assert view["status"] == "pending" and view["signatures"]["verified"] is False
    assert _in_force(home)["in_force"] == 1


def _set_payload(home: Path, approval_id: str, **changes) -> dict:
    with raw_db(home) as db:
        (payload,) = db.execute("SELECT payload FROM approvals WHERE id = ?", (approval_id,)).fetchone()
        original = json.loads(payload)
        db.execute("UPDATE approvals SET payload = ? WHERE id = ?", (json.dumps({**original, **changes}), approval_id))
    return original


def test_a_text_or_lineage_swapped_after_signing_never_comes_into_force(tmp_path: Path,
                                                                         tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    approval_id = _propose(home)["id"]
    for name in ("alice", "bob"):
        assert tether(home, "approve", approval_id, "--by", name).exit_code == 0
    swapped = EXAMPLE.read_text().replace("max_rate: 0.1\n", "max_rate: 0.9\n")
    swapped_sha = hashlib.sha256(swapped.encode()).hexdigest()

    original = _set_payload(home, approval_id, content=swapped)  # the text alone
    result = tether(home, "approve", approval_id, "--by", "carol")
    assert result.exit_code == 1 and "no longer matches the text that was proposed" in result.stderr
    with raw_db(home) as db:  # the text and the digest the row names: the signatures name the first digest
        db.execute("UPDATE approvals SET subject_sha256 = ? WHERE id = ?", (swapped_sha, approval_id))
    result = tether(home, "approve", approval_id, "--by", "carol")
    assert result.exit_code == 1 and "names another text" in result.stderr
    with raw_db(home) as db:
        db.execute("UPDATE approvals SET subject_sha256 = ? WHERE id = ?", (original_sha := hashlib.sha256(
            original["content"].encode()).hexdigest(), approval_id))
    _set_payload(home, approval_id, content=original["content"], lineage=None)  # an amendment, as the row says
    result = tether(home, "approve", approval_id, "--by", "carol")  # as an amendment it touches invariants
    assert result.exit_code == 2 and "immutable" in result.stderr
    signatures = json.loads(tether(home, "show", approval_id, "--json").stdout)["signatures"]
    assert signatures["verified"] is False and "against other facts" in signatures["problem"]
    _set_payload(home, approval_id, lineage=3)  # or a lineage of its choosing
    result = tether(home, "approve", approval_id, "--by", "carol")
    assert result.exit_code == 1 and "claims to found lineage 3" in result.stderr
    assert _in_force(home)["in_force"] == 1

    _set_payload(home, approval_id, lineage=2)  # restored: carol's signature completes it
    assert tether(home, "approve", approval_id, "--by", "carol").exit_code == 0
    assert _in_force(home)["lineage"] == 2
    with raw_db(home) as db:  # the version row now: the text in force swapped after the approval
        db.execute("UPDATE constitution_versions SET content = ?, sha256 = ? WHERE version = 2",
                   (swapped, swapped_sha))
    for args in (["constitution", "show"], ["run"]):
        result = tether_cli(home, *args)
        assert result.returncode == 1, result.stderr
        assert "constitution v2 differs from the text approval" in result.stderr
        assert "invariant(s) 'no-abuse'" in result.stderr and "will not fall back" in result.stderr
    with Store(home / "tether.db", readonly=True) as store:
        assert store.list_runs() == [] and store.get_approval(approval_id).subject_sha256 == original_sha


def test_an_amendment_dressed_as_a_new_lineage_is_refused(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    amended = tmp_path / "amended.yaml"
    amended.write_text(default_constitution_yaml().replace("weight: 0.3", "weight: 0.4"))
    assert tether(home, "constitution", "propose", str(amended), "--by", "researcher").exit_code == 0
    approval_id = json.loads(tether(home, "approvals", "--json").stdout)[0]["id"]
    _set_payload(home, approval_id, lineage=2)  # it asked for 1 signature, as an amendment does
    result = tether(home, "approve", approval_id, "--by", "alice")
    assert result.exit_code == 1 and "was not proposed as one" in result.stderr
    assert _in_force(home)["in_force"] == 1


def _run_row(home: Path, run_id: str, **values) -> dict:
    """Set columns of a run's row by SQL; returns the values they had."""
    with raw_db(home) as db:
        db.row_factory = sqlite3.Row
        before = dict(db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())
        sets = ", ".join(f"{k} = ?" for k in values)
        db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values.values(), run_id))
    return {k: before[k] for k in values}


def test_a_run_started_before_a_new_lineage_keeps_its_version(gated_workspace, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home, run_id, gate_approval = clone_workspace(gated_workspace, tmp_path / "ws")
    lineage_file = tmp_path / "stricter.yaml"
    lineage_file.write_text(_lineage_text())
    approval_id = _propose(home, lineage_file)["id"]
    for name in REVIEWERS:
        assert tether(home, "approve", approval_id, "--by", name).exit_code == 0
    assert _in_force(home)["lineage"] == 2
    with Store(home / "tether.db", readonly=True) as store:
        old = store.get_run(run_id)
        new_pins = parse_constitution(store.get_constitution_version(2).content, "v2")
    assert old.constitution_version == 1

    # An attacker moves the paused run to the new lineage: by its version alone, then with its pins too.
    saved = _run_row(home, run_id, constitution_version=2)
    moved = tether(home, "resume", run_id)
    assert moved.exit_code == 1 and "invariants changed" in moved.stderr
    _run_row(home, run_id, invariants=json.dumps(new_pins.invariant_digests(), sort_keys=True),
             invariants_sha256=new_pins.invariants_sha256())
    moved = tether(home, "resume", run_id)
    assert moved.exit_code == 1 and "not the ones its audited start recorded" in moved.stderr
    _run_row(home, run_id, constitution_version=saved["constitution_version"],
             invariants=json.dumps(old.invariants, sort_keys=True), invariants_sha256=old.invariants_sha256)

    # Left alone, it resumes on the version it pinned and never adopts lineage 2.
    assert tether(home, "approve", gate_approval, "--by", "alice", "--accept-not-met").exit_code == 0
    resumed = tether(home, "resume", run_id)
    assert resumed.exit_code == 0, resumed.output
    assert "keeps constitution v1 (lineage 1)" in resumed.stderr
    with Store(home / "tether.db", readonly=True) as store:
        run = store.get_run(run_id)
        assert run.round == 2 and run.constitution_version == 1 and run.invariants == old.invariants
        assert not [d for d in store.decisions(run_id) if d.action == "constitution"]
        reports = [ck.invariant_report for ck in store.checkpoints(run_id) if ck.invariant_report]
    assert reports and all(r["constitution"]["version"] == 1 for r in reports)

    # A run started now pins lineage 2 (killed at its first node: the pins are written before it).
    monkeypatch.setitem(os.environ, "TETHER_FAULT", "plan:before")
    monkeypatch.setitem(os.environ, "TETHER_TEST_FAULTS", "1")
    started = tether_cli(home, "run")
    assert started.returncode != 0 and started.stdout.startswith("run ")
    with Store(home / "tether.db", readonly=True) as store:
        new_run = store.get_run(started.stdout.split()[1])
        start = next(e for e in store.audit_entries(subject=new_run.id) if e.action == "run.start")
    assert new_run.constitution_version == 2 and new_run.invariants == new_pins.invariant_digests()
    assert start.details["lineage"] == 2
