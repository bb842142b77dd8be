"""Kill anywhere, lose nothing: SIGKILL inside every graph node, before its first store write and after
its last, then resume; the finished run holds no duplicated round, sample, judgment, pair, checkpoint,
decision or audit entry, and its audit chain is intact.

Each kill runs in a process forked from a forkserver that imported tether once (a kill costs a fork,
not a Python start-up); the child reads TETHER_FAULT (naming the node and point, honoured under
TETHER_TEST_FAULTS=1) as `tether resume` does, runs the same `resume_run`, and dies by SIGKILL there.
The kills are chained: each resume carries the next fault, so one run passes every point.
tests/test_faults.py kills `tether` itself, and checks that the fault needs the test switch.
A SIGTERM delivered inside a weakref callback after each node (`<node>:term`) must still end the run there.
"""

from __future__ import annotations

import multiprocessing
import re
import signal
from collections import Counter
from pathlib import Path

import pytest

from conftest import init_workspace, serve_chat, signer, write_test_config
from guardrails import audit, gate
from memory import Store

ROUND_NODES = ("plan", "prompts", "sample", "judge", "pairs", "monitor", "decide")
CANDIDATE_NODES = ("train_candidate", "evaluate", "check_invariants", "approval_gate")
INTERVENTIONS = ("switch_judge", "regenerate_prompts", "add_adversarial", "propose_amendment")
POINTS = ("before", "after")
SMALL = {"generation": {"samples_per_prompt": 2, "max_new_tokens": 16}, "prompts": {"per_round": 6, "heldout": 27},
         "evaluation": {"max_new_tokens": 16}}


def _child(home: str, run_id: str | None, fault: str | None) -> None:
    from agent.config import load_config
    from agent.run import faults
    from agent.run.graph import NODES
    from agent.run.runner import resume_run, start_run
    from agent.run.workspace import Workspace

    environ = {faults.FAULT_ENV: fault or "", faults.SWITCH_ENV: "1"}
    ws = Workspace(Path(home))
    store = Store(ws.db_path)
    quiet = {"say": lambda _m: None, "wait": False, "progress": False,
             "fault": faults.from_env(NODES, print, environ)}
    if run_id is None:
        start_run(ws, store, load_config(ws.config_path), **quiet)
    else:
        resume_run(ws, store, run_id, **quiet)


@pytest.fixture(scope="module")
def forked() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["agent.run.runner", "agent.config", "agent.run.graph", "memory"])
    return ctx


def _drive(forked, home: Path, run_id: str | None, fault: str | None) -> int | None:
    proc = forked.Process(target=_child, args=(str(home), run_id, fault))
    proc.start()
    proc.join(timeout=600)
    return proc.exitcode


def _run_id(home: Path) -> str:
    return Store(home / "tether.db").list_runs()[0].id


def _kill_chain(forked, home: Path, run_id: str, points: list[tuple[str, str]]) -> list[str]:
    """Resume with each fault in turn; every one must kill the process. Returns what was killed."""
    killed = []
    for node, point in points:
        code = _drive(forked, home, run_id, f"{node}:{point}")
        assert code == -signal.SIGKILL, f"{node}:{point} was not reached (exit {code})"
        killed.append(f"{node}:{point}")
    return killed


def _no_duplicates(store: Store, run_id: str) -> None:
    samples = store.samples(run_id, None)
    keys = Counter((s.round, s.split, s.checkpoint_id, s.prompt_id, s.sample_index) for s in samples)
    assert [k for k, n in keys.items() if n > 1] == []
    judged = Counter(j.sample_id for j in store.judgments(run_id, None))
    assert [k for k, n in judged.items() if n > 1] == []
    pairs = Counter((p.round, p.prompt_id) for p in store.pairs(run_id, None))
    assert [k for k, n in pairs.items() if n > 1] == []
    decisions = Counter((d.round, d.action, d.actor, d.signals.get("round")) for d in store.decisions(run_id))
    assert [k for k, n in decisions.items() if n > 1] == []
    once = ("run.start", "checkpoint.base", "checkpoint.train", "invariants.check", "approval.request",
            "checkpoint.activate", "checkpoint.discard", "constitution.propose")
    entries = Counter((e.action, e.subject) for e in store.audit_entries() if e.action in once)
    assert [k for k, n in entries.items() if n > 1] == []
    assert audit.verify(store).ok


