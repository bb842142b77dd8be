"""The CLI contract: exit codes, --json documents, nothing written on bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from conftest import init_workspace, write_test_config
from guardrails import keys
from memory import Store

runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def test_init_writes_defaults_once(tmp_path: Path, keys_dir: Path) -> None:
    home = tmp_path / "ws"
    assert tether(home, "init", "--reviewer", "alice").exit_code == 0
    for name in ("config.yaml", "constitution.yaml", "tether.db"):
        assert (home / name).is_file()
    assert not list(home.rglob("*.pem")) and (keys_dir / "alice.pem").is_file()  # private keys stay outside
    (home / "config.yaml").write_text("seed: 7\n")
    assert tether(home, "init", "--reviewer", "bob").exit_code == 0
    assert (home / "config.yaml").read_text() == "seed: 7\n"  # never overwritten
    listed = json.loads(tether(home, "reviewer", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["alice"]  # nor are its reviewers
    for name in ("tether", "agent:run-1"):  # actors of the software can never be reviewers
        elsewhere = tmp_path / name.replace(":", "-")
        assert tether(elsewhere, "init", "--reviewer", name).exit_code == 2 and not elsewhere.exists()


def test_commands_need_a_workspace(tmp_path: Path) -> None:
    for args in (["status"], ["approvals"], ["run"], ["audit", "verify"]):
        result = tether(tmp_path / "nowhere", *args)
        assert result.exit_code == 2 and "tether init" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_validate_reports_every_error_at_once(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"base": 5, "colour": "red"}, "generation": {"batch_size": "big"},
                                   "judge": {"name": "rulez", "pool": [{"name": "jurry"}]},
                                   "controller": {"interventions": ["retrain"],
                                                  "switch_judge": {"max_length_score_corr": 2}}}))
    result = tether(home, "validate", str(bad))
    assert result.exit_code == 2
    for needle in ("model.base", "model.colour", "generation.batch_size", "did you mean 'rules'",
                   "did you mean 'jury'", "controller.interventions.0",
                   "controller.switch_judge.max_length_score_corr"):
        assert needle in result.stderr
    assert tether(home, "validate").exit_code == 0


def test_bad_config_starts_nothing_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    before = Store(home / "tether.db").audit_entries()
    (home / "config.yaml").write_text("controller: {rounds: zero}\nsurprise: 1\n")
    result = tether(home, "run")
    assert result.exit_code == 2 and "controller.rounds" in result.stderr and "surprise" in result.stderr
    store = Store(home / "tether.db")
    assert store.list_runs() == [] and store.audit_entries() == before
    assert not (home / "graph.db").exists() and not (home / "runs").exists()


def test_bad_constitution_is_reported(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    doc = yaml.safe_load((home / "constitution.yaml").read_text())
    doc["invariants"][0]["check"]["max_rate"] = 2
    (home / "constitution.yaml").write_text(yaml.safe_dump(doc))
    result = tether(home, "validate")
    assert result.exit_code == 2 and "max_rate" in result.stderr
    assert tether(home, "run").exit_code == 2
    assert Store(home / "tether.db").list_runs() == []


def test_an_unapproved_constitution_edit_starts_nothing(tmp_path: Path) -> None:
    """The workspace file is an input to `constitution propose`, never silently a new version."""
    home = tmp_path / "ws"
    init_workspace(home)
    store = Store(home / "tether.db")
    before = store.audit_entries()
    path = home / "constitution.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    doc["principles"][0]["weight"] = 1.0
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = tether(home, "run")
    assert result.exit_code == 2 and "constitution propose" in result.stderr
    assert store.list_runs() == [] and store.audit_entries() == before and len(store.constitution_versions()) == 1
    assert not (home / "graph.db").exists() and not (home / "runs").exists()
    assert json.loads(tether(home, "constitution", "show", "--json").stdout)["workspace_file_differs"] is True
    assert tether(home, "constitution", "show", "--yaml").stdout == original  # how to restore the file


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    assert tether(home, "approve", "ap-nope", "--by", "alice").exit_code == 2
    assert tether(home, "approve", "ap-nope", "--by", "x").exit_code == 2  # the id is checked before the key
    assert tether(home, "reject", "ap-nope", "--by", "alice").exit_code == 2  # --note is required
    assert tether(home, "resume", "run-nope").exit_code == 2
    assert tether(home, "log", "run-nope").exit_code == 2
    assert tether(home, "status", "run-nope").exit_code == 2
    assert tether(home, "rollback", "ck-nope", "--by", "alice", "--reason", "y").exit_code == 2
    assert tether(home, "run", "--rounds", "0").exit_code == 2


def test_only_a_registered_reviewer_can_decide(tmp_path: Path, keys_dir: Path) -> None:
    """Exit 1 and an audit entry for a name without a key, an actor of the software, or a key that is
    not registered in this workspace; nothing is decided until a registered reviewer signs."""
    home = tmp_path / "ws"
    init_workspace(home)
    if not keys.has_key(keys_dir, "mallory"):
        keys.create_key(keys_dir, "mallory")
    proposal = tmp_path / "proposal.yaml"
    doc = yaml.safe_load((home / "constitution.yaml").read_text())
    doc["principles"][0]["weight"] = 1.0
    proposal.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert tether(home, "constitution", "propose", str(proposal), "--by", "alice").exit_code == 0
    store = Store(home / "tether.db")
    approval = store.approvals(status="pending")[0].id
    for by in ("eve", "tether", "agent:run-1", "mallory"):
        for args in (["approve", approval], ["reject", approval, "--note", "no"]):
            result = tether(home, *args, "--by", by)
            assert result.exit_code == 1, (by, args, result.stderr)
    refused = [e.details["by"] for e in store.audit_entries(subject=approval)
               if e.action in ("decision.refused", "approval.refused")]
    assert refused[:6] == ["eve", "eve", "tether", "tether", "agent:run-1", "agent:run-1"] and "mallory" in refused[6:]
    assert store.signatures(approval_id=approval) == [] and store.get_approval(approval).status == "pending"
    decided = json.loads(tether(home, "approve", approval, "--by", "bob", "--json").stdout)
    assert decided["status"] == "approved" and decided["signed_by"] == "bob" and decided["constitution_version"] == 2


def test_every_json_listing_parses_mid_run(workspace_home: Path) -> None:
    write_test_config(workspace_home, yaml.safe_load((workspace_home / "config.yaml").read_text())["model"]["base"],
                      controller={"rounds": 1})
    result = tether(workspace_home, "run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("run ")
    run_id = result.stdout.split()[1]

    status = json.loads(tether(workspace_home, "status", run_id, "--json").stdout)
    assert status["state"] == "paused" and status["round"] == 1 and len(status["pending_approvals"]) == 1
    assert {"distinct_2", "self_bleu", "score_std", "length_mean", "pairs"} <= set(status["monitors"])
    assert set(status) >= {"run_id", "state", "round", "active_checkpoint", "pending_approvals"}
    every = json.loads(tether(workspace_home, "status", "--json").stdout)
    assert [s["run_id"] for s in every] == [run_id]
    approvals = json.loads(tether(workspace_home, "approvals", "--json").stdout)
    assert set(approvals[0]) == {"id", "kind", "run_id", "status", "created_at", "summary", "review",
                                 "lineage"}
    assert approvals[0]["kind"] == "checkpoint" and approvals[0]["status"] == "pending"
    log = json.loads(tether(workspace_home, "log", run_id, "--json").stdout)
    assert set(log[0]) >= {"round", "action", "rationale", "signals", "at"}
    checkpoints = json.loads(tether(workspace_home, "checkpoints", run_id, "--json").stdout)
    assert set(checkpoints[0]) >= {"id", "run_id", "round", "status", "sha256", "path", "parent", "active"}
    assert [c["active"] for c in checkpoints] == [True, False]
    shown = json.loads(tether(workspace_home, "constitution", "show", "--json").stdout)
    assert shown["versions"][-1]["in_force"] is True
    reviewers = json.loads(tether(workspace_home, "reviewer", "list", "--json").stdout)
    assert [r["name"] for r in reviewers] == ["alice", "bob", "carol"] and all(r["active"] for r in reviewers)
    audit = json.loads(tether(workspace_home, "audit", "verify", "--json").stdout)
    assert audit["ok"] is True

    written = tether(workspace_home, "report", run_id, "--out", str(workspace_home / "report"))
    assert written.exit_code == 0
    assert json.loads((workspace_home / "report" / "summary.json").read_text())["rounds"][0]["pairs"] > 0
    assert (workspace_home / "report" / "scores.png").read_bytes()[:4] == b"\x89PNG"

    # Human-readable forms work too.
    for args in (["status"], ["approvals"], ["log", run_id], ["checkpoints"], ["constitution", "show"]):
        assert tether(workspace_home, *args).exit_code == 0


@pytest.mark.parametrize("how", ["edit", "delete"])
def test_audit_verify_names_the_first_bad_entry(tmp_path: Path, how: str) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    store = Store(home / "tether.db")
    for i in range(4):
        store.append_audit("tester", "poke", f"s{i}", {"i": i})
    assert tether(home, "audit", "verify").exit_code == 0
    conn = sqlite3.connect(home / "tether.db")
    bad = [e.seq for e in store.audit_entries() if e.action == "poke"][1]  # after init's signed entries
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    if how == "edit":
        conn.execute("UPDATE audit SET details = '{\"i\": 99}' WHERE seq = ?", (bad,))
    else:
        conn.execute("DELETE FROM audit WHERE seq = ?", (bad,))
    conn.commit()
    conn.close()
    result = runner.invoke(app, ["--home", str(home), "audit", "verify"])
    assert result.exit_code == 1 and f"entry {bad}" in result.stderr
