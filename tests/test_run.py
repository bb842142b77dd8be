"""End to end on the real tiny world: rounds through the graph, the gate, approvals, rollback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
import yaml

from agent.config import load_config
from agent.run.runner import RunTamperError, resume_run, start_run
from agent.run.workspace import Workspace
from conftest import init_workspace, signer, tether_cli, write_test_config
from guardrails import audit, gate
from guardrails.constitution import default_constitution_yaml
from memory import Store
from policies.adapters import adapter_sha256


def _start(home: Path, wait: bool = False):
    ws = Workspace(home)
    store = Store(ws.db_path)
    outcome = start_run(ws, store, load_config(ws.config_path), say=lambda _m: None, wait=wait, progress=False)
    return ws, store, outcome


def _resume(ws: Workspace, store: Store, run_id: str):
    return resume_run(ws, store, run_id, say=lambda _m: None, wait=False, progress=False)


def test_round_pauses_at_gate_and_resumes_after_approval_from_another_process(workspace_home: Path) -> None:
    ws, store, outcome = _start(workspace_home)
    assert outcome.state == "paused" and outcome.approval_id
    run_id = outcome.run_id

    # One real round was recorded through the graph.
    assert len(store.samples(run_id, 1, split="train")) == 16 * 4
    assert len(store.judgments(run_id, 1)) == 16 * 4
    pairs = store.pairs(run_id, 1)
    assert pairs and all(p.margin >= 0.1 and p.chosen != p.rejected for p in pairs)
    assert store.get_round(run_id, 1).monitors["pairs"] == len(pairs)
    # The base model scored the round's samples (round 1: its own): a mean log-prob per token, finite, < 0.
    assert -20.0 < store.get_round(run_id, 1).monitors["base_logp_mean"] < 0.0
    decision = store.decisions(run_id)[-1]
    assert decision.action == "train" and decision.signals["pairs"] == len(pairs)
    assert decision.signals["judge"] == "rules" and decision.signals["judge_spec"] == {"name": "rules", "settings": {}}

    candidate = store.get_checkpoint(f"{run_id}-r1")
    assert candidate.status == "pending" and candidate.invariant_ok is True
    assert not Path(candidate.path).is_absolute()  # relative to the workspace: it can move
    assert candidate.sha256 == adapter_sha256(workspace_home / candidate.path)
    evaluation = candidate.metrics["eval"]
    assert 0.0 <= evaluation["candidate"]["oracle"] <= 1.0 and "oracle_by_family" in evaluation["active"]
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-base"  # nothing active before approval

    # Approve from a separate process through the CLI, then resume.
    result = tether_cli(workspace_home, "approve", outcome.approval_id, "--by", "alice", "--accept-not-met",
                        "--note", "looks good")
    assert result.returncode == 0, result.stderr
    outcome = _resume(ws, store, run_id)
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-r1"
    assert store.get_checkpoint(f"{run_id}-r1").status == "approved"

    # Round 2 samples with the newly active adapter.
    assert outcome.state == "paused"
    assert {s.checkpoint_id for s in store.samples(run_id, 2, split="train")} == {f"{run_id}-r1"}
    assert store.get_checkpoint(f"{run_id}-r2").parent == f"{run_id}-r1"
    gate.decide(store, outcome.approval_id, "approve", signer("bob"), None, accept_not_met=True)
    outcome = _resume(ws, store, run_id)
    assert outcome.state == "stopped"
    actions = [d.action for d in store.decisions(run_id)]
    assert actions == ["train", "activate", "train", "activate", "stop"]
    assert store.verify_audit().ok


def test_reject_discards_the_candidate(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model_dir(workspace_home), controller={"rounds": 1})
    ws, store, outcome = _start(workspace_home)
    candidate = store.get_checkpoint(f"{outcome.run_id}-r1")
    approval_id = outcome.approval_id
    result = tether_cli(workspace_home, "reject", approval_id, "--by", "carol", "--note", "too risky")
    assert result.returncode == 0, result.stderr
    outcome = _resume(ws, store, outcome.run_id)
    assert outcome.state == "stopped"
    assert store.get_checkpoint(candidate.id).status == "rejected"
    assert not (workspace_home / candidate.path).exists()
    assert store.get_run(outcome.run_id).active_checkpoint == f"{outcome.run_id}-base"
    assert "discard_candidate" in [d.action for d in store.decisions(outcome.run_id)]
    # A decided approval cannot be decided again, and a rejected checkpoint cannot be rolled back to.
    assert tether_cli(workspace_home, "approve", approval_id, "--by", "alice").returncode == 2
    assert tether_cli(workspace_home, "rollback", candidate.id, "--by", "alice", "--reason", "y").returncode == 2


def _model_dir(home: Path) -> str:
    return yaml.safe_load((home / "config.yaml").read_text())["model"]["base"]


def test_rollback_makes_the_next_round_generate_with_it(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model_dir(workspace_home), controller={"rounds": 3})
    ws, store, outcome = _start(workspace_home)
    run_id = outcome.run_id
    gate.decide(store, outcome.approval_id, "approve", signer("alice"), None, accept_not_met=True)
    outcome = _resume(ws, store, run_id)  # round 1 active; paused at round 2's gate
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-r1"

    assert tether_cli(workspace_home, "rollback", "nope", "--by", "carol", "--reason", "x").returncode == 2
    result = tether_cli(workspace_home, "rollback", f"{run_id}-base", "--by", "carol", "--reason", "r1 regressed")
    assert result.returncode == 0, result.stderr
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-base"

    # Approving round 2's candidate now would undo the rollback: activation refuses it, rejects it, and the
    # run stops (exit 1 from the CLI) for a person to look; resuming goes on from there.
    gate.decide(store, outcome.approval_id, "approve", signer("alice"), None, accept_not_met=True)
    with pytest.raises(RunTamperError, match="rolled back"):
        _resume(ws, store, run_id)
    assert store.get_checkpoint(f"{run_id}-r2").status == "rejected"
    assert (workspace_home / store.get_checkpoint(f"{run_id}-r2").path).is_dir()  # approved: never deleted
    outcome = _resume(ws, store, run_id)
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-base"
    # ...and round 3 generated with the rolled-back-to base model.
    assert {s.checkpoint_id for s in store.samples(run_id, 3, split="train")} == {f"{run_id}-base"}
    rollback = [e for e in store.audit_entries() if e.action == "checkpoint.rollback"]
    assert rollback[0].actor == "carol" and rollback[0].details["reason"] == "r1 regressed"
    assert audit.verify(store).ok


def _at_the_gate(proc: subprocess.Popen[str], home: Path) -> Store:
    """The store of `home` once the `run --wait` in `proc` has an approval pending (it is then blocked)."""
    store = Store(Workspace(home).db_path)
    deadline = time.monotonic() + 400
    while not store.approvals(status="pending"):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.5)
    return store


def test_run_wait_blocks_until_an_approval_arrives_from_another_process(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model_dir(workspace_home), controller={"rounds": 1})
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "--home", str(workspace_home), "run", "--wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = _at_the_gate(proc, workspace_home)
        time.sleep(1.5)
        assert proc.poll() is None  # still blocked at the gate
        status = json.loads(tether_cli(workspace_home, "status", "--json", check=True).stdout)
        assert status[0]["state"] == "paused"
        approval = store.approvals(status="pending")[0]
        tether_cli(workspace_home, "approve", approval.id, "--by", "bob", "--accept-not-met", check=True)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    run_id = out.split()[1]
    assert out.startswith("run ")
    assert store.get_run(run_id).state == "stopped"
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-r1"


def test_sigterm_records_why_and_the_run_resumes(workspace_home: Path) -> None:
    """A scheduler's stop (SIGTERM) at the gate: the run says so, nothing is lost, resume goes on."""
    write_test_config(workspace_home, _model_dir(workspace_home), controller={"rounds": 1})
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "--home", str(workspace_home), "run", "--wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = _at_the_gate(proc, workspace_home)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "terminated by SIGTERM" in err
    (run,) = store.list_runs()
    assert run.state == "paused"
    assert "terminated by SIGTERM (resumable: `tether resume`) at the approval gate" in (run.error or "")
    (approval,) = store.approvals(status="pending")
    tether_cli(workspace_home, "approve", approval.id, "--by", "bob", "--accept-not-met", check=True)
    tether_cli(workspace_home, "resume", run.id, check=True)
    assert store.get_run(run.id).state == "stopped" and store.get_run(run.id).active_checkpoint == f"{run.id}-r1"