def test_kill_at_every_point_of_two_trained_rounds_loses_nothing(forked, tmp_path: Path,
                                                                 tiny_world_model_dir: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 2}, **SMALL)
    assert _drive(forked, home, None, "plan:before") == -signal.SIGKILL
    run_id = _run_id(home)
    store = Store(home / "tether.db")
    first = [(n, p) for n in (*ROUND_NODES, *CANDIDATE_NODES) for p in POINTS][1:]
    killed = ["plan:before", *_kill_chain(forked, home, run_id, first[:-1])]  # all but approval_gate:after
    assert _drive(forked, home, run_id, None) == 0  # reaches the gate and pauses
    gate.decide(store, store.approvals(status="pending")[0].id, "approve", signer("alice"), "kill test",
                accept_not_met=True)
    killed += _kill_chain(forked, home, run_id, [("approval_gate", "after"), ("commit", "before"),
                                                 ("commit", "after")])
    assert _drive(forked, home, run_id, None) == 0  # round 2, paused at its gate
    gate.decide(store, store.approvals(status="pending")[0].id, "reject", signer("bob"), "kill test")
    killed += _kill_chain(forked, home, run_id, [("discard", "before"), ("discard", "after")])
    assert _drive(forked, home, run_id, None) == 0
    run = store.get_run(run_id)
    assert run.state == "stopped" and run.active_checkpoint == f"{run_id}-r1"
    assert [d.action for d in store.decisions(run_id)] == ["train", "activate", "train", "discard_candidate", "stop"]
    assert {c.id: c.status for c in store.checkpoints(run_id)} == {
        f"{run_id}-base": "base", f"{run_id}-r1": "approved", f"{run_id}-r2": "rejected"}
    assert len(store.samples(run_id, 1, split="train")) == 6 * 2 and len(store.judgments(run_id, 1)) == 6 * 2
    _no_duplicates(store, run_id)
    assert len(killed) == 2 * len((*ROUND_NODES, *CANDIDATE_NODES, "commit", "discard"))


def _advice_by_round(prompt: str, _max_tokens: int) -> str:
    """A scripted advisor: regenerate in round 2, a curriculum in round 3, an amendment in round 4."""
    found = re.search(r"Round (\d+) of", prompt)
    action = {2: "regenerate_prompts", 3: "add_adversarial", 4: "propose_amendment"}.get(
        int(found.group(1)) if found else 0, "train")
    return f"Action: {action}\nReason: scripted for the kill test"


def test_kill_at_every_point_of_each_intervention_loses_nothing(forked, tmp_path: Path,
                                                                tiny_world_model_dir: Path) -> None:
    server, url = serve_chat(_advice_by_round)
    try:
        home = tmp_path / "ws"
        init_workspace(home)
        write_test_config(
            home, tiny_world_model_dir, generation=SMALL["generation"], evaluation=SMALL["evaluation"],
            judge={"name": "length_biased", "pool": [{"name": "rules"}]},
            controller={"rounds": 4, "max_interventions_in_a_row": 4,
                        "advisor": {"model": "scripted", "base_url": url, "timeout": 10.0}},
            # The run goes on past its amendment, so propose_amendment's `after` point is reached (with the
            # hold, it pauses there as a candidate does at the gate: tests/test_interventions.py).
            approvals={"hold_for_amendment": False},
            prompts={**SMALL["prompts"], "regenerate": {"count": 3, "candidates": 8},
                     "adversarial": {"count": 3}})
        assert _drive(forked, home, None, "switch_judge:before") == -signal.SIGKILL
        run_id = _run_id(home)
        _kill_chain(forked, home, run_id, [("switch_judge", "after"),
                                           *[(n, p) for n in INTERVENTIONS[1:] for p in POINTS]])
        assert _drive(forked, home, run_id, None) == 0
    finally:
        server.shutdown()
    store = Store(home / "tether.db")
    assert [d.action for d in store.decisions(run_id) if d.actor == "controller"][:4] == list(INTERVENTIONS)
    outcomes = [r.outcome for r in store.rounds(run_id)]
    assert outcomes[:4] == ["judge_switched", "prompts_regenerated", "curriculum_added", "amendment_proposed"]
    run_prompts = Counter(p.id for p in store.run_prompts(run_id))
    assert run_prompts and max(run_prompts.values()) == 1
    assert len([a for a in store.approvals() if a.kind == "constitution" and a.run_id == run_id]) == 1
    _no_duplicates(store, run_id)


def test_a_sigterm_swallowed_inside_any_node_still_ends_the_run_there(forked, tmp_path: Path,
                                                                    tiny_world_model_dir: Path) -> None:
    """SIGTERM after each node's last write, delivered while a weakref callback runs (where the handler's
    Terminated is only printed, as seen mid-run): the run ends terminated at that node, not at its gate, and
    the resumed run loses nothing."""
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 1}, **SMALL)
    nodes = (*ROUND_NODES, *CANDIDATE_NODES[:-1])  # approval_gate pauses the run before its end
    assert _drive(forked, home, None, f"{nodes[0]}:term") == 1
    run_id = _run_id(home)
    store = Store(home / "tether.db")
    for node in nodes[1:]:
        run = store.get_run(run_id)
        assert run.state == "failed" and "terminated by SIGTERM" in (run.error or ""), run
        assert _drive(forked, home, run_id, f"{node}:term") == 1, f"{node}:term did not end the run"
    assert store.get_run(run_id).state == "failed"
    assert _drive(forked, home, run_id, None) == 0  # reaches the gate and pauses
    assert store.get_run(run_id).state == "paused" and len(store.approvals(status="pending")) == 1
    assert len(store.samples(run_id, 1, split="train")) == 6 * 2
    _no_duplicates(store, run_id)
