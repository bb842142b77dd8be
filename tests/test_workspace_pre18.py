"""A workspace made before issue 18 (the house's second step) opens unchanged: its store, config,
constitution and its reviewers' key folder (root-of-trust pin, witnessed head) work with today's code, and
its pending constitution proposal is approved by the other reviewer.
How the fixture was made: tests/fixtures/workspace-pre18/README.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app

FIXTURE = Path(__file__).parent / "fixtures" / "workspace-pre18"
PROPOSAL = "ap-3c647c75"
runner = CliRunner()


@pytest.fixture()
def old_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture (never the fixture itself: the commands write), its key folder in $TETHER_KEYS_DIR."""
    shutil.copytree(FIXTURE / "home", tmp_path / "home")
    keys = shutil.copytree(FIXTURE / "keys", tmp_path / "keys")
    # git keeps no file modes but 755/644; a private key readable by others is refused.
    os.chmod(keys, 0o700)
    for name in ("alice", "bob"):  # bob signs the approval below
        os.chmod(keys / f"{name}.pem", 0o600)
    monkeypatch.setitem(os.environ, "TETHER_KEYS_DIR", str(keys))
    return tmp_path / "home"


def tether(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--home", str(home), *args])
    assert result.exit_code == 0, f"tether {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return result.stdout


def test_a_workspace_made_before_issue_18_opens_and_its_proposal_is_approved(old_workspace: Path) -> None:
    home = old_workspace
    config = (home / "config.yaml").read_bytes()

    assert json.loads(tether(home, "status", "--json")) == []
    tether(home, "validate")  # the old config (model.base: tiny, model.tiny_steps) still loads
    pending = json.loads(tether(home, "approvals", "--json"))
    assert [(a["id"], a["kind"]) for a in pending] == [(PROPOSAL, "constitution")]
    listed = tether(home, "reviewer", "list")
    assert "alice" in listed and "bob" in listed
    tether(home, "audit", "verify")
    assert json.loads(tether(home, "constitution", "show", "--json"))["in_force"] == 1

    tether(home, "approve", PROPOSAL, "--by", "bob")

    assert json.loads(tether(home, "approvals", "--json")) == []
    shown = json.loads(tether(home, "constitution", "show", "--json"))
    assert shown["in_force"] == 2
    assert {p["id"]: p["weight"] for p in shown["constitution"]["principles"]}["concise"] == 0.4
    tether(home, "audit", "verify")
    assert shown["workspace_file_differs"] is False  # the approval wrote the amended text to constitution.yaml
    assert (home / "config.yaml").read_bytes() == config