def test_a_run_whose_invariant_cannot_be_evaluated_refuses_to_start(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    """Fail closed before any compute: an invariant no probe exercises could never pass."""
    home = tmp_path / "ws"
    home.mkdir()
    doc = yaml.safe_load(default_constitution_yaml())
    doc["definitions"]["harm_markers"] = ["zzz-matches-nothing"]
    (home / "constitution.yaml").write_text(yaml.safe_dump(doc))
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 1})
    store = Store(home / "tether.db")
    audit_before = len(store.audit_entries())
    result = tether_cli(home, "run")
    assert result.returncode == 2 and "refuse-serious-harm" in result.stderr and "cannot be evaluated" in result.stderr
    assert store.list_runs() == [] and len(store.audit_entries()) == audit_before  # nothing written


def test_tampered_candidate_cannot_be_approved(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model_dir(workspace_home), controller={"rounds": 1})
    ws, store, outcome = _start(workspace_home)
    candidate = store.get_checkpoint(f"{outcome.run_id}-r1")
    weights = workspace_home / candidate.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    result = tether_cli(workspace_home, "approve", outcome.approval_id, "--by", "bob")
    assert result.returncode == 1 and "modified" in result.stderr
    assert store.get_approval(outcome.approval_id).status == "rejected"
    assert _resume(ws, store, outcome.run_id).state == "stopped"
    assert store.get_run(outcome.run_id).active_checkpoint == f"{outcome.run_id}-base"


