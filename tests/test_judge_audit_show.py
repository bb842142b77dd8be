"""`tether show` puts beside a candidate the audit its judges had on this world when it was trained: the
evidence its training signal was trusted on, never an audit made afterwards."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import JudgeSpecConfig
from agent.run.judge_trust import _slot_named, candidate_judge_audits
from memory import Store
from tests.conftest import clone_workspace

runner = CliRunner()


def show(home: Path, approval_id: str, *extra: str):
    return runner.invoke(app, ["--home", str(home), "show", approval_id, *extra])


def test_show_names_the_judges_of_the_pairs_and_their_audit_then_and_since(gated_workspace, tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    doc = json.loads(show(home, approval_id, "--json").stdout)
    (audit,) = doc["judge_audits"]
    assert audit["judge"] == "rules" and audit["world"] == "tiny"
    assert audit["audit"] is None and "later_audit" not in audit
    text = show(home, approval_id).stdout
    assert "NONE: no audit of this judge configuration on this world" in text

    result = runner.invoke(app, ["--home", str(home), "judge", "audit", "--judge", "rules", "--count", "6",
                                 "--by", "alice"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(show(home, approval_id, "--json").stdout)
    (audit,) = doc["judge_audits"]
    assert audit["audit"] is None  # made after the candidate: not the evidence it was trained on
    assert audit["later_audit"]["verdict"] in ("pass", "fail") and audit["later_audit"]["measures"]
    assert audit["later_audit"]["signed_by"] == "alice" and audit["later_audit"]["signature"] == "verified"
    assert "newer audit:" in show(home, approval_id).stdout and "signed by alice" in show(home, approval_id).stdout

    with Store(home / "tether.db", readonly=True) as store:
        run = store.get_run(run_id)
        assert run is not None
        (then,) = candidate_judge_audits(store, run, 1, "9999-12-31T00:00:00Z")  # trained after it: it counts
    assert then["audit"] == audit["later_audit"] and "later_audit" not in then


def test_a_judgment_name_maps_to_its_pool_slot() -> None:
    slots = [JudgeSpecConfig(name="rules"), JudgeSpecConfig(name="length_biased"),
             JudgeSpecConfig(name="rules", settings={"x": 1})]
    assert _slot_named(slots, "length_biased") is slots[1]
    assert _slot_named(slots, "rules#2") is slots[2] and _slot_named(slots, "rules#0") is slots[0]
    assert _slot_named(slots, "rules") is None  # ambiguous: the pool holds it twice, judgments name the slot
    assert _slot_named(slots, "rules#1") is None and _slot_named(slots, "rules#9") is None
    assert _slot_named(slots, "calculator") is None


def test_the_desk_shows_the_same_beside_the_candidate(gated_workspace, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from agent.ui import create_app

    home, _, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    desk = create_app(home)
    client = TestClient(desk, base_url="http://127.0.0.1")
    client.get(f"/?token={desk.state.secrets.access}")
    page = client.get(f"/approvals/{approval_id}").text
    assert "The judges that chose those pairs" in page
    assert "tether judge audit --judge rules" in page  # none then: the page names the command
    result = runner.invoke(app, ["--home", str(home), "judge", "audit", "--judge", "rules", "--count", "6",
                                 "--by", "bob"])
    assert result.exit_code == 0, result.stderr
    page = client.get(f"/approvals/{approval_id}").text
    assert "newer: " in page and "signed by <b>bob</b>" in page
