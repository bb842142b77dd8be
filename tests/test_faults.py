"""Fault tests: a run killed mid-round loses nothing and resumes from its last completed node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from agent.runner import run_lock
from agent.workspace import Workspace
from conftest import tether_cli, write_test_config
from memory import Store


def test_killed_run_shows_failed_and_resumes_without_duplicating_work(workspace_home: Path) -> None:
    model = yaml.safe_load((workspace_home / "config.yaml").read_text())["model"]["base"]
    write_test_config(workspace_home, model, controller={"rounds": 1})
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "--home", str(workspace_home), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    store = Store(workspace_home / "tether.db")
    deadline = time.monotonic() + 300
    run_id = None
    while time.monotonic() < deadline and proc.poll() is None:
        runs = store.list_runs()
        if runs and store.pairs(runs[0].id, 1):
            run_id = runs[0].id
            break
        time.sleep(0.05)
    assert run_id is not None, "the run never reached the pairs node"
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: as if the machine went away
    proc.wait()

    status = json.loads(tether_cli(workspace_home, "status", run_id, "--json", check=True).stdout)
    assert status["state"] == "failed"
    samples_before = len(store.samples(run_id, 1, split="train"))
    pairs_before = len(store.pairs(run_id, 1))

    result = tether_cli(workspace_home, "resume", run_id)
    assert result.returncode == 0, result.stderr
    status = json.loads(tether_cli(workspace_home, "status", run_id, "--json", check=True).stdout)
    assert status["state"] == "paused" and len(status["pending_approvals"]) == 1
    assert len(store.samples(run_id, 1, split="train")) == samples_before  # reused, not regenerated
    assert len(store.pairs(run_id, 1)) == pairs_before
    assert [d.action for d in store.decisions(run_id)] == ["train"]
    assert store.verify_audit().ok


def test_two_processes_cannot_drive_one_run(workspace_home: Path) -> None:
    model = yaml.safe_load((workspace_home / "config.yaml").read_text())["model"]["base"]
    write_test_config(workspace_home, model, controller={"rounds": 1})
    run_id = tether_cli(workspace_home, "run", check=True).stdout.split()[1]
    store = Store(workspace_home / "tether.db")
    tether_cli(workspace_home, "approve", store.approvals(status="pending")[0].id, "--by", "alice", check=True)
    with run_lock(Workspace(workspace_home), run_id):  # as if another process were driving it
        busy = tether_cli(workspace_home, "resume", run_id)
        status = json.loads(tether_cli(workspace_home, "status", run_id, "--json", check=True).stdout)
    assert busy.returncode == 2 and "another process" in busy.stderr
    assert status["state"] == "paused"  # the refused resume changed nothing
    assert tether_cli(workspace_home, "resume", run_id).returncode == 0
    assert store.get_run(run_id).state == "stopped"
