"""`tether log`, the lab notebook: checks read as true statements, one line per signal, the held-out
score of the active checkpoint per round, and the audit trail (approvals, rollbacks, failures,
pauses, resumes, config changes) in the round it happened."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.review import decision_text, notebook
from conftest import clone_workspace, signer, tether_cli
from guardrails import gate
from memory import Checkpoint, Run, Store
from memory.guarded import GuardedWrites


def _check(signal: str, value: float | None, op: str, threshold: float, setting: str, *,
           status: str | None = None, reason: str = "") -> dict[str, Any]:
    fired = value is not None and {">": value > threshold, "<": value < threshold, ">=": value >= threshold,
                                   "<=": value <= threshold}[op]
    return {"signal": signal, "value": value, "op": op, "threshold": threshold, "fired": fired,
            "setting": setting, "status": status or ("fired" if fired else "ok"), "reason": reason}


CHECKS = [
    _check("pairs", 60, "<", 1, "min_pairs"),
    _check("length_score_corr", 0.97, ">", 0.6, "switch_judge.max_length_score_corr"),
    _check("position_consistency", 1.0, "<", 0.7, "switch_judge.min_position_consistency"),
    _check("trained_rounds_without_heldout_gain", 2, ">=", 4, "stop.patience"),
    _check("trained_rounds_without_heldout_gain", 2, ">=", 2, "add_adversarial.plateau_rounds"),
    _check("over_refusal", None, ">", 0.3, "propose_amendment.max_over_refusal", status="could_not_check",
           reason="over_refusal is not in round 1's monitors"),
]


def _run(store: Store, run_id: str, metric: str = "oracle") -> None:
    store.create_run(Run(id=run_id, config={"controller": {"heldout_metric": metric}}, config_sha256="c" * 64,
                         seed=0, rounds_budget=3, constitution_version=1, invariants={}, invariants_sha256="i" * 64))
    writes = GuardedWrites(store)
    writes.add_checkpoint(Checkpoint(id=f"{run_id}-base", run_id=run_id, round=0, status="base", path="base"))
    writes.set_active(run_id, f"{run_id}-base")
    store.append_audit("tether", "checkpoint.base", f"{run_id}-base", {"run": run_id})
    store.append_audit("tether", "run.start", run_id, {"constitution_version": 1})


def _candidate(store: Store, run_id: str, round_no: int, parent: str, candidate: dict[str, Any],
               active: dict[str, Any], approve_by: str | None) -> str:
    writes = GuardedWrites(store)
    ck_id = f"{run_id}-r{round_no}"
    writes.add_checkpoint(Checkpoint(id=ck_id, run_id=run_id, round=round_no, status="candidate", path=ck_id,
                                     sha256="a" * 64, parent=parent,
                                     metrics={"eval": {"candidate": candidate, "active": active}}))
    approval = writes.create_approval("checkpoint", ck_id, "a" * 64, "candidate", run_id=run_id)
    if approve_by:
        store.append_audit(approve_by, "approval.signed", approval.id,
                           {"decision": "approve", "note": "answers are shorter and right", "subject": ck_id})
        writes.set_checkpoint_status(ck_id, "approved")
        writes.set_active(run_id, ck_id)
        store.append_audit("tether", "checkpoint.activate", ck_id, {"run": run_id, "approval": approval.id})
    return ck_id


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "tether.db")
    _run(s, "run-1")
    # Round 1: trained, evaluated, approved by alice.
    s.upsert_round("run-1", 1, n_pairs=60, judge={"name": "rules"}, outcome="approved")
    s.add_decision("run-1", 1, "train", "round 1 yielded 60 pair(s)", {"checks": CHECKS})
    _candidate(s, "run-1", 1, "run-1-base", {"oracle": 0.4, "judge": 0.7}, {"oracle": 0.26, "judge": 0.6}, "alice")
    s.add_decision("run-1", 1, "activate", "alice approved run-1-r1", {}, actor="gate")
    # Round 2: the process dies, is resumed, the config changes, bob rolls back to the base.
    s.upsert_round("run-1", 2, n_pairs=12, judge={"name": "rules"}, outcome="curriculum_added")
    s.append_audit("tether", "run.failed", "run-1", {"error": "RuntimeError: boom"})
    s.append_audit("tether", "run.resume", "run-1", {"from_state": "failed", "error": "RuntimeError: boom"})
    s.append_audit("alice", "run.config", "run-1", {"run": "run-1", "config_sha256": "d" * 64,
                                                    "changes": ["controller.rounds: 3 -> 4"]})
    s.add_decision("run-1", 2, "add_adversarial", "plateau", {"checks": CHECKS[3:5]})
    s.append_audit("tether", "run.paused", "run-1", {"error": "adapter folder missing"})
    GuardedWrites(s).set_active("run-1", "run-1-base")
    s.append_audit("bob", "checkpoint.rollback", "run-1-base",
                   {"run": "run-1", "from": "run-1-r1", "reason": "round 1 regressed on refusals"})
    s.append_audit("tether", "run.failed", "run-1", {"error": "adapter sha256 mismatch", "tampering": True})
    yield s
    s.close()


def _decision_block(text: str, action: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {action}"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("      ")), len(lines))
    return lines[start:end]


def test_a_check_reads_as_a_true_statement(store: Store) -> None:
    loud = notebook.render(store, "run-1", verbose=True)
    assert "pairs 60 ≥ 1 ok (controller.min_pairs)" in loud
    assert "length_score_corr 0.97 > 0.6 FIRED (controller.switch_judge.max_length_score_corr)" in loud
    assert "position_consistency 1 ≥ 0.7 ok" in loud
    quiet = notebook.render(store, "run-1")
    assert "ok: pairs 60 ≥ 1, position_consistency 1 ≥ 0.7" in quiet
    for text in (loud, quiet):
        # the old form put the firing condition beside a value that does not meet it: "60 (< 1)"
        assert not re.search(r"\d \([<>]=? ?\d", text), text
        assert "could not check: over_refusal" in text or "COULD NOT CHECK over_refusal" in text
        assert "over_refusal None" not in text and "ok    over_refusal" not in text


def test_a_signal_read_by_two_rules_is_shown_once_with_both_thresholds(store: Store) -> None:
    for verbose in (False, True):
        block = _decision_block(notebook.render(store, "run-1", verbose=verbose), "train")
        lines = [line for line in block if "trained_rounds_without_heldout_gain" in line]
        assert len(lines) == 1, block
        assert lines[0].strip() == ("trained_rounds_without_heldout_gain 2 < 4 ok (controller.stop.patience) and "
                                    "2 ≥ 2 FIRED (controller.add_adversarial.plateau_rounds)")


def test_an_ok_line_names_each_setting_when_two_rules_read_one_signal() -> None:
    merged = decision_text.merged_checks([
        _check("trained_rounds_without_heldout_gain", 0, ">=", 3, "stop.patience"),
        _check("trained_rounds_without_heldout_gain", 0, ">=", 2, "regenerate_prompts.plateau_rounds")])
    (only,) = merged
    assert only.compact() == ("trained_rounds_without_heldout_gain 0 < 3 (controller.stop.patience) and 0 < 2 "
                              "(controller.regenerate_prompts.plateau_rounds)")
    (single,) = decision_text.merged_checks([_check("pairs", 60, "<", 1, "min_pairs")])
    assert single.compact() == "pairs 60 ≥ 1"


def test_each_round_shows_the_held_out_score_of_the_checkpoint_active_after_it(store: Store) -> None:
    text = notebook.render(store, "run-1")
    assert "round 1  judge rules  pairs 60  held-out oracle 0.400 (r1)  outcome approved" in text
    # bob rolled back to the base during round 2: the base's score counts after round 2
    assert "round 2  judge rules  pairs 12  held-out oracle 0.260 (base)  outcome curriculum_added" in text


def test_a_world_without_verifiers_shows_the_judge_never_a_zero(tmp_path: Path) -> None:
    with Store(tmp_path / "tether.db") as s:
        _run(s, "run-2")
        s.upsert_round("run-2", 1, n_pairs=5, judge={"name": "rules"}, outcome="approved")
        s.add_decision("run-2", 1, "train", "fine", {"checks": CHECKS[:1]})
        _candidate(s, "run-2", 1, "run-2-base", {"oracle": None, "judge": 0.71}, {"oracle": None, "judge": 0.5},
                   "alice")
        text = notebook.render(s, "run-2")
        assert "held-out judge 0.710 (r1, no oracle)" in text and "oracle 0" not in text
        assert notebook.entries(s, "run-2")[0]["heldout"] == {"metric": "judge", "value": 0.71,
                                                             "checkpoint": "run-2-r1", "heldout_metric": "oracle",
                                                             "split": "heldout"}  # evaluated before the split


def test_the_audit_trail_is_in_the_round_it_happened(store: Store) -> None:
    text = notebook.render(store, "run-1")
    before, round1, round2 = text.split("\n\n")[:3]
    assert before.startswith("before round 1") and "run started by tether" in before
    assert 'alice approved run-1-r1 (approval ap-' in round1 and '"answers are shorter and right"' in round1
    assert round1.index("  train:") < round1.index("alice approved") < round1.index("  activate [gate]")
    assert "RUN FAILED: RuntimeError: boom" in round2
    assert "RESUMED by tether (was failed: RuntimeError: boom)" in round2
    assert "CONFIG CHANGED by alice: controller.rounds: 3 -> 4" in round2
    assert "RUN PAUSED: adapter folder missing" in round2
    assert "ROLLBACK by bob: run-1-r1 -> run-1-base: round 1 regressed on refusals" in round2
    assert "RUN FAILED [tampering]: adapter sha256 mismatch" in round2
    order = [round2.index(s) for s in ("RUN FAILED: ", "RESUMED", "CONFIG CHANGED", "add_adversarial", "RUN PAUSED",
                                       "ROLLBACK", "[tampering]")]
    assert order == sorted(order)


def test_a_config_change_with_its_decision_is_shown_once(store: Store) -> None:
    changes = ["controller.stop.patience: 3 -> 4"]
    store.append_audit("alice", "run.config", "run-1", {"run": "run-1", "config_sha256": "e" * 64, "changes": changes})
    store.add_decision("run-1", 2, "config_change", "alice changed 1 setting(s) for the rounds to come: "
                       "controller.stop.patience: 3 -> 4", {"changes": changes}, actor="alice")
    text = notebook.render(store, "run-1")
    assert text.count("controller.stop.patience: 3 -> 4") == 1 and "config_change [alice]" in text
    assert text.count("CONFIG CHANGED") == 1  # the earlier change has no decision: shown from the audit log


def test_json_keeps_its_contract_and_places_every_event_once(store: Store) -> None:
    out = notebook.entries(store, "run-1")
    assert [e["action"] for e in out] == ["train", "activate", "add_adversarial"]
    for e in out:
        assert {"round", "action", "rationale", "signals", "actor", "at", "judge", "outcome"} <= e.keys()
    events = [ev["action"] for e in out for ev in e["events"]]
    assert events.count("checkpoint.rollback") == 1 and events.count("approval.signed") == 1
    assert events.count("run.failed") == 2 and "run.resume" in events and "run.config" in events
    assert out[0]["events"][0]["action"] in ("checkpoint.base", "run.start")  # before round 1: with the first
    assert out[0]["heldout"]["value"] == 0.4 and out[2]["heldout"]["checkpoint"] == "run-1-base"
    rollback = next(ev for e in out for ev in e["events"] if ev["action"] == "checkpoint.rollback")
    assert rollback["actor"] == "bob" and rollback["details"]["reason"] == "round 1 regressed on refusals"
    json.dumps(out)


def test_on_a_real_gated_run_the_notebook_shows_who_approved(gated_workspace: tuple[Path, str, str],
                                                            tmp_path: Path) -> None:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    with Store(home / "tether.db") as store:
        text = notebook.render(store, run_id)
        assert re.search(r"round 1  judge \S+  pairs \d+  held-out test oracle \d\.\d{3} \(base\)", text), text
        assert not re.search(r"\d \([<>]=? ?\d", text), text
        gate.decide(store, approval_id, "approve", signer("bob"), "fine by me", accept_not_met=True)
    logged = tether_cli(home, "log", run_id, check=True).stdout
    assert f'bob approved {run_id}-r1 (approval {approval_id}): "fine by me"' in logged
    entries = json.loads(tether_cli(home, "log", run_id, "--json", check=True).stdout)
    signed = [ev for e in entries for ev in e["events"] if ev["action"] == "approval.signed"]
    assert [ev["actor"] for ev in signed] == ["bob"] and signed[0]["details"]["decision"] == "approve"
