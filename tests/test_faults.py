"""Fault tests: a run killed mid-round loses nothing and resumes from its last completed node; the fault
injection the kill tests use (TETHER_FAULT) kills only under their switch (TETHER_TEST_FAULTS=1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from agent.run.faults import FAULT_ENV, SWITCH_ENV
from agent.run.runner import run_lock
from agent.run.workspace import Workspace
from conftest import clone_workspace, raw_db, tether_cli, write_test_config
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
    started = tether_cli(workspace_home, "run", check=True)
    run_id = started.stdout.split()[1]
    # stderr is no terminal and --progress was not given: no bars; stdout holds only `run <RUN_ID>`
    assert started.stdout == f"run {run_id}\n" and "━" not in started.stderr
    store = Store(workspace_home / "tether.db")
    tether_cli(workspace_home, "approve", store.approvals(status="pending")[0].id, "--by", "alice", "--accept-not-met",
               check=True)
    with run_lock(Workspace(workspace_home), run_id):  # as if another process were driving it
        busy = tether_cli(workspace_home, "resume", run_id)
        status = json.loads(tether_cli(workspace_home, "status", run_id, "--json", check=True).stdout)
    assert busy.returncode == 2 and "another process" in busy.stderr
    assert status["state"] == "paused"  # the refused resume changed nothing
    assert tether_cli(workspace_home, "resume", run_id).returncode == 0
    assert store.get_run(run_id).state == "stopped"


def _db_dump(home: Path) -> str:
    db = raw_db(home)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


def test_a_fault_kills_only_under_the_test_switch_and_a_malformed_one_writes_nothing(
        gated_workspace, tmp_path: Path, tiny_world_model_dir: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 1})  # the run ends after round 1
    assert tether_cli(home, "resume", run_id, "--config", str(home / "config.yaml")).returncode == 0
    tether_cli(home, "reject", approval_id, "--by", "alice", "--note", "the discard node runs next", check=True)

    def tether_with(fault: str, switch: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, SWITCH_ENV)}
        env[FAULT_ENV] = fault
        if switch is not None:
            env[SWITCH_ENV] = switch
        return subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), *args],
                              capture_output=True, text=True, env=env, timeout=600)

    before, runs = _db_dump(home), len(Store(home / "tether.db").list_runs())
    (tmp_path / "other").mkdir()
    write_test_config(tmp_path / "other", tiny_world_model_dir, controller={"rounds": 3})
    reconfigure = ["resume", run_id, "--config", str(tmp_path / "other" / "config.yaml")]  # a change to write
    for fault, switch, args in (("discard", None, ["run"]), ("discard:during", "1", reconfigure),
                                ("no-such-node:before", "1", ["run"]), (":after", None, reconfigure)):
        result = tether_with(fault, switch, *args)
        assert result.returncode == 2, (fault, switch, args, result.stderr)
        assert "expected <node>:before, <node>:after or <node>:term" in result.stderr
        assert "Traceback" not in result.stderr
    assert _db_dump(home) == before and len(Store(home / "tether.db").list_runs()) == runs

    killed = tether_with("discard:before", "1", "resume", run_id)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ignored = tether_with("discard:before", None, "resume", run_id)  # a stray variable never kills a real run
    assert ignored.returncode == 0, ignored.stderr
    assert f"{FAULT_ENV}=discard:before ignored" in ignored.stderr and SWITCH_ENV in ignored.stderr
    run = Store(home / "tether.db").get_run(run_id)
    assert run.state == "stopped" and Store(home / "tether.db").get_checkpoint(f"{run_id}-r1").status == "rejected"
