"""Every user- or data-derived string the CLI prints is printed literally: rich markup (and emoji codes)
in names, notes, reasons, summaries, stored errors and paths shows as typed and never breaks the output,
and exit codes follow the contract (0 ok, 1 a check failed, 2 bad usage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from conftest import clone_workspace, init_workspace, public_key_pem, raw_db, tether_cli
from memory import Run, Store

runner = CliRunner()
NAME = "[bold]x[/] [link=x]y[/link]"  # a constitution name: free text that reaches the approval summary
NOTE = "[/] [bold]no[/bold] :smile: [link=x]"


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def assert_clean(result, code: int) -> None:
    """The exit code, and no exception other than the exit itself (so no traceback)."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    init_workspace(home)
    return home


def propose(home: Path, tmp_path: Path, by: str = "[/]") -> str:
    """A pending constitution approval whose name, new principle and proposer carry markup."""
    doc = yaml.safe_load((home / "constitution.yaml").read_text())
    doc["name"] = NAME
    doc["principles"].append({"id": "literal", "text": "Say [/] and [bold]this[/bold] as typed.", "weight": 0.1})
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = tether(home, "constitution", "propose", str(proposal), "--by", by)
    assert_clean(result, 0)
    assert f"'{NAME}'" in result.stderr
    return json.loads(tether(home, "approvals", "--json").stdout)[0]["id"]


def test_approve_with_a_markup_name_is_a_clean_usage_error(home: Path) -> None:
    result = tether_cli(home, "approve", "ap-nope", "--by", "[/]")  # the real entry point, in its own process
    assert result.returncode == 2, result.stderr
    assert "error: no approval 'ap-nope' (see `tether approvals`)" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_refused_markup_name_is_printed_as_typed_and_decides_nothing(home: Path, tmp_path: Path) -> None:
    approval_id = propose(home, tmp_path)
    before = json.loads(tether(home, "audit", "list", "--json").stdout)
    result = tether(home, "approve", approval_id, "--by", "[/]")
    assert_clean(result, 2)  # no name at all: bad input, not a decision anyone made
    assert "'[/]' is not a valid reviewer name" in result.stderr
    assert json.loads(tether(home, "approvals", "--json").stdout)[0]["status"] == "pending"
    assert json.loads(tether(home, "audit", "list", "--json").stdout) == before


def _dump(home: Path) -> str:
    db = raw_db(home)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


def test_a_malformed_by_name_is_exit_2_and_writes_nothing(gated_workspace, tmp_path: Path) -> None:
    """'' and markup are no name: every command that takes --by refuses them as bad input, nothing written.
    A well-formed name without a key is a decision refused: exit 1, and audited."""
    home, run_id, _ = clone_workspace(gated_workspace, tmp_path / "ws")
    propose(home, tmp_path, by="alice")  # a constitution change: nothing else to acknowledge before the key
    approval_id = next(a["id"] for a in json.loads(tether(home, "approvals", "--json").stdout)
                       if a["kind"] == "constitution")
    pem = tmp_path / "dave.pem"
    pem.write_text(public_key_pem("dave"))
    commands = (["approve", approval_id], ["reject", approval_id, "--note", "no"],
                ["rollback", f"{run_id}-base", "--reason", "back"], ["stop", run_id, "--reason", "done"],
                ["reviewer", "add", "dave", "--public-key", str(pem)], ["reviewer", "remove", "bob", "--reason", "x"])
    before = _dump(home)
    real = tether_cli(home, "approve", approval_id, "--by", "[/]")  # the real entry point, in its own process
    assert real.returncode == 2 and "'[/]' is not a valid reviewer name" in real.stderr, real.stderr
    for by in ("", "[/]"):
        for args in commands:
            result = tether(home, *args, "--by", by)
            assert_clean(result, 2)
            assert f"'{by}' is not a valid reviewer name" in result.stderr, (args, result.stderr)
    assert _dump(home) == before
    refused = tether_cli(home, "approve", approval_id, "--by", "nokey-cli")
    assert refused.returncode == 1 and "no private key for 'nokey-cli'" in refused.stderr
    last = json.loads(tether(home, "audit", "list", "--json").stdout)[-1]
    assert last["action"] == "decision.refused" and last["details"]["by"] == "nokey-cli"


def test_a_proposal_with_markup_shows_literally(home: Path, tmp_path: Path) -> None:
    approval_id = propose(home, tmp_path)
    listed = tether(home, "approvals")
    assert_clean(listed, 0)
    for piece in ("[/] proposes to amend v1", "[bold]x[/]", "[link=x]y[/link]"):
        assert piece in listed.stdout
    assert_clean(tether(home, "approve", approval_id, "--by", "alice"), 0)
    shown = tether(home, "constitution", "show")
    assert_clean(shown, 0)
    assert f"constitution '{NAME}' v2" in shown.stdout
    assert "Say [/] and [bold]this[/bold] as typed." in shown.stdout


def test_a_rejection_note_with_markup_is_recorded_and_listed_verbatim(home: Path, tmp_path: Path) -> None:
    approval_id = propose(home, tmp_path, by="zed")
    result = tether(home, "reject", approval_id, "--by", "alice", "--note", NOTE)
    assert_clean(result, 0)
    assert f"{approval_id} rejected by alice" in result.stderr
    listed = tether(home, "audit", "list")
    assert_clean(listed, 0)
    assert f"note={NOTE}" in listed.stdout  # and no emoji for :smile:
    entries = json.loads(tether(home, "audit", "list", "--json").stdout)
    signed = [e for e in entries if e["subject"] == approval_id and e["action"] == "approval.signed"]
    assert [e["details"]["note"] for e in signed] == [NOTE]


def test_a_stored_error_with_markup_prints_in_status(home: Path) -> None:
    with Store(home / "tether.db") as store:
        store.create_run(Run(id="run-markup", config={}, config_sha256="0" * 64, seed=0, rounds_budget=1,
                             constitution_version=1, invariants={}, invariants_sha256="0" * 64, state="failed",
                             round=0, thread_id="run-markup", error="OSError: [/] [bold]boom[/bold]"))
    result = tether(home, "status")
    assert_clean(result, 0)
    assert "OSError: [/] [bold]boom[/bold]" in result.stdout


def test_validate_marks_print_paths_and_problems_literally(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "[red]bad.yaml"
    bad.write_text(yaml.safe_dump({"[bold]key": 1}))
    result = tether(home, "validate", str(bad))
    assert_clean(result, 2)
    assert "✗ " in result.stderr and "[bold]key" in result.stderr and "[red]bad.yaml" in result.stderr
    good = tmp_path / "[link=x]" / "good.yaml"
    good.parent.mkdir()
    good.write_text((home / "config.yaml").read_text())
    result = tether(home, "validate", str(good))
    assert_clean(result, 0)
    assert f"✓ {good} is valid" in result.stderr
