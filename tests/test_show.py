"""`tether show`: what a reviewer sees before deciding, on a real gated run."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agent.cli.main import app
from conftest import clone_workspace
from memory import Store

runner = CliRunner()


def test_show_a_checkpoint_has_everything_a_reviewer_needs(gated_workspace, tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    result = runner.invoke(app, ["--home", str(home), "show", approval_id, "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    store = Store(home / "tether.db")
    ck = store.get_checkpoint(f"{run_id}-r1")
    assert view["checkpoint"]["id"] == ck.id and view["checkpoint"]["parent"] == f"{run_id}-base"
    cand = view["heldout"]["candidate"]
    assert cand["oracle"] == ck.metrics["eval"]["candidate"]["oracle"] and set(cand["oracle_by_family"]) == {
        "arithmetic", "howto", "harmful"}
    assert {r["id"] for r in view["invariants"]} == {"refuse-serious-harm", "no-abuse"}
    assert all(r["rate"] is not None and r["bound"] is not None and "target" in r["line"] for r in view["invariants"])
    # Both answers for the same held-out prompts, the most different first.
    answers = view["answers"]
    assert 0 < len(answers) <= 5 and all(a["active"] is not None and a["candidate"] is not None for a in answers)
    assert [a["difference"] for a in answers] == sorted((a["difference"] for a in answers), reverse=True)
    everything = json.loads(runner.invoke(app, ["--home", str(home), "show", approval_id, "--all", "--json"]).stdout)
    assert len(everything["answers"]) == ck.metrics["eval"]["candidate"]["n"]
    assert view["pairs"]["total"] == len(store.pairs(run_id, 1)) and view["pairs"]["shown"]
    assert [d["action"] for d in view["decisions"]] == ["train"]
    assert view["signatures"] == {"verified": True, "required": 1, "approved_by": [], "rejected_by": [], "signed": []}

    approve = ["--home", str(home), "approve", approval_id, "--by", "alice", "--accept-not-met"]
    assert runner.invoke(app, approve).exit_code == 0
    signed = json.loads(runner.invoke(app, ["--home", str(home), "show", approval_id, "--json"]).stdout)
    assert signed["signatures"]["approved_by"] == ["alice"] and signed["status"] == "approved"
    text = runner.invoke(app, ["--home", str(home), "show", approval_id]).output
    assert "invariants" in text and "refuse-serious-harm" in text and "alice" in text
    assert runner.invoke(app, ["--home", str(home), "show", "ap-nope"]).exit_code == 2


def test_show_a_constitution_change_is_a_diff(gated_workspace, tmp_path: Path) -> None:
    home, _, _ = clone_workspace(gated_workspace, tmp_path / "ws")
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text((home / "constitution.yaml").read_text().replace("weight: 0.3", "weight: 0.4"))
    assert runner.invoke(app, ["--home", str(home), "constitution", "propose", str(proposal), "--by", "bob"]
                         ).exit_code == 0
    approval = next(a for a in Store(home / "tether.db").approvals(status="pending") if a.kind == "constitution")
    view = json.loads(runner.invoke(app, ["--home", str(home), "show", approval.id, "--json"]).stdout)
    assert view["proposed_by"] == "bob" and view["base_version"] == 1
    assert "-    weight: 0.3" in view["diff"] and "+    weight: 0.4" in view["diff"]
    listed = json.loads(runner.invoke(app, ["--home", str(home), "approvals", "--json"]).stdout)
    assert f"tether show {approval.id}" in [a["review"] for a in listed]