@pytest.mark.parametrize("edit", ["invariant", "definitions"])
def test_resume_refuses_when_an_invariant_changed(workspace_home: Path, edit: str) -> None:
    write_test_config(workspace_home, _model_dir(workspace_home), controller={"rounds": 1})
    _, store, outcome = _start(workspace_home)
    path = workspace_home / "constitution.yaml"
    doc = yaml.safe_load(path.read_text())
    if edit == "invariant":
        doc["invariants"][1]["text"] = "Be nice, mostly."
        expected = "no-abuse"
    else:
        doc["definitions"]["abusive_terms"] = ["meanie"]
        expected = "definitions"
    path.write_text(yaml.safe_dump(doc))
    tether_cli(workspace_home, "approve", outcome.approval_id, "--by", "alice", "--accept-not-met", check=True)
    result = tether_cli(workspace_home, "resume", outcome.run_id)
    assert result.returncode == 1 and expected in result.stderr
    assert store.get_run(outcome.run_id).active_checkpoint == f"{outcome.run_id}-base"


def test_a_run_terminated_inside_a_node_says_so_without_a_traceback_or_a_fault_to_fix(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """SIGTERM while a node runs (the gate's case is above): the node's Terminated is the failure's cause."""
    from agent.cli.main import _failed
    from agent.run.runner import RunFailedError
    from agent.run.terminate import Terminated

    err = RunFailedError("run-x", "terminated by SIGTERM (resumable: `tether resume`)")
    err.__cause__ = Terminated("terminated by SIGTERM (resumable: `tether resume`)")
    with pytest.raises(typer.Exit) as exit_:
        _failed(err, tmp_path)
    said = capsys.readouterr().err
    assert exit_.value.exit_code == 1 and "terminated by SIGTERM" in said and "tether resume run-x" in said
    assert "Traceback" not in said and "Fix the cause" not in said
