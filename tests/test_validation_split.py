"""Validation apart from test (issue 19): the held-out prompts a run evaluates are split by the seed into a
validation split, the only one the controller reads, and a test split that is only reported.

The split itself (deterministic, disjoint, covering, family-balanced); what the controller reads of a
checkpoint's evaluations, for runs with the split and runs evaluated before it; and a real run on the tiny
model with an instrumented store: any read of test-split numbers or replies from inside the decide node, the
controller, an intervention or the monitor node fails the test, and every curve the decisions logged is the
validation one. `tether show` and the gate's summary name the test split.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import ConfigError, load_config, parse_config
from agent.run.nodes.decide import heldout_curve
from agent.run.nodes.monitor import _last_heldout
from agent.run.runner import resume_run, start_run
from agent.run.splits import controller_evaluation, evaluated_before_split, evaluation_sets, heldout_slice
from agent.run.workspace import Workspace
from conftest import signer
from guardrails import gate
from memory import Checkpoint, Run, Sample, Store
from memory.guarded import GuardedWrites
from tools.worlds import Prompt, TaskSet, validation_split
from tools.worlds.tiny import tiny_world

# -- the split ----------------------------------------------------------------------------------------


def _families(prompts: tuple[Prompt, ...] | list[Prompt]) -> Counter[str]:
    return Counter(p.family for p in prompts)


@pytest.mark.parametrize("n", [2, 3, 5, 27, 48, 180])
@pytest.mark.parametrize("fraction", [0.5, 0.3, 0.8])
def test_the_split_is_deterministic_disjoint_covering_and_family_balanced(world: TaskSet, n: int,
                                                                           fraction: float) -> None:
    held = heldout_slice(world, n)
    validation, test = validation_split(held, 0, fraction)
    assert validation_split(held, 0, fraction) == (validation, test)  # the same seed: the same split
    assert validation_split(list(reversed(held)), 0, fraction)[0] == tuple(reversed(validation))  # order-free
    assert not {p.id for p in validation} & {p.id for p in test}
    assert sorted(p.id for p in (*validation, *test)) == sorted(p.id for p in held)
    assert validation and test  # two prompts or more: neither side is empty
    assert abs(len(validation) - n * fraction) <= 1
    for family, size in _families(held).items():
        taken = _families(validation)[family]
        assert abs(taken - size * fraction) < 1.0 + 1e-9, (family, taken, size)
        if size >= 2:
            assert 1 <= taken <= size - 1


def test_the_seed_moves_the_split_and_the_fraction_is_checked(world: TaskSet) -> None:
    held = heldout_slice(world, 48)
    splits = {tuple(p.id for p in validation_split(held, seed, 0.5)[0]) for seed in range(5)}
    assert len(splits) == 5
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="validation fraction"):
            validation_split(held, 0, fraction)
    sets = evaluation_sets(world, 27, 3, 0.5)
    assert (sets.validation, sets.test) == validation_split(heldout_slice(world, 27), 3, 0.5)
    assert evaluation_sets(tiny_world(seed=3), 27, 3, 0.5) != evaluation_sets(tiny_world(seed=4), 27, 4, 0.5)


def test_the_config_knob_defaults_to_half_and_refuses_the_ends() -> None:
    assert parse_config({}, "c").evaluation.validation_fraction == 0.5
    assert parse_config({"evaluation": {"validation_fraction": 0.25}}, "c").evaluation.validation_fraction == 0.25
    for bad in (0, 1, 1.5):
        with pytest.raises(ConfigError, match="validation_fraction"):
            parse_config({"evaluation": {"validation_fraction": bad}}, "c")


# -- what the controller reads of the evaluations ----------------------------------------------------------


def _result(oracle: float, split: str | None) -> dict[str, Any]:
    return {"oracle": oracle, "judge": 0.5, "n": 9, **({"split": split} if split else {})}


def _store(tmp_path: Path, checkpoints: list[tuple[int, str, dict[str, Any]]]) -> SimpleNamespace:
    """A store holding one run with a base and the given (round, status, metrics) checkpoints; what the
    decide node's readers need of a RunContext."""
    store = Store(tmp_path / "tether.db")
    store.create_run(Run(id="run-1", config={}, config_sha256="c" * 64, seed=0, rounds_budget=3,
                         constitution_version=1, invariants={}, invariants_sha256="i" * 64))
    writes = GuardedWrites(store)
    writes.add_checkpoint(Checkpoint(id="run-1-base", run_id="run-1", round=0, status="base", path="base"))
    parent = "run-1-base"
    for round_no, status, metrics in checkpoints:
        writes.add_checkpoint(Checkpoint(id=f"run-1-r{round_no}", run_id="run-1", round=round_no, status=status,
                                         path=f"r{round_no}", sha256="a" * 64, parent=parent, metrics=metrics))
        parent = f"run-1-r{round_no}" if status == "approved" else parent
    return SimpleNamespace(store=store, run_id="run-1")


