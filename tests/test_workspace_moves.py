"""Workspaces move: paths are relative to the workspace, never the working directory; nothing approved
is deleted by a missing file."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import clone_workspace, init_workspace, tether_cli, write_test_config
from guardrails import audit
from memory import Store
from memory.schema import MIGRATIONS, _statements


def _cli(cwd: Path, home: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "--home", home, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def test_a_run_started_with_a_relative_home_resumes_from_another_directory(tmp_path: Path,
                                                                          tiny_world_model_dir: Path) -> None:
    start = tmp_path / "x"
    start.mkdir()
    init_workspace(start / "ws")
    write_test_config(start / "ws", tiny_world_model_dir, controller={"rounds": 1})
    run = _cli(start, "ws", "run")
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.split()[1]
    approval = json.loads(_cli(start, "ws", "approvals", "--json").stdout)[0]["id"]
    assert _cli(start, "ws", "approve", approval, "--by", "alice", "--accept-not-met").returncode == 0

    # The bug this guards against: resumed from elsewhere, the approved adapter was "not found" and deleted.
    resumed = _cli(Path("/"), str(start / "ws"), "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    store = Store(start / "ws" / "tether.db")
    candidate = store.get_checkpoint(f"{run_id}-r1")
    assert candidate.status == "approved" and store.get_run(run_id).active_checkpoint == candidate.id
    assert (start / "ws" / candidate.path / "adapter_model.safetensors").is_file()


def test_a_copied_workspace_approves_resumes_and_rolls_back(gated_workspace, tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "elsewhere" / "copy")
    assert tether_cli(home, "approve", approval_id, "--by", "alice", "--accept-not-met").returncode == 0
    assert tether_cli(home, "resume", run_id).returncode == 0  # activates r1, pauses at round 2's gate
    store = Store(home / "tether.db")
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-r1"
    # Move it once more, then roll back there: the integrity check reads the copy's own files.
    moved = tmp_path / "moved"
    store.close()
    shutil.move(str(home), str(moved))
    result = tether_cli(moved, "rollback", f"{run_id}-r1", "--by", "bob", "--reason", "moved, still mine")
    assert result.returncode == 0, result.stderr
    result = tether_cli(moved, "rollback", f"{run_id}-base", "--by", "bob", "--reason", "back to base")
    assert result.returncode == 0, result.stderr
    assert tether_cli(moved, "audit", "verify").returncode == 0


def test_a_missing_approved_adapter_pauses_the_run_and_stays_approved(gated_workspace, tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    store = Store(home / "tether.db")
    candidate = store.get_checkpoint(f"{run_id}-r1")
    assert tether_cli(home, "approve", approval_id, "--by", "alice", "--accept-not-met").returncode == 0
    adapter = home / candidate.path
    parked = tmp_path / "parked"
    shutil.move(str(adapter), str(parked))  # an unmounted disk, a sync in progress

    result = tether_cli(home, "resume", run_id)
    assert result.returncode == 1 and str(adapter) in result.stderr
    run = store.get_run(run_id)
    assert run.state == "paused" and str(adapter) in (run.error or "")
    assert run.active_checkpoint == f"{run_id}-base"
    assert store.get_checkpoint(candidate.id).status == "pending"  # not rejected
    assert store.get_approval(approval_id).status == "approved"  # still approved on record
    assert (parked / "adapter_model.safetensors").is_file()  # and nothing deleted

    shutil.move(str(parked), str(adapter))
    assert tether_cli(home, "resume", run_id).returncode == 0
    assert store.get_run(run_id).active_checkpoint == candidate.id
    assert audit.verify(store).ok


def test_version_2_paths_are_made_workspace_relative_on_open(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    home.mkdir()
    conn = sqlite3.connect(home / "tether.db", isolation_level=None)
    for script in MIGRATIONS[:2]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    rows = [("r-base", "r", 0, "base", "ws/models/tiny-s0-n250"),  # relative to where the run started
            ("r-r1", "r", 1, "approved", "ws/runs/r/adapters/r-r1"),
            ("r-r2", "r", 2, "pending", str(tmp_path / "old-place" / "ws" / "runs" / "r" / "adapters" / "r-r2")),
            ("r-r3", "r", 3, "approved", str(home / "runs" / "r" / "adapters" / "r-r3")),
            ("q-base", "q", 0, "base", "/models/my-llama")]  # a user's own model stays as it is
    for ck_id, run, rnd, status, path in rows:
        conn.execute("INSERT INTO checkpoints (id, run_id, round, status, path, created_at, metrics) "
                     "VALUES (?, ?, ?, ?, ?, 'now', '{}')", (ck_id, run, rnd, status, path))
    conn.close()

    store = Store(home / "tether.db")
    paths = {c.id: c.path for c in store.checkpoints()}
    assert paths == {"r-base": "models/tiny-s0-n250", "r-r1": "runs/r/adapters/r-r1",
                     "r-r2": "runs/r/adapters/r-r2", "r-r3": "runs/r/adapters/r-r3", "q-base": "/models/my-llama"}
    assert store.resolve(paths["r-r1"]) == home.resolve() / "runs/r/adapters/r-r1"
