"""A run's life from the CLI: stop it, continue from its adapter, change its settings, export its pairs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from conftest import clone_workspace, tether_cli
from guardrails import audit
from memory import Store

runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def test_stop_withdraws_pending_approvals_and_ends_the_run(gated_workspace, tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    store = Store(home / "tether.db")
    candidate = store.get_checkpoint(f"{run_id}-r1")
    result = tether(home, "stop", run_id, "--by", "alice", "--reason", "wrong judge for this data")
    assert result.exit_code == 0, result.output
    assert store.get_run(run_id).state == "stopped"
    assert store.get_approval(approval_id).status == "withdrawn"
    assert store.get_checkpoint(candidate.id).status == "discarded"
    assert not (home / candidate.path).exists()
    assert tether(home, "approve", approval_id, "--by", "bob").exit_code == 2  # nothing left to decide
    assert "has stopped" in tether(home, "resume", run_id).output
    assert tether(home, "stop", run_id, "--by", "alice", "--reason", "again").exit_code == 2
    stop = [e for e in store.audit_entries() if e.action == "run.stop"]
    assert stop[0].actor == "alice" and stop[0].details["withdrawn"] == [approval_id]
    assert audit.verify(store).ok


def test_the_runs_own_actors_cannot_stop_it_or_withdraw_its_approvals(gated_workspace, tmp_path: Path) -> None:
    """Only a person withdraws what waits for a person: `--by tether` or `--by agent:RUN` is exit 2, and the
    run, its pending approval and its candidate stay as they were."""
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    before = Store(home / "tether.db").audit_entries()
    for by in ("tether", f"agent:{run_id}", "System"):
        result = tether_cli(home, "stop", run_id, "--by", by, "--reason", "the agent wants out")
        assert result.returncode == 2 and "not a person" in result.stderr, (by, result.stderr)
    store = Store(home / "tether.db")
    assert store.get_run(run_id).state == "paused" and store.get_approval(approval_id).status == "pending"
    assert store.get_checkpoint(f"{run_id}-r1").status == "pending"
    assert (home / store.get_checkpoint(f"{run_id}-r1").path).is_dir()
    assert store.audit_entries() == before


def test_export_pairs_in_trl_format(gated_workspace, tmp_path: Path) -> None:
    home, run_id, _ = clone_workspace(gated_workspace, tmp_path / "ws")
    out = tmp_path / "export"
    result = tether(home, "export", "pairs", run_id, "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    stored = Store(home / "tether.db").pairs(run_id, None)
    assert len(rows) == len(stored) > 0 and all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
    assert rows[0] == {"prompt": stored[0].prompt, "chosen": stored[0].chosen, "rejected": stored[0].rejected}
    from datasets import load_from_disk

    dataset = load_from_disk(str(out / "dataset"))
    assert dataset.num_rows == len(rows) and dataset.column_names == ["prompt", "chosen", "rejected"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] == run_id and manifest["pairs"] == len(rows) and manifest["rounds"] == [1]
    assert tether(home, "export", "pairs", run_id, "--round", "9", "--out", str(tmp_path / "none")).exit_code == 2
    assert tether(home, "export", "pairs", "run-nope", "--out", str(tmp_path / "none")).exit_code == 2


def test_a_new_run_continues_from_an_approved_adapter_with_its_lineage(gated_workspace, tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0
    assert tether(home, "resume", run_id).exit_code == 0  # r1 active, paused at round 2's gate
    store = Store(home / "tether.db")
    source = store.get_checkpoint(f"{run_id}-r1")
    card = (home / source.path / "README.md").read_text()  # the model card of an approved adapter
    assert source.sha256 in card and "approved by: alice" in card and "Invariants" in card

    assert tether(home, "run", "--from", f"{run_id}-r2", "--rounds", "1").exit_code == 2  # not approved
    result = tether(home, "run", "--from", source.id, "--rounds", "1")
    assert result.exit_code == 0, result.output
    new_id = result.stdout.split()[1]
    start = store.get_checkpoint(f"{new_id}-r0")
    assert start.status == "approved" and start.parent == source.id and start.sha256 == source.sha256
    assert {s.checkpoint_id for s in store.samples(new_id, 1, split="train")} == {start.id}
    assert store.get_checkpoint(f"{new_id}-r1").parent == start.id  # trained on from the inherited adapter
    inherit = [e for e in store.audit_entries() if e.action == "checkpoint.inherit"]
    assert inherit[0].details["source"] == source.id
    assert audit.verify(store).ok


def test_resume_with_a_changed_config_is_logged_and_fixed_settings_are_refused(gated_workspace,
                                                                                tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    store = Store(home / "tether.db")
    config = yaml.safe_load((home / "config.yaml").read_text())
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump({**config, "seed": 7}))
    result = tether(home, "resume", run_id, "--config", str(fixed))
    assert result.exit_code == 2 and "seed" in result.output and "fixed" in result.output
    assert store.get_run(run_id).config_sha256 == store.list_runs()[0].config_sha256
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({**config, "controller": {**config["controller"], "rounds": 3},
                                       "training": {**config["training"], "epochs": 2}}))
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0
    result = tether(home, "resume", run_id, "--config", str(changed))
    assert result.exit_code == 0, result.output
    run = store.get_run(run_id)
    assert run.rounds_budget == 3 and run.config["training"]["epochs"] == 2
    logged = [d for d in store.decisions(run_id) if d.action == "config_change"]
    assert logged and any("training.epochs: 1 -> 2" in c for c in logged[0].signals["changes"])
    assert [e.details["changes"] for e in store.audit_entries() if e.action == "run.config"] == [
        logged[0].signals["changes"]]
    assert audit.verify(store).ok
