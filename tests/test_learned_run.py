"""A real 2-round run on the tiny model with `controller.policy: learned`: refused before its policy is adopted
(exit 2, nothing written), then run with it: each decision the soft rule reached logs the policy version, the
value predicted per permitted action and whether it explored; every decision gets its outcome; and the controller
(learned policy included) never reads the test split."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from test_learned_controller import _history
from test_validation_split import _WatchedStore
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import load_config
from agent.controller.learned import load_policy
from agent.run.runner import resume_run, start_run
from agent.run.workspace import Workspace
from conftest import signer
from guardrails import controller_policy, gate
from memory import Store

runner = CliRunner()


def test_a_real_run_with_a_learned_policy_stays_on_the_validation_split(workspace_home: Path) -> None:
    home = workspace_home
    with Store(home / "tether.db") as store:
        _history(store, "hist-a", ["train", "regenerate_prompts"] * 4, seed=1)
    policy_file = home / "controller-policy.json"
    fit = runner.invoke(app, ["--home", str(home), "controller", "fit", "--runs", "hist-a", "--out", str(policy_file)])
    assert fit.exit_code == 0, fit.output
    config = yaml.safe_load((home / "config.yaml").read_text())
    config["controller"].update({"policy": "learned", "policy_file": "controller-policy.json", "explore": 0.5})
    (home / "config.yaml").write_text(yaml.safe_dump(config))

    checked = runner.invoke(app, ["--home", str(home), "validate"])
    assert checked.exit_code == 2 and "tether controller propose" in checked.output, checked.output
    refused = runner.invoke(app, ["--home", str(home), "run"])
    assert refused.exit_code == 2 and "tether controller propose" in refused.output, refused.output
    with Store(home / "tether.db") as store:
        assert [r.id for r in store.list_runs()] == ["hist-a"]  # nothing was written
        approval = controller_policy.propose(store, policy_file.read_text(), "fitted", "alice")
        controller_policy.decide(store, approval.id, "approve", signer("bob"), None)
    _, sha = load_policy(policy_file)

    ws = Workspace(home)
    store = _WatchedStore(ws.db_path)
    say = lambda _m: None  # noqa: E731
    outcome = start_run(ws, store, load_config(ws.config_path), say=say, wait=False, progress=False)
    run_id = outcome.run_id
    while outcome.state == "paused":
        assert outcome.approval_id, outcome
        gate.decide(store, outcome.approval_id, "approve", signer("alice"), None, accept_not_met=True)
        outcome = resume_run(ws, store, run_id, say=say, wait=False, progress=False)
    assert outcome.state == "stopped", outcome
    assert not [r for r in store.reads if r[0] == "test"], store.reads

    log = runner.invoke(app, ["--home", str(home), "log", run_id, "--json"])
    entries = [e for e in json.loads(log.stdout) if e["actor"] == "controller"]
    chose = [e["signals"]["learned"] for e in entries if "learned" in e["signals"]]
    assert chose, [e["rationale"] for e in entries]
    for info in chose:
        assert info["version"] == sha and isinstance(info["explored"], bool)
        assert set(info["predicted"]) == set(info["permitted"]) and "train" in info["permitted"]
    statuses = [e["decision_outcome"]["status"] for e in entries]
    assert statuses[-1] == "unmeasured" and entries[-1]["action"] == "stop"
    for e in entries[:-1]:  # the budget's stop closes every window: each is cut at the budget
        measured = e["decision_outcome"]
        assert measured["status"] in ("measured", "unmeasured") and measured["split"] == "validation"
        assert measured["samples"] is not None and measured["samples"] > 0
        if measured["status"] == "unmeasured":
            assert measured["heldout_change"] is None and measured["why"]["heldout_change"]
