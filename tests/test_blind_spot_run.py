"""Past the ceiling, end to end on the real tiny world: the per-family monitors reach the store, the
blind-spot rule moves the run to the calculator judge, then to anchored pairs, and the last round trains
on pairs whose rejected side is the base model's; the lab notebook shows each step and its checks.
The thresholds are set so the rule fires on every round: this tests the wiring, not the thresholds."""

from __future__ import annotations

from pathlib import Path

from agent.config import load_config
from agent.run.runner import resume_run, start_run
from agent.run.workspace import Workspace
from conftest import signer, tether_cli, write_test_config
from guardrails import gate
from memory import Store
from tether_types import BY_FAMILY


def test_a_blind_family_switches_the_judge_then_the_pair_strategy(workspace_home: Path) -> None:
    model = Path(load_config(workspace_home / "config.yaml").model.base)
    write_test_config(
        workspace_home, model,
        prompts={"per_round": 12, "heldout": 27},  # 27: enough for the default invariants' targets
        judge={"name": "rules", "pool": [{"name": "calculator"}]},
        pairs={"pool": [{"name": "anchored"}]},
        controller={"rounds": 3, "interventions": ["switch_judge", "switch_pairs"],
                    "blind_spot": {"max_family_tie_rate": 0.0, "min_family_spread": 1.0, "min_family_prompts": 1,
                                   "patience": 1}},
    )
    ws = Workspace(workspace_home)
    store = Store(ws.db_path)
    outcome = start_run(ws, store, load_config(ws.config_path), say=lambda _m: None, wait=False, progress=False)
    while outcome.state == "paused":
        gate.decide(store, outcome.approval_id, "approve", signer("bob"), None, accept_not_met=True)
        outcome = resume_run(ws, store, outcome.run_id, say=lambda _m: None, wait=False, progress=False)
    run_id = outcome.run_id
    rounds = {r.round: r for r in store.rounds(run_id)}
    assert [rounds[n].action for n in (1, 2, 3)] == ["switch_judge", "switch_pairs", "train"]
    assert [rounds[n].judge["label"] for n in (1, 2, 3)] == ["rules", "calculator", "calculator"]
    assert rounds[2].outcome == "pairs_switched"
    assert set(rounds[1].monitors[BY_FAMILY]) == {"arithmetic", "howto", "harmful"}
    assert "family_score_spread_min" in rounds[1].monitors

    decisions = [d for d in store.decisions(run_id) if d.actor == "controller"]
    first, second, third = decisions[:3]
    assert first.signals["blind_spot"]["family"] and first.signals["switch"]["to"] == "calculator"
    assert first.signals["pairs_spec"] == {"name": "best_worst", "settings": {}}
    assert second.signals["pairs_switch"]["from"] == "best_worst" and second.signals["pairs_switch"]["to"] == "anchored"
    assert third.signals["pairs_spec"]["name"] == "anchored" and "nothing to switch to" in third.signals["warnings"][0]
    assert any(c["signal"].startswith("family_score_spread[") and c["fired"] for c in third.signals["checks"])

    # Round 3 trained on anchored pairs: each rejected answer is one of the base model's round-0 samples.
    pairs = store.pairs(run_id, 3)
    assert pairs and all(store.get_sample(p.rejected_sample_id).round == 0 for p in pairs)
    assert {store.get_sample(p.rejected_sample_id).checkpoint_id for p in pairs} == {f"{run_id}-base"}
    assert store.get_checkpoint(f"{run_id}-r3") is not None

    log = tether_cli(workspace_home, "log", run_id, "-v", check=True).stdout
    assert "blind_spot.max_family_tie_rate" in log and "pairs_switched" in log and "switch_pairs" in log