def _split_metrics(validation: tuple[float, float], test: tuple[float, float]) -> dict[str, Any]:
    return {"validation": {"candidate": _result(validation[0], "validation"), "active": _result(validation[1],
                                                                                                 "validation")},
            "eval": {"candidate": _result(test[0], "test"), "active": _result(test[1], "test")}}


def test_the_curve_and_the_monitors_read_validation_never_test(tmp_path: Path) -> None:
    ctx = _store(tmp_path, [(1, "approved", _split_metrics((0.4, 0.2), (0.9, 0.8))),
                            (2, "rejected", _split_metrics((0.3, 0.4), (0.1, 0.9)))])
    assert heldout_curve(ctx, "oracle") == ((0, 0.2), (1, 0.4), (2, 0.4))  # type: ignore[arg-type]
    assert _last_heldout(ctx, "run-1", 3) == {  # type: ignore[arg-type]
        "oracle_active": 0.4, "judge_active": 0.5, "oracle_candidate": 0.3, "judge_candidate": 0.5}
    assert not evaluated_before_split(ctx.store.checkpoints("run-1"))
    both = _split_metrics((0.4, 0.2), (0.9, 0.8))
    assert controller_evaluation(both) is both["validation"]


def test_a_run_evaluated_before_the_split_keeps_reading_its_one_heldout_set(tmp_path: Path) -> None:
    """An old run (its "eval" has no split, no "validation" beside it) is read as it always was: its curve is
    its one held-out set, and it keeps evaluating that set (RunContext.evaluation_sets gives None for it)."""
    old = {"eval": {"candidate": _result(0.5, None), "active": _result(0.25, None)}}
    ctx = _store(tmp_path, [(1, "approved", old)])
    checkpoints = ctx.store.checkpoints("run-1")
    assert evaluated_before_split(checkpoints)
    assert heldout_curve(ctx, "oracle") == ((0, 0.25), (1, 0.5))  # type: ignore[arg-type]
    assert controller_evaluation(checkpoints[-1].metrics) == old["eval"]
    assert controller_evaluation({}) is None and controller_evaluation(None) is None


def test_each_split_is_its_own_cached_evaluation_and_old_cache_keys_keep_their_meaning(world: TaskSet) -> None:
    import hashlib

    from agent.run.nodes.evaluate import _heldout_sha

    held = heldout_slice(world, 27)
    sets = evaluation_sets(world, 27, 0, 0.5)
    before = hashlib.sha256(json.dumps([[p.id for p in held], 40]).encode()).hexdigest()  # the key of old rows
    assert _heldout_sha(held, 40, None, "heldout") == before
    keys = {_heldout_sha(list(sets.of(s)), 40, None, s) for s in ("validation", "test")}
    assert len(keys) == 2 and before not in keys


# -- a real run: the controller never reads the test split -------------------------------------------------

# Where a read counts as the controller's: the decide node, the controller, every intervention, and the monitor
# node's held-out values. A guardrail on the way (e.g. verifying the active checkpoint's signed evaluation
# digest) reads for itself, and is not the controller reading.
_CONTROLLER_FILES = ("agent/run/nodes/decide.py", "agent/controller/", "agent/interventions/")
_MONITOR_FUNCTIONS = {"monitor", "_observe", "_last_heldout"}


