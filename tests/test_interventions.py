"""The controller's interventions end to end on the real tiny world: each a node of the graph, each
triggered by what the monitors saw, each leaving its trace in the store and the lab-notebook log."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import load_config
from agent.interventions.pool import judge_pool
from agent.run.runner import Outcome, resume_run, start_run
from agent.run.workspace import Workspace
from conftest import signer, tether_cli, write_test_config
from guardrails import gate
from guardrails.constitution import load_constitution, parse_constitution
from memory import Store
from tools.prompts.dedup import normalize
from tools.worlds.tiny import tiny_world


def _run_approving(home: Path, approve: bool = True) -> tuple[Store, Outcome]:
    """Start a run and approve every candidate it offers (as a reviewer would), to the end."""
    ws = Workspace(home)
    store = Store(ws.db_path)
    outcome = start_run(ws, store, load_config(ws.config_path), say=lambda _m: None, wait=False, progress=False)
    while outcome.state == "paused" and approve:
        gate.decide(store, outcome.approval_id, "approve", signer("bob"), None, accept_not_met=True)
        outcome = resume_run(ws, store, outcome.run_id, say=lambda _m: None, wait=False, progress=False)
    return store, outcome


def _model(home: Path) -> Path:
    return Path(load_config(home / "config.yaml").model.base)


def _actions(store: Store, run_id: str) -> dict[int, str | None]:
    return {r.round: r.action for r in store.rounds(run_id)}


def test_length_biased_judge_is_switched_within_two_rounds(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model(workspace_home),
                      judge={"name": "length_biased", "pool": [{"name": "rules"}]}, controller={"rounds": 3})
    store, outcome = _run_approving(workspace_home)
    run_id = outcome.run_id
    rounds = store.rounds(run_id)
    crossed = next(r.round for r in rounds if r.monitors and r.monitors["length_score_corr"] > 0.6)
    switched = next(r.round for r in rounds if r.action == "switch_judge")
    assert switched - crossed < 2
    assert store.get_round(run_id, switched).judge["name"] == "length_biased"
    assert store.get_round(run_id, switched + 1).judge["name"] == "rules"
    assert judge_pool(load_config(workspace_home / "config.yaml")).slot(store.rounds(run_id)) == 1
    assert store.get_checkpoint(f"{run_id}-r{switched}") is None  # the biased round was not trained on
    decision = next(d for d in store.decisions(run_id) if d.action == "switch_judge")
    assert decision.signals["switch"]["from"] == "length_biased" and decision.signals["switch"]["to"] == "rules"
    assert any(c["signal"] == "length_score_corr" and c["fired"] for c in decision.signals["checks"])

    log = tether_cli(workspace_home, "log", run_id, check=True).stdout
    assert f"round {switched}  judge length_biased" in log and f"round {switched + 1}  judge rules" in log
    assert "> 0.6 FIRED (controller.switch_judge.max_length_score_corr)" in log and "switch_judge" in log
    entries = json.loads(tether_cli(workspace_home, "log", run_id, "--json", check=True).stdout)
    assert {e["judge"] for e in entries if e["round"] == switched} == {"length_biased"}
    assert {"round", "action", "rationale", "signals", "at", "outcome"} <= entries[0].keys()
    tether_cli(workspace_home, "report", run_id, "--out", str(workspace_home / "report"), check=True)
    summary = json.loads((workspace_home / "report" / "summary.json").read_text())
    assert [r["judge"] for r in summary["rounds"]][switched - 1: switched + 1] == ["length_biased", "rules"]


def test_saturated_pool_leads_to_new_prompts_that_are_not_duplicates(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model(workspace_home),
                      prompts={"per_round": 8, "heldout": 27, "pool_size": 8,
                               "regenerate": {"count": 8, "candidates": 48}},
                      controller={"rounds": 3, "interventions": ["regenerate_prompts"]})
    store, outcome = _run_approving(workspace_home)
    run_id = outcome.run_id
    assert _actions(store, run_id)[2] == "regenerate_prompts"  # round 2 re-drew the whole pool
    assert store.get_round(run_id, 2).monitors["prompt_reuse"] == 1.0
    new = store.run_prompts(run_id, source="regenerated")
    assert new, "the writer produced no usable prompt"
    world = tiny_world(0)
    known = {normalize(p.text) for p in (*world.train, *world.heldout)}
    assert not {normalize(p.text) for p in new} & known
    assert len({normalize(p.text) for p in new}) == len(new)
    used_in_3 = {s.prompt_id for s in store.samples(run_id, 3, split="train")}
    assert used_in_3 & {p.id for p in new}, "the new prompts were not used by the next round"
    decision = next(d for d in store.decisions(run_id) if d.action == "prompts_regenerated")
    assert decision.signals["kept"] == len(new) and decision.signals["written"] == 48


def test_plateau_leads_to_an_adversarial_curriculum_aimed_at_recorded_failures(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model(workspace_home),
                      controller={"rounds": 3, "interventions": ["add_adversarial"],
                                  # every trained round counts as a plateau: the trigger fires at round 2
                                  "add_adversarial": {"plateau_rounds": 1, "min_gain": 1.0}})
    store, outcome = _run_approving(workspace_home)
    run_id = outcome.run_id
    assert _actions(store, run_id) == {1: "train", 2: "add_adversarial", 3: "train"}
    record = next(d for d in store.decisions(run_id) if d.action == "curriculum_added")
    failures = {f["prompt"] for f in record.signals["failures"]}
    made = store.run_prompts(run_id, source="adversarial")
    assert made and record.signals["level"] == 1
    for p in made:
        parents = p.meta["parent"] if isinstance(p.meta["parent"], list) else [p.meta["parent"]]
        assert set(parents) <= failures and p.meta["level"] == 1
    heldout = {p.id for p in tiny_world(0).heldout}
    assert not failures & heldout  # the curriculum never trains on held-out prompts
    assert {s.prompt_id for s in store.samples(run_id, 3, split="train")} & {p.id for p in made}


def test_agent_amendment_holds_the_run_until_a_reviewer_decides_then_is_used(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model(workspace_home),
                      prompts={"per_round": 32, "heldout": 27},
                      controller={"rounds": 2, "interventions": ["propose_amendment"],
                                  "propose_amendment": {"max_over_refusal": 0.0, "patience": 1}})
    store, outcome = _run_approving(workspace_home, approve=False)
    run_id = outcome.run_id
    proposal = next(a for a in store.approvals(run_id=run_id) if a.kind == "constitution")
    # The run waits on its own proposal (approvals.hold_for_amendment), not training on what it flagged.
    assert outcome.state == "paused" and outcome.approval_id == proposal.id
    assert _actions(store, run_id) == {1: "propose_amendment"}
    assert proposal.status == "pending" and proposal.payload["proposed_by"] == f"agent:{run_id}"
    assert store.get_run(run_id).constitution_version == 1  # nothing changed without a human
    by_agent = tether_cli(workspace_home, "approve", proposal.id, "--by", f"agent:{run_id}")
    assert by_agent.returncode == 1 and store.get_approval(proposal.id).status == "pending"  # nor by the agent
    ws = Workspace(workspace_home)
    again = resume_run(ws, store, run_id, say=lambda _m: None, wait=False, progress=False)
    assert again.state == "paused" and again.approval_id == proposal.id and 2 not in _actions(store, run_id)
    # The draft touches principles only; invariants are what they were.
    before = load_constitution(workspace_home / "constitution.yaml")
    drafted = parse_constitution(proposal.payload["content"], "draft")
    assert drafted.invariant_digests() == before.invariant_digests()
    assert proposal.payload["changes"] == ["edits principle 'helpful'"]

    tether_cli(workspace_home, "approve", proposal.id, "--by", "alice", check=True)
    resumed = resume_run(ws, store, run_id, say=lambda _m: None, wait=False, progress=False)
    assert resumed.state == "paused" and store.get_approval(resumed.approval_id).kind == "checkpoint"
    assert store.get_run(run_id).constitution_version == 2
    adopted = next(d for d in store.decisions(run_id) if d.action == "constitution")
    assert adopted.round == 2 and adopted.signals["approval"] == proposal.id
    # Round 2's over-refusal was sampled from the policy the old constitution taught: no stronger draft on it.
    assert _actions(store, run_id) == {1: "propose_amendment", 2: "train"}
    helpful = next(p for p in load_constitution(workspace_home / "constitution.yaml").principles if p.id == "helpful")
    assert helpful.weight == 1.0

    # An invariant-touching proposal is refused at once, whoever proposes it.
    touched = proposal.payload["content"].replace("max_rate: 0.25", "max_rate: 0.9")
    assert touched != proposal.payload["content"]
    (workspace_home / "weaker.yaml").write_text(touched)
    refused = tether_cli(workspace_home, "constitution", "propose", str(workspace_home / "weaker.yaml"),
                         "--by", f"agent:{run_id}")
    assert refused.returncode == 2 and "invariant" in refused.stderr


def test_without_the_hold_the_run_trains_on_while_its_proposal_waits(workspace_home: Path) -> None:
    write_test_config(workspace_home, _model(workspace_home),
                      prompts={"per_round": 32, "heldout": 27}, approvals={"hold_for_amendment": False},
                      controller={"rounds": 3, "interventions": ["propose_amendment"],
                                  "propose_amendment": {"max_over_refusal": 0.0, "patience": 1}})
    store, outcome = _run_approving(workspace_home, approve=False)
    assert outcome.state == "paused"  # round 2's candidate waits at the gate
    assert store.get_approval(outcome.approval_id).kind == "checkpoint"
    assert _actions(store, outcome.run_id) == {1: "propose_amendment", 2: "train"}  # no second draft while one waits
    assert store.get_run(outcome.run_id).constitution_version == 1
