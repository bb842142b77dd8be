"""Human constitution changes: propose, approve or reject, in force from a run's next round."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from conftest import init_workspace, raw_db, tether_cli, write_test_config
from guardrails import keys
from memory import Store

runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def _proposal(home: Path, tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load((home / "constitution.yaml").read_text())
    edit(doc)
    path = tmp_path / f"proposal-{len(list(tmp_path.glob('proposal-*')))}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _tighten_concise(doc: dict) -> None:
    doc["principles"].append({"id": "brief", "text": "Keep answers under eight words.", "weight": 0.5,
                              "rule": {"kind": "max_words", "max_words": 8}})


def test_a_proposal_touching_an_invariant_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    store = Store(home / "tether.db")
    before = (len(store.audit_entries()), store.approvals(), store.constitution_versions())
    edits = {
        "edited": lambda d: d["invariants"][0]["check"].update(max_rate=0.9),
        "removed": lambda d: d["invariants"].pop(1),
        "added": lambda d: d["invariants"].append({"id": "new-one", "text": "x",
                                                   "check": {"kind": "abusive_language", "max_rate": 0.5}}),
        "definitions": lambda d: d["definitions"]["harm_markers"].remove("poison"),
    }
    for how, edit in edits.items():
        result = tether(home, "constitution", "propose", str(_proposal(home, tmp_path, edit)), "--by", "eve")
        assert result.exit_code == 2, how
        assert "immutable" in result.stderr
    assert (len(store.audit_entries()), store.approvals(), store.constitution_versions()) == before
    unchanged = _proposal(home, tmp_path, lambda d: None)
    assert tether(home, "constitution", "propose", str(unchanged), "--by", "eve").exit_code == 2


def test_approved_amendment_is_in_force_and_a_rejected_one_is_not(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    proposal = _proposal(home, tmp_path, _tighten_concise)
    result = tether(home, "constitution", "propose", str(proposal), "--by", "alice")
    assert result.exit_code == 0, result.stderr
    pending = json.loads(tether(home, "approvals", "--json").stdout)
    assert pending[0]["kind"] == "constitution" and "adds principle 'brief'" in pending[0]["summary"]
    own = tether(home, "approve", pending[0]["id"], "--by", "alice")  # the proposer never approves their change
    assert own.exit_code == 1 and "proposed this change" in own.stderr

    rejected = _proposal(home, tmp_path, lambda d: d["principles"].pop(0))
    assert tether(home, "constitution", "propose", str(rejected), "--by", "bob").exit_code == 0
    second = json.loads(tether(home, "approvals", "--json").stdout)[1]["id"]
    assert tether(home, "reject", second, "--by", "carol", "--note", "helpfulness stays").exit_code == 0

    assert tether(home, "approve", pending[0]["id"], "--by", "carol").exit_code == 0
    shown = json.loads(tether(home, "constitution", "show", "--json").stdout)
    assert shown["in_force"] == 2 and [v["in_force"] for v in shown["versions"]] == [False, True]
    assert "brief" in [p["id"] for p in shown["constitution"]["principles"]]
    assert "helpful" in [p["id"] for p in shown["constitution"]["principles"]]  # the rejected one never applied
    assert shown["workspace_file_differs"] is False
    entries = Store(home / "tether.db").audit_entries()
    assert {"constitution.propose", "constitution.amend"} <= {e.action for e in entries}
    signed = [(e.actor, e.subject, e.details["decision"]) for e in entries if e.action == "approval.signed"]
    assert signed[-2:] == [("carol", second, "reject"), ("carol", pending[0]["id"], "approve")]


def test_a_refused_approval_of_a_proposal_is_audited(tmp_path: Path, keys_dir: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    if not keys.has_key(keys_dir, "mallory"):
        keys.create_key(keys_dir, "mallory")  # a key, but not one registered in this workspace
    tether(home, "constitution", "propose", str(_proposal(home, tmp_path, _tighten_concise)), "--by", "alice")
    proposal = json.loads(tether(home, "approvals", "--json").stdout)[0]["id"]
    for by, why in (("alice", "proposed this change"), ("mallory", "not a registered reviewer")):
        result = tether(home, "approve", proposal, "--by", by)
        assert result.exit_code == 1 and why in result.stderr, by
    refused = [e.details["by"] for e in Store(home / "tether.db").audit_entries(subject=proposal)
               if e.action == "approval.refused"]
    assert refused == ["alice", "mallory"]


def test_a_stale_proposal_cannot_be_approved(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    tether(home, "constitution", "propose", str(_proposal(home, tmp_path, _tighten_concise)), "--by", "alice")
    tether(home, "constitution", "propose", str(_proposal(home, tmp_path, lambda d: d["principles"].pop())),
           "--by", "bob")
    first, second = (a["id"] for a in json.loads(tether(home, "approvals", "--json").stdout))
    assert tether(home, "approve", first, "--by", "carol").exit_code == 0
    stale = tether(home, "approve", second, "--by", "carol")
    assert stale.exit_code == 2 and "propose again" in stale.stderr


def _edit_version(home: Path, version: int, old: str, new: str) -> None:
    """Rewrite a stored constitution version by SQL, as someone with the database file could."""
    with raw_db(home) as db:
        (content,) = db.execute("SELECT content FROM constitution_versions WHERE version = ?", (version,)).fetchone()
        assert old in content
        db.execute("UPDATE constitution_versions SET content = ? WHERE version = ?",
                   (content.replace(old, new, 1), version))


def test_an_edited_constitution_version_is_named_with_what_changed(workspace_home: Path, tmp_path: Path) -> None:
    home = workspace_home
    proposal = _proposal(home, tmp_path, _tighten_concise)
    assert tether(home, "constitution", "propose", str(proposal), "--by", "alice").exit_code == 0
    assert tether(home, "approve", json.loads(tether(home, "approvals", "--json").stdout)[0]["id"],
                  "--by", "bob").exit_code == 0
    _edit_version(home, 2, "Keep answers under eight words.", "Keep answers short.")
    shown = json.loads(tether_cli(home, "constitution", "show", "--json", check=True).stdout)
    assert shown["in_force"] == 1  # the edited v2 is never in force, and says why
    assert "constitution v2 differs from the text approval" in shown["versions"][1]["problem"]
    assert "edits principle 'brief'" in shown["versions"][1]["problem"]

    _edit_version(home, 1, "max_rate: 0.1\n", "max_rate: 0.9\n")  # no-abuse's bound, in the only other version
    for args in (["constitution", "show"], ["run"]):
        result = tether_cli(home, *args)
        assert result.returncode == 2, result.stderr
        assert "constitution v1 differs from the text approval" in result.stderr
        assert "invariant(s) 'no-abuse' (edited)" in result.stderr and "constitution v2 differs" in result.stderr
    with Store(home / "tether.db", readonly=True) as store:
        assert store.list_runs() == []


def test_a_run_uses_an_approved_amendment_from_its_next_round(workspace_home: Path, tmp_path: Path) -> None:
    model = yaml.safe_load((workspace_home / "config.yaml").read_text())["model"]["base"]
    write_test_config(workspace_home, model, controller={"rounds": 2})
    started = tether(workspace_home, "run")
    assert started.exit_code == 0, started.stderr
    run_id = started.stdout.split()[1]
    store = Store(workspace_home / "tether.db")
    gate_approval = store.approvals(status="pending")[0].id

    # While round 1 waits at the gate, a human amends the principles.
    assert tether(workspace_home, "constitution", "propose", str(_proposal(workspace_home, tmp_path,
                                                                          _tighten_concise)),
                  "--by", "alice").exit_code == 0
    amendment = store.approvals(status="pending")[-1].id
    assert tether(workspace_home, "approve", amendment, "--by", "bob").exit_code == 0
    assert tether(workspace_home, "approve", gate_approval, "--by", "bob", "--accept-not-met").exit_code == 0
    resumed = tether(workspace_home, "resume", run_id)
    assert resumed.exit_code == 0, resumed.stderr

    assert store.get_run(run_id).constitution_version == 2
    adopted = [d for d in store.decisions(run_id) if d.action == "constitution"]
    assert adopted and adopted[0].round == 2 and adopted[0].signals["version"] == 2
    # Round 2 was judged with the amended rules: long answers now violate 'brief'.
    round2 = [j for j in store.judgments(run_id, 2) if "brief" in j.details.get("violations", [])]
    round1 = [j for j in store.judgments(run_id, 1) if "brief" in j.details.get("violations", [])]
    assert round2 and not round1