def _module_path(filename: str) -> str:
    """`agent/run/nodes/decide.py` for a file of tether's agent or guardrails package, else the name as given."""
    name = filename.replace("\\", "/")
    for top in ("agent/", "guardrails/"):
        at = name.rfind("/" + top)
        if at >= 0:
            return name[at + 1:]
    return name


def _reader() -> str | None:
    """Who reads now: "controller", "guardrails" or None, by the innermost frame of either."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        rel = _module_path(frame.f_code.co_filename)
        if rel.startswith("guardrails/"):
            return "guardrails"
        if rel.startswith(_CONTROLLER_FILES) or (rel == "agent/run/nodes/monitor.py"
                                                  and frame.f_code.co_name in _MONITOR_FUNCTIONS):
            return "controller"
        frame = frame.f_back
    return None


class _Watched(dict):  # type: ignore[type-arg]
    """An evaluation that records who reads its contents."""

    def __init__(self, data: dict[str, Any], split: str, log: list[tuple[str, str]]) -> None:
        super().__init__(data)
        self._split, self._log = split, log

    def _seen(self) -> None:
        if _reader() == "controller":
            self._log.append((self._split, "evaluation"))

    def __getitem__(self, key: Any) -> Any:
        self._seen()
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._seen()
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._seen()
        return super().__contains__(key)

    def __iter__(self) -> Any:
        self._seen()
        return super().__iter__()

    def items(self) -> Any:
        self._seen()
        return super().items()

    def values(self) -> Any:
        self._seen()
        return super().values()


class _WatchedStore(Store):
    """The run's store, recording every read of a held-out evaluation or held-out replies by the controller:
    (split, what). The test split must never appear."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[tuple[str, str]] = []

    def _watch(self, ck: Checkpoint | None) -> Checkpoint | None:
        if ck is None or not ck.metrics:
            return ck
        from dataclasses import replace

        metrics = dict(ck.metrics)
        for key, split in (("eval", "test"), ("validation", "validation")):
            if isinstance(metrics.get(key), dict):
                metrics[key] = _Watched(metrics[key], split, self.reads)
        return replace(ck, metrics=metrics)

    def checkpoints(self, run_id: str | None = None) -> list[Checkpoint]:
        return [c for c in (self._watch(ck) for ck in super().checkpoints(run_id)) if c is not None]

    def get_checkpoint(self, checkpoint_id: str) -> Checkpoint | None:
        return self._watch(super().get_checkpoint(checkpoint_id))

    def samples(self, run_id: str, round: int | None, split: str | None = None,
                checkpoint_id: Any = ...) -> list[Sample]:
        found = super().samples(run_id, round, split, checkpoint_id)
        if _reader() == "controller":
            self.reads += [(s, "samples") for s in sorted({x.split for x in found} | ({split} if split else set()))
                           if s != "train"]
        return found

    def get_evaluation(self, checkpoint_id: str, heldout_sha256: str, judge: str) -> Any:
        found = super().get_evaluation(checkpoint_id, heldout_sha256, judge)
        if found is not None and _reader() == "controller":
            self.reads.append((str(found.details.get("split", "heldout")), "evaluations row"))
        return found


def _curve(checkpoints: list[Checkpoint], key: str) -> list[list[float]]:
    """The held-out curve as the decide node builds it, from one of the two evaluations."""
    curve: list[list[float]] = []
    for ck in checkpoints:
        evaluation = (ck.metrics or {}).get(key)
        if ck.round <= 0 or not evaluation:
            continue
        if not curve:
            curve.append([0, evaluation["active"]["oracle"]])
        curve.append([ck.round, evaluation["candidate" if ck.status == "approved" else "active"]["oracle"]])
    return curve


