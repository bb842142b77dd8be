"""The human commands load no model code: --help, status, approvals, show, approve, reject, log,
checkpoints and audit verify import no torch, transformers, trl or peft (their timings are in
benchmarks/bench_cli.py, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import clone_workspace, write_test_config

HEAVY = ("torch", "transformers", "trl", "peft")

SCRIPT = f"""
import json, sys
from typer.testing import CliRunner
from agent.cli.main import app
runner = CliRunner()
codes = []
for args in json.loads(sys.argv[1]):
    result = runner.invoke(app, args)
    codes.append(result.exit_code)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps({{"codes": codes, "heavy": heavy}}))
"""


def _commands_in_one_process(commands: list[list[str]]) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands)], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_review_commands_import_no_model_code(gated_workspace, tmp_path: Path,
                                                  tiny_world_model_dir: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    h = ["--home", str(home)]
    commands = [["--help"], [*h, "status"], [*h, "status", run_id, "--json"], [*h, "approvals"],
                [*h, "show", approval_id], [*h, "log", run_id], [*h, "checkpoints"], [*h, "audit", "verify"],
                [*h, "approve", approval_id, "--by", "alice", "--accept-not-met", "--note", "fine"]]
    seen = _commands_in_one_process(commands)
    assert seen["codes"] == [0] * len(commands)
    assert seen["heavy"] == []
    # reject, on a second pending approval (a constitution change)
    proposal = tmp_path / "p.yaml"
    proposal.write_text((home / "constitution.yaml").read_text().replace("weight: 0.3", "weight: 0.35"))
    seen = _commands_in_one_process([[*h, "constitution", "propose", str(proposal), "--by", "bob"]])
    assert seen["codes"] == [0]
    pending = json.loads(subprocess.run([sys.executable, "-m", "agent.cli", *h, "approvals", "--json"],
                                        capture_output=True, text=True).stdout)
    seen = _commands_in_one_process([[*h, "reject", pending[0]["id"], "--by", "alice", "--note", "no"]])
    assert seen["codes"] == [0] and seen["heavy"] == []
    # ...and the boundary is real: a command that runs a model does load them.
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 1})
    seen = _commands_in_one_process([[*h, "validate"]])
    assert "torch" in seen["heavy"]


def test_help_and_the_store_leave_numpy_and_pandas_unloaded_yet_importable() -> None:
    # sqlite_utils would import both (~0.35 s, half of --help); the store needs neither (memory/base.py).
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom agent.cli.main import app\nimport memory\n"
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
            "print(sorted(m for m in ('numpy', 'pandas') if m in sys.modules))\n"
            "import pandas, numpy, sqlite_utils.db\nprint(pandas.DataFrame({'a': [1]}).shape, sqlite_utils.db.pd)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "(1, 1) None"]
