"""Every run input pinned: the base model's files, the constitution version, finite training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import policies.training
from agent.cli.main import app
from agent.config import load_config
from agent.run.runner import start_run
from agent.run.workspace import Workspace
from conftest import clone_workspace, init_workspace, write_test_config
from memory import Store

runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def test_a_base_model_changed_under_a_run_stops_it_naming_the_file(tmp_path: Path,
                                                                   tiny_world_model_dir: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_world_model_dir, model)
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, model, controller={"rounds": 2})
    assert tether(home, "run").exit_code == 0
    store = Store(home / "tether.db")
    run = store.list_runs()[0]
    assert run.base_model["sha256"] and "model.safetensors" in run.base_model["files"]
    start = next(e for e in store.audit_entries() if e.action == "run.start")
    assert start.details["base_sha256"] == run.base_model["sha256"]

    weights = load_file(model / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01  # a swapped model: same shapes, other weights
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    approval = store.approvals(status="pending")[0].id
    assert tether(home, "approve", approval, "--by", "alice", "--accept-not-met").exit_code == 0
    result = tether(home, "resume", run.id)
    assert result.exit_code == 1 and "model.safetensors" in result.output and "changed" in result.output
    assert store.get_run(run.id).state == "failed"
    assert store.get_run(run.id).active_checkpoint == f"{run.id}-base"  # nothing loaded, nothing activated


def test_an_edited_constitution_file_never_becomes_a_version(gated_workspace, tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    store = Store(home / "tether.db")
    versions = [v.version for v in store.constitution_versions()]
    path = home / "constitution.yaml"
    path.write_text(path.read_text().replace("weight: 0.3", "weight: 0.9"))

    result = tether(home, "run")  # any other run: refused, nothing written
    assert result.exit_code == 2 and "constitution propose" in result.output
    assert len(store.list_runs()) == 1
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0
    assert tether(home, "resume", run_id).exit_code == 0  # the paused run goes on, on its own version
    assert [v.version for v in store.constitution_versions()] == versions
    assert store.get_run(run_id).constitution_version == versions[-1]
    assert "constitution" not in [d.action for d in store.decisions(run_id)]
    shown = tether(home, "constitution", "show")
    assert "differs" in shown.output


def test_a_row_added_as_a_new_constitution_version_by_hand_is_never_in_force(gated_workspace, tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    store = Store(home / "tether.db")
    latest = store.latest_constitution()
    forged = latest.content.replace("weight: 0.3", "weight: 0.0")
    import hashlib

    from conftest import raw_db

    with raw_db(home) as db:
        db.execute("INSERT INTO constitution_versions (version, sha256, invariants_sha256, content, created_at, "
                   "created_by, approval_id, note) VALUES (?, ?, ?, ?, 'now', 'alice', ?, 'forged')",
                   (latest.version + 1, hashlib.sha256(forged.encode()).hexdigest(), latest.invariants_sha256,
                    forged, latest.approval_id))
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0
    assert tether(home, "resume", run_id).exit_code == 0
    assert store.get_run(run_id).constitution_version == latest.version  # never adopted
    assert "NO (never in force)" in tether(home, "constitution", "show").output


def test_a_candidate_with_non_finite_weights_never_reaches_the_gate(tmp_path: Path, tiny_world_model_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Training that blows up (inf/nan weights with a finite logged loss) is refused before evaluation."""
    real = policies.training.run_train_job

    def diverged(job, progress=False):  # the real training job, then the numerical blow-up it can suffer
        result = real(job, progress=progress)
        path = Path(result.adapter_dir) / "adapter_model.safetensors"
        tensors = load_file(path)
        first = next(iter(tensors))
        tensors[first] = torch.full_like(tensors[first], float("inf"))
        save_file(tensors, path)
        return result

    monkeypatch.setattr(policies.training, "run_train_job", diverged)
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 1})
    ws = Workspace(home)
    store = Store(ws.db_path)
    outcome = start_run(ws, store, load_config(ws.config_path), say=lambda _m: None, wait=False, progress=False)
    assert outcome.state == "stopped"
    candidate = store.get_checkpoint(f"{outcome.run_id}-r1")
    assert candidate.status == "rejected" and candidate.invariant_ok is False
    assert "inf/nan" in candidate.invariant_report["error"]
    assert store.approvals(run_id=outcome.run_id) == []  # never offered to a human
    assert store.samples(outcome.run_id, 1, split="heldout") == []  # never evaluated
    rejected = [d for d in store.decisions(outcome.run_id) if d.action == "reject_candidate"]
    assert rejected and "non-finite" in rejected[0].rationale
    assert not (home / candidate.path).exists()
