"""The learned controller (issue 22): decision outcomes measured on the validation split, a policy fitted from
decision histories written through the store's API, explained, adopted only by a signed approval, and never
leaving the rules' envelope whatever features it is fed. No model is needed here: the real run is in
test_learned_run.py."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import ControllerConfig, load_config
from agent.controller.learned import (
    FEATURES,
    Learner,
    PolicyFile,
    PolicyFileError,
    load_policy,
    parse_policy,
    predict,
)
from agent.controller.policy import Advice, ControllerInput, RoundSignals, decide
from agent.run import outcomes
from agent.run.learned import adopted_learner
from conftest import init_workspace, raw_db
from guardrails import controller_policy
from guardrails.errors import GateError, TamperError
from memory import Run, Store
from tether_types import MonitorKey

K = MonitorKey
runner = CliRunner()


# -- synthetic decision histories, written as the decide node writes them ---------------------------------------

def _history(store: Store, run_id: str, actions: list[str], seed: int) -> None:
    """A finished run whose decisions took `actions` on rounds 1..n, then the stop after the budget; train raises
    the validation score more when margin_mean is high, regenerate_prompts when prompt_reuse is high."""
    rng = random.Random(seed)
    n = len(actions)
    store.create_run(Run(id=run_id, config={}, config_sha256="c" * 64, seed=seed, rounds_budget=n,
                         constitution_version=1, invariants={}, invariants_sha256="i" * 64))
    curve: list[tuple[int, float]] = []
    score = 0.5
    for r, action in enumerate([*actions, "stop"], start=1):
        margin, reuse = rng.random(), rng.random()
        if r <= n:
            store.upsert_round(run_id, r, n_samples=64, n_pairs=16, action=action,
                               monitors={"margin_mean": margin, "prompt_reuse": reuse,
                                         "base_logp_mean": -2.0 - 0.1 * r})
        signals = {"round": r, "budget": n, "pairs": 16, "monitor.margin_mean": margin, "monitor.prompt_reuse": reuse,
                   "heldout_curve": {"split": "validation", "metric": "oracle", "points": [list(p) for p in curve]}}
        decision = store.add_decision(run_id, min(r, n), action, "synthetic", signals)
        outcomes.record(store, decision, tuple(curve), 1, "oracle")
        if r <= n:  # the round's evaluation, read by the next decision
            score += 0.1 * margin if action == "train" else 0.05 * reuse - 0.02
            curve = curve or [(0, 0.5)]
            curve.append((r, score))


def test_outcomes_are_pending_until_measured_and_never_zero(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    store.create_run(Run(id="r", config={}, config_sha256="c" * 64, seed=0, rounds_budget=3, constitution_version=1,
                         invariants={}, invariants_sha256="i" * 64))
    store.upsert_round("r", 1, n_samples=10, outcome="approved", monitors={"base_logp_mean": -2.0})
    first = store.add_decision("r", 1, "train", "x", {"round": 1})
    outcomes.record(store, first, (), 1, "oracle")
    [o] = store.outcomes("r")
    assert o.status == "pending" and o.outcome["heldout_change"] is None and "round 1" in o.outcome["why"]["samples"]
    store.upsert_round("r", 2, n_samples=12, outcome="failed_invariants", monitors={"base_logp_mean": -2.5})
    second = store.add_decision("r", 2, "train", "x", {"round": 2})
    outcomes.record(store, second, ((0, 0.4), (1, 0.55)), 1, "oracle")
    got = {o.decision_id: o for o in store.outcomes("r")}
    measured = got[first.id].outcome
    assert got[first.id].status == "measured" and measured["split"] == "validation"
    assert measured["heldout_change"] == pytest.approx(0.15) and measured["samples"] == 10
    assert measured["drift"] == pytest.approx(-0.5) and measured["invariant_failures"] == 0
    assert measured["cpu_seconds"] is not None and measured["cpu_seconds"] >= 0
    assert got[second.id].status == "pending"
    stop = store.add_decision("r", 2, "stop", "x", {"round": 3})
    outcomes.record(store, stop, ((0, 0.4), (1, 0.55), (2, 0.55)), 1, "oracle")
    got = {o.decision_id: o for o in store.outcomes("r")}
    assert got[second.id].outcome["invariant_failures"] == 1 and got[second.id].outcome["heldout_change"] == 0.0
    assert got[stop.id].status == "unmeasured" and got[stop.id].outcome["heldout_change"] is None



def test_a_window_past_the_budget_is_cut_at_it(tmp_path: Path) -> None:
    """k=2 on a 3-round run: round 2's window is rounds 2-3, and round 3's is round 3 alone (the run ends), both
    measured by the stop after the budget; an intervention on the last round measures 0, what it did."""
    store = Store(tmp_path / "t.db")
    store.create_run(Run(id="r", config={}, config_sha256="c" * 64, seed=0, rounds_budget=3, constitution_version=1,
                         invariants={}, invariants_sha256="i" * 64))
    curve: list[tuple[int, float]] = [(0, 0.4)]
    decided = []
    for r, action, after in [(1, "train", 0.5), (2, "train", 0.6), (3, "regenerate_prompts", 0.6)]:
        store.upsert_round("r", r, n_samples=10, outcome="approved" if action == "train" else None)
        decided.append(store.add_decision("r", r, action, "x", {"round": r}))
        outcomes.record(store, decided[-1], tuple(curve), 2, "oracle")
        curve.append((r, after))
    got = {o.decision_id: o for o in store.outcomes("r")}
    assert got[decided[2].id].status == "pending"  # its window (round 3) is not done until the stop
    stop = store.add_decision("r", 3, "stop", "x", {"round": 4})
    outcomes.record(store, stop, tuple(curve), 2, "oracle")
    got = {o.decision_id: o for o in store.outcomes("r")}
    first, second, last = (got[d.id].outcome for d in decided)
    assert first["rounds"] == [1, 2] and first["heldout_change"] == pytest.approx(0.2)
    assert second["rounds"] == [2, 3] and second["heldout_change"] == pytest.approx(0.1)
    assert last["rounds"] == [3, 3] and last["heldout_change"] == pytest.approx(0.0) and last["samples"] == 10
    assert {got[d.id].status for d in decided} == {"measured"}

@pytest.fixture()
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    init_workspace(home)
    with Store(home / "tether.db") as store:
        _history(store, "hist-a", ["train", "regenerate_prompts"] * 4, seed=1)
    with Store(tmp_path / "other.db") as other:
        _history(other, "hist-b", ["regenerate_prompts", "train"] * 4, seed=2)
    return home


def _cli(home: Path, *args: str) -> object:
    return runner.invoke(app, ["--home", str(home), *args])


def test_fit_show_propose_adopt_and_the_forgeries_refused(home: Path, tmp_path: Path) -> None:
    log = _cli(home, "log", "hist-a", "--json")
    entries = json.loads(log.stdout)  # type: ignore[attr-defined]
    assert [e["decision_outcome"]["status"] for e in entries] == ["measured"] * 8 + ["unmeasured"]

    out = tmp_path / "policy.json"
    fit = _cli(home, "controller", "fit", "--runs", "hist-a", "--runs", "hist-b", "--from-db",
               str(tmp_path / "other.db"), "--out", str(out), "--json")
    assert fit.exit_code == 0, fit.output  # type: ignore[attr-defined]
    doc = json.loads(fit.stdout)  # type: ignore[attr-defined]
    assert doc["decisions"] == 16 and doc["actions"] == {"regenerate_prompts": 8, "train": 8}
    policy, sha = load_policy(out)
    assert sha == doc["sha256"] and [r.source for r in policy.fitted_on] == ["workspace", str(tmp_path / "other.db")]
    assert _cli(home, "controller", "fit", "--runs", "nope", "--out", str(tmp_path / "x.json")).exit_code == 2  # type: ignore[attr-defined]

    png = tmp_path / "policy.png"
    show = _cli(home, "controller", "show", str(out), "--png", str(png))
    assert show.exit_code == 0 and png.stat().st_size > 1000, show.output  # type: ignore[attr-defined]
    assert "train:" in show.stdout and "monitor.margin_mean" in show.stdout  # type: ignore[attr-defined]

    config = yaml.safe_load((home / "config.yaml").read_text())
    config["controller"].update({"policy": "learned", "policy_file": str(out)})
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    cfg = load_config(home / "config.yaml").controller
    with Store(home / "tether.db") as store:
        with pytest.raises(GateError, match="tether controller propose"):
            adopted_learner(store, cfg, 0)  # a file nobody approved
        # The attack: a workspace writer inserts an approved row for the file's digest.
        raw = raw_db(home)
        raw.execute("INSERT INTO approvals (id, kind, subject, subject_sha256, status, created_at, summary, payload) "
                    "VALUES ('forged', 'controller', 'c', ?, 'approved', 'now', 's', ?)",
                    (sha, json.dumps({"content": out.read_text(), "proposed_by": "mallory"})))
        raw.close()
        with pytest.raises(TamperError):
            adopted_learner(store, cfg, 0)
        raw = raw_db(home)
        raw.execute("DELETE FROM approvals WHERE id = 'forged'")
        raw.close()

    proposed = _cli(home, "controller", "propose", str(out), "--by", "alice")
    assert proposed.exit_code == 0, proposed.output  # type: ignore[attr-defined]
    [pending] = json.loads(_cli(home, "approvals", "--json").stdout)  # type: ignore[attr-defined]
    assert pending["kind"] == "controller"
    view = json.loads(_cli(home, "show", pending["id"], "--json").stdout)  # type: ignore[attr-defined]
    assert view["policy"]["sha256"] == sha and set(view["policy"]["actions"]) == {"train", "regenerate_prompts"}
    assert _cli(home, "approve", pending["id"], "--by", "alice").exit_code != 0  # type: ignore[attr-defined]
    approved = _cli(home, "approve", pending["id"], "--by", "bob")
    assert approved.exit_code == 0 and "controller.policy: learned" in approved.output, approved.output  # type: ignore[attr-defined]
    with Store(home / "tether.db") as store:
        approval = store.get_approval(pending["id"])
        assert approval is not None and approval.status == "approved"
        with pytest.raises(GateError, match="already approved"):
            controller_policy.propose(store, out.read_text(), "again", "carol")
        learner = adopted_learner(store, cfg, 0)
        assert learner is not None and learner.sha256 == sha
        assert any(e.action == "controller.adopt" for e in store.audit_entries(subject=approval.id))
        # A file swapped for another after adoption (here: one byte more) is not the adopted policy.
        out.write_bytes(out.read_bytes() + b" ")
        with pytest.raises(GateError):
            adopted_learner(store, cfg, 0)


def test_the_config_names_one_chooser() -> None:
    for bad in ({"policy": "learned"}, {"policy_file": "p.json"},
                {"policy": "learned", "policy_file": "p.json", "advisor": {"model": "m"}}, {"explore": 0.9}):
        with pytest.raises(ValueError):
            ControllerConfig(**bad)
    assert ControllerConfig(policy="learned", policy_file="p.json").explore == 0.1


def test_a_policy_file_is_untrusted_input() -> None:
    model = {"coef": [0.5], "intercept": 0.0, "n": 3, "offset": [0.0], "cov": [[0.25]], "noise_var": 0.01}
    good = {"format": "tether.controller-policy", "version": 2, "target": "validation_heldout_change",
            "metric": "oracle", "k": 1, "features": ["pairs"], "medians": [1.0], "means": [1.0], "scales": [1.0],
            "actions": {"train": model}, "fitted_on": [], "fitted_at": "now", "sklearn": "1"}
    assert parse_policy(json.dumps(good).encode(), "f").actions["train"].n == 3
    bad = [json.dumps(good).replace("0.5", "NaN"), json.dumps({**good, "scales": [0.0]}),
           json.dumps({**good, "version": 1}),  # plain ridges, no uncertainty: refit
           json.dumps({**good, "actions": {"train": {**model, "cov": [[0.25, 0.0]]}}}),
           json.dumps({**good, "actions": {"train": {**model, "noise_var": -1.0}}}),
           json.dumps({**good, "actions": {"train": {k: v for k, v in model.items() if k != "cov"}}}),
           json.dumps({**good, "actions": {"stop": good["actions"]["train"]}}),
           json.dumps({**good, "features": ["pairs", "x"]}), json.dumps({**good, "medians": [1.0, 2.0]}),
           json.dumps({**good, "extra": 1}), "\x80not json"]
    for text in bad:
        with pytest.raises(PolicyFileError):
            parse_policy(text.encode("utf-8", "surrogateescape"), "f")


# -- the envelope: adversarial features never take the learned policy outside what the rules permit ------------

CFG = ControllerConfig(rounds=20)
EXTREMES = (math.nan, math.inf, -math.inf, 1e12, -1e12, 0.0, 1.0, None)  # None: missing


def _random_input(rng: random.Random) -> ControllerInput:
    monitors: dict[K, float] = {}
    for key in K:
        if not key.value.startswith("heldout"):
            value = rng.choice(EXTREMES) if rng.random() < 0.7 else rng.random()
            if value is not None:
                monitors[key] = value
    acts = ["train", "regenerate_prompts", "add_adversarial", "switch_judge", "skip", "propose_amendment"]
    past = tuple(RoundSignals(round=i, pairs=20, monitors=monitors, action=rng.choice(acts),
                              outcome=rng.choice(["approved", "rejected", "failed_invariants", None]))
                 for i in range(1, rng.randint(1, 8)))
    now = len(past) + 1
    heldout = tuple((i, rng.choice([rng.random(), math.nan, 1e9])) for i in range(rng.randint(0, now)))
    return ControllerInput(now=RoundSignals(round=now, pairs=rng.choice([0, 1, 16, 10**6]), monitors=monitors,
                                            judge="j0"),
                           budget=rng.choice([now, now + 5]), past=past, heldout=heldout,
                           next_judge=rng.choice([None, "rules"]), failures=rng.choice([0, 5]),
                           amendment=rng.choice([None, "draft"]))


def _learner(rng: random.Random) -> Learner:
    """A policy with wild weights for every action a controller knows, stop and skip aside."""
    actions = ["train", "regenerate_prompts", "add_adversarial", "switch_judge", "switch_pairs", "propose_amendment"]
    n = len(FEATURES)
    doc = {"format": "tether.controller-policy", "version": 2, "target": "validation_heldout_change",
           "metric": "oracle", "k": 1, "features": list(FEATURES), "medians": [0.0] * n,
           "means": [0.0] * n, "scales": [1e-9] * n,
           "actions": {a: {"coef": [rng.uniform(-1e6, 1e6) for _ in FEATURES], "intercept": rng.uniform(-1, 1),
                           "n": 2, "offset": [rng.uniform(-1e6, 1e6) for _ in FEATURES],
                           "cov": [[rng.uniform(-1e6, 1e6) for _ in FEATURES] for _ in FEATURES],
                           "noise_var": rng.choice([0.0, 1e6])} for a in actions},
           "fitted_on": [], "fitted_at": "now", "sklearn": "1"}
    return Learner(parse_policy(json.dumps(doc).encode(), "wild"), "f" * 64, rng.choice([0.0, 0.5]), rng.randint(0, 9),
                   min_decisions=1, min_gain=0.0, confidence=rng.choice([0.5, 0.9]))


def test_adversarial_features_never_leave_the_envelope() -> None:
    rng = random.Random(22)
    every = ["train", "skip", "stop", "regenerate_prompts", "add_adversarial", "switch_judge", "switch_pairs",
             "propose_amendment"]
    chose_otherwise = 0
    for _ in range(400):
        inp = _random_input(rng)
        rules = decide(inp, CFG)
        learned = decide(replace(inp, learner=_learner(rng)), CFG)
        # What the rules permit, found without the learned policy: what an advisor could get taken.
        probed = {a: decide(replace(inp, advice=Advice(a, "probe")), CFG).action for a in every}
        envelope = {rules.action} | {a for a, taken in probed.items() if taken == a}
        assert learned.action in envelope, (learned.action, envelope, learned.rationale)
        if rules.action in ("stop", "skip", "switch_judge") and "learned" not in rules.signals:
            assert learned.action == rules.action, (rules.rationale, learned.rationale)
        info = learned.signals.get("learned")
        if info is not None:
            assert learned.action == info["action"] or info.get("overruled")
            assert set(info["predicted"]) == set(info["permitted"]) and len(info["version"]) == 64
            chose_otherwise += learned.action != rules.action
    assert chose_otherwise > 0  # the policy did choose, inside the envelope, and not just echo the rules


def _flat_policy(values: dict[str, tuple[float, int]], noise_var: dict[str, float] | None = None) -> PolicyFile:
    """A policy that predicts a constant per action: {action: (predicted change, decisions fitted on)}, each as
    uncertain as its `noise_var` over its decisions makes it (default: certain)."""
    n = len(FEATURES)
    doc = {"format": "tether.controller-policy", "version": 2, "target": "validation_heldout_change",
           "metric": "oracle", "k": 1, "features": list(FEATURES), "medians": [0.0] * n,
           "means": [0.0] * n, "scales": [1.0] * n,
           "actions": {a: {"coef": [0.0] * n, "intercept": v, "n": k, "offset": [0.0] * n,
                           "cov": [[0.0] * n for _ in range(n)], "noise_var": (noise_var or {}).get(a, 0.0)}
                       for a, (v, k) in values.items()},
           "fitted_on": [], "fitted_at": "now", "sklearn": "1"}
    return parse_policy(json.dumps(doc).encode(), "flat")


def test_the_policy_leaves_the_rules_pick_only_on_trusted_predicted_gains() -> None:
    """SPIBB's baseline bootstrapping: a thinly fitted action never beats the rules' pick, nor a small gain."""
    permitted = ["train", "switch_pairs", "add_adversarial"]

    def pick(values: dict[str, tuple[float, int]], baseline: str = "train") -> str | None:
        learner = Learner(_flat_policy(values), "f" * 64, explore=0.0, seed=0, min_decisions=10, min_gain=0.01,
                          confidence=0.9)
        choice = learner.choose({}, [], permitted, 3, baseline)
        assert not choice.explored and set(choice.predicted) == set(permitted)
        return choice.action

    # switch_pairs predicts the most but was fitted on 3 decisions: the best trusted action wins.
    assert pick({"train": (0.0, 50), "switch_pairs": (0.3, 3), "add_adversarial": (0.05, 40)}) == "add_adversarial"
    # 0.005 above the rules' pick is under min_gain: the rules' pick stands.
    assert pick({"train": (0.0, 50), "switch_pairs": (0.3, 3), "add_adversarial": (0.005, 40)}) == "train"
    # The rules' pick is kept even when it is not train, and even when it is below a trusted action by < min_gain.
    assert pick({"train": (0.02, 50), "switch_pairs": (0.015, 30)}, baseline="switch_pairs") == "switch_pairs"
    assert pick({"train": (0.05, 50), "switch_pairs": (0.015, 30)}, baseline="switch_pairs") == "train"
    # The rules' pick has no model, or too few decisions: its value cannot be compared, so it is kept (the
    # suite's over-cautious fold: no other world ever proposed an amendment, and the policy overrode it).
    assert pick({"train": (0.1, 50), "switch_pairs": (0.3, 30)}, baseline="add_adversarial") == "add_adversarial"
    assert pick({"train": (0.1, 50), "add_adversarial": (-0.3, 4)}, baseline="add_adversarial") == "add_adversarial"
    # Nothing trusted and the rules' pick not among the permitted: no choice (rules.py logs it as overruled).
    assert pick({"train": (0.1, 2), "switch_pairs": (0.3, 3)}, baseline="stop") is None


def test_an_uncertain_gain_does_not_move_the_policy_off_the_rules_pick() -> None:
    """The same predicted gain (0.1 over the rules' pick) is taken when the fit is sure of it and not when it is
    not: at confidence 0.9 the lower bound must still clear min_gain."""
    permitted = ["train", "add_adversarial"]
    values = {"train": (0.0, 40), "add_adversarial": (0.1, 40)}

    def pick(noise_var: float, confidence: float) -> tuple[str | None, float | None]:
        learner = Learner(_flat_policy(values, {"add_adversarial": noise_var, "train": noise_var}), "f" * 64,
                          explore=0.0, seed=0, min_decisions=10, min_gain=0.01, confidence=confidence)
        choice = learner.choose({}, [], permitted, 3, "train")
        return choice.action, choice.sd["add_adversarial"]

    assert pick(0.04, 0.9) == ("add_adversarial", pytest.approx(math.sqrt(0.04 / 40)))  # sd 0.03: bound 0.046
    action, sd = pick(1.0, 0.9)  # sd 0.16 each: the bound is far below 0
    assert action == "train" and sd == pytest.approx(math.sqrt(1.0 / 40))
    assert pick(1.0, 0.5)[0] == "add_adversarial"  # confidence 0.5: the predicted gain itself


def test_a_fitted_policy_is_less_sure_where_it_has_seen_less(home: Path, tmp_path: Path) -> None:
    """The Bayesian ridges' uncertainty is real: a feature value far from every fitted decision gets a wider sd
    than one at the fitted medians."""
    out = tmp_path / "p.json"
    assert _cli(home, "controller", "fit", "--runs", "hist-a", "--out", str(out)).exit_code == 0  # type: ignore[attr-defined]
    policy, _ = load_policy(out)
    at_median = predict(policy, [math.nan] * len(FEATURES))
    far = predict(policy, [policy.means[policy.features.index(f)] + 4 * policy.scales[policy.features.index(f)]
                           if f == "monitor.margin_mean" else math.nan for f in FEATURES])
    for action in policy.actions:
        assert far[action][1] > at_median[action][1] > 0.0
