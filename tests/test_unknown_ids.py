"""An unknown id is bad input everywhere: every command that lists or reads one run or approval exits 2 with
a message naming it and where to look, prints nothing on stdout (no empty table, no empty JSON document)
and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from conftest import init_workspace
from memory import Store

runner = CliRunner()

RUN = "no run 'run-nope' (see `tether status`)"
LISTINGS = [  # (arguments, what the message names); each also with --json
    (["checkpoints", "run-nope"], RUN),
    (["log", "run-nope"], RUN),
    (["status", "run-nope"], RUN),
    (["show", "ap-nope"], "no approval 'ap-nope' (see `tether approvals`)"),
]
WRITERS = [  # commands that write files for one run: nothing is written for an unknown one
    (["report", "run-nope", "--out", "{out}"], RUN),
    (["export", "pairs", "run-nope", "--out", "{out}"], RUN),
]
COMMANDS = LISTINGS + [([*args, "--json"], message) for args, message in LISTINGS] + WRITERS


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("unknown") / "ws"
    init_workspace(home)
    return home


@pytest.mark.parametrize(("args", "message"), COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_an_unknown_id_exits_2_naming_it(home: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    before = Store(home / "tether.db").audit_entries()
    result = runner.invoke(app, ["--home", str(home), *[a.format(out=out) for a in args]])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()) and result.stdout == ""
    assert not out.exists() and Store(home / "tether.db").audit_entries() == before


def test_the_listings_without_an_id_still_list_everything(home: Path) -> None:
    for args in (["checkpoints"], ["status"], ["checkpoints", "--json"], ["status", "--json"]):
        assert runner.invoke(app, ["--home", str(home), *args]).exit_code == 0, args