def test_a_real_run_never_lets_the_controller_read_the_test_split(workspace_home: Path) -> None:
    ws = Workspace(workspace_home)
    store = _WatchedStore(ws.db_path)
    say = lambda _m: None  # noqa: E731
    outcome = start_run(ws, store, load_config(ws.config_path), say=say, wait=False, progress=False)
    run_id = outcome.run_id
    for _ in range(2):  # approve round 1's and round 2's candidates; the budget then stops the run
        assert outcome.state == "paused" and outcome.approval_id, outcome
        gate.decide(store, outcome.approval_id, "approve", signer("alice"), None, accept_not_met=True)
        outcome = resume_run(ws, store, run_id, say=say, wait=False, progress=False)
    assert outcome.state == "stopped", outcome

    # The controller read validation numbers and replies, and never a test one.
    assert not [r for r in store.reads if r[0] == "test"], store.reads
    assert ("validation", "evaluation") in store.reads and ("validation", "samples") in store.reads

    plain = Store(ws.db_path)
    checkpoints = [ck for ck in plain.checkpoints(run_id) if ck.round > 0]
    assert [ck.status for ck in checkpoints] == ["approved", "approved"]
    held = heldout_slice(tiny_world(seed=0), 27)
    for ck in checkpoints:
        for side, checkpoint in (("candidate", ck.id), ("active", ck.parent)):
            validation, test = ck.metrics["validation"][side], ck.metrics["eval"][side]
            assert (validation["split"], test["split"]) == ("validation", "test")
            assert validation["n"] + test["n"] == 27
            # (a checkpoint evaluated before, as the candidate of an earlier round, is read from the cache)
            by_split = {split: {s.prompt_id for s in plain.samples(run_id, None, split=split, checkpoint_id=checkpoint)}
                        for split in ("validation", "test", "heldout")}
            assert not by_split["heldout"] and not by_split["validation"] & by_split["test"]
            assert by_split["validation"] | by_split["test"] == {p.id for p in held}
            assert (len(by_split["validation"]), len(by_split["test"])) == (validation["n"], test["n"])

    # Every decision logged the curve it read: the validation one, labelled so, never the test one.
    decisions = [d for d in plain.decisions(run_id) if d.actor == "controller"]
    assert [d.action for d in decisions] == ["train", "train", "stop"]
    for d in decisions:
        assert d.signals["heldout_curve"]["split"] == "validation"
    validation_curve, test_curve = _curve(checkpoints, "validation"), _curve(checkpoints, "eval")
    assert decisions[1].signals["heldout_curve"]["points"] == validation_curve[:2]
    assert decisions[-1].signals["heldout_curve"]["points"] == validation_curve
    assert len(validation_curve) == len(test_curve) == 3
    # The monitors of round 2 passed on round 1's validation numbers.
    monitors = plain.get_round(run_id, 2).monitors
    first = checkpoints[0].metrics["validation"]
    assert monitors["heldout_oracle_candidate"] == first["candidate"]["oracle"]
    assert monitors["heldout_oracle_active"] == first["active"]["oracle"]
    # Each split is its own cached evaluation (two digests per checkpoint).
    rows = plain.db.execute("SELECT checkpoint_id, COUNT(DISTINCT heldout_sha256) FROM evaluations "
                            "GROUP BY checkpoint_id").fetchall()
    assert rows and all(count == 2 for _, count in rows)

    # What a reviewer saw: the test split, named so.
    approval = plain.approval_for_subject("checkpoint", checkpoints[0].id)
    assert "held-out test split" in approval.summary
    runner = CliRunner()
    view = json.loads(runner.invoke(app, ["--home", str(workspace_home), "show", approval.id, "--json"]).stdout)
    assert view["heldout"]["split"] == "test"
    assert view["heldout"]["candidate"]["oracle"] == checkpoints[0].metrics["eval"]["candidate"]["oracle"]
    assert view["heldout"]["candidate"]["n"] == checkpoints[0].metrics["eval"]["candidate"]["n"]
    assert {a["prompt_id"] for a in view["answers"]} <= by_test_ids(plain, run_id, checkpoints[0].id)
    text = runner.invoke(app, ["--home", str(workspace_home), "show", approval.id]).output
    assert "held-out test split" in text


def by_test_ids(store: Store, run_id: str, checkpoint_id: str) -> set[str]:
    return {s.prompt_id for s in store.samples(run_id, None, split="test", checkpoint_id=checkpoint_id)}
