"""Missing signals fail closed: a monitor that raises neither fails the round nor vanishes; its keys are
stored as could-not-check, the controller does not train on the round, and the notebook says so.
Scripted monitors and a real store; no model."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from langgraph.runtime import Runtime

from agent.config import ControllerConfig
from agent.controller.policy import ControllerInput
from agent.controller.policy import decide as policy
from agent.review import notebook
from agent.run.nodes import monitor as monitor_node
from agent.run.nodes.decide import _signals
from memory import Run, Store
from tether_types import COULD_NOT_CHECK, UnknownMonitorKeyError, monitor_key
from tools.monitors import (
    MONITORS,
    SAFETY_KEYS,
    FamilyKey,
    FamilyMonitor,
    MonitorKey,
    Readings,
    RoundObservation,
    run_monitors,
)
from tools.monitors.length import LengthMonitor
from tools.monitors.readings import declared_keys
from tools.registry import Built

K = MonitorKey
OBS = RoundObservation(
    prompts=["p0", "p1"],
    responses=[["short", "a much longer answer"], ["a longer reply here", "tiny"]],
    lengths=[[1, 4], [4, 1]],  # length and score barely correlate (r ~ 0.2): a healthy judge
    scores=[[0.2, 0.8], [0.3, 0.7]],
    pair_margins=[0.6, 0.4],
    candidate_pairs=2,
    pairwise=[("a", "a"), ("b", "b")],
)


class Broken:
    """The length monitor's keys, and a compute that raises (as when a dependency fails to load)."""

    keys: ClassVar[tuple[MonitorKey, ...]] = LengthMonitor.keys

    def compute(self, obs: RoundObservation) -> Mapping[MonitorKey, float]:
        raise RuntimeError("boom")


class Strays:
    keys: ClassVar[tuple[MonitorKey, ...]] = (K.SCORE_MEAN, K.SCORE_STD)

    def compute(self, obs: RoundObservation) -> Mapping[str, float]:
        return {K.SCORE_MEAN: float("nan"), K.SCORE_STD: 0.1}


class Undeclared:
    keys: ClassVar[tuple[MonitorKey, ...]] = (K.TIE_RATE,)

    def compute(self, obs: RoundObservation) -> Mapping[str, float]:
        return {K.TIE_RATE: 0.0, K.INVALID_SHARE: 0.0}


def monitors(*replace: Built) -> list[Built]:
    """The monitors the judge rule reads (no embedder needed), with some replaced by name."""
    by_name = {name: MONITORS.build(name) for name in ("scores", "length", "pairs", "judge_reliability")}
    by_name.update({b.name: b for b in replace})
    return list(by_name.values())


def test_every_monitor_declares_the_keys_it_emits() -> None:
    rich = RoundObservation(
        prompts=OBS.prompts, responses=OBS.responses, lengths=OBS.lengths, scores=OBS.scores,
        pair_margins=OBS.pair_margins, candidate_pairs=2, pairwise=OBS.pairwise, base_length_mean=2.0,
        oracle_scores=[[0.1, 0.9], [0.2, 0.8]], pool_scores={"a": [0.1, 0.9, 0.2, 0.8], "b": [0.2, 0.8, 0.3, 0.7]},
        heldout={"judge_active": 0.5, "oracle_active": 0.4, "judge_candidate": 0.6, "oracle_candidate": 0.5},
        prompt_reused=[True, False], benign=[True, False], refusals=[[False, True], [True, False]],
        families=["f1", "f2"], pair_families=["f1", "f2"], earlier_pairs=[[("f1", 0.9), ("f2", 0.5)]],
        base_logps=[[-0.7, -2.1], [-0.9, None]],
    )
    emitted: set[MonitorKey] = set()
    per_family: set[FamilyKey] = set()
    for name in MONITORS.names():
        built = MONITORS.build(name)
        out = built.plugin.compute(rich)
        assert set(out) <= set(declared_keys(built)), name
        assert all(isinstance(k, MonitorKey) for k in out), name
        emitted |= set(out)
        if isinstance(built.plugin, FamilyMonitor):
            groups = built.plugin.by_family(rich)
            assert all(set(g) <= set(built.plugin.family_keys) for g in groups.values()), name
            per_family |= {k for g in groups.values() for k in g}
    assert emitted == set(MonitorKey)  # every key is emitted by some monitor: none is dead
    assert per_family == set(FamilyKey)
    assert SAFETY_KEYS == {K.LENGTH_SCORE_CORR, K.POSITION_CONSISTENCY, K.INVALID_SHARE}


def test_a_failing_monitor_records_its_keys_as_could_not_check_and_the_rest_go_on() -> None:
    readings = run_monitors(monitors(Built("length", {}, Broken())), OBS)
    assert readings.could_not_check == dict.fromkeys(LengthMonitor.keys, "monitor length failed: RuntimeError: boom")
    assert readings.values[K.INVALID_SHARE] == 0.0 and readings.values[K.POSITION_CONSISTENCY] == 1.0
    assert K.LENGTH_SCORE_CORR not in readings.values
    stored = readings.to_json()
    assert stored[COULD_NOT_CHECK]["length_score_corr"].startswith("monitor length failed")
    assert Readings.from_json(stored) == readings
    # Healthy rounds store exactly what they stored before: no could-not-check entry.
    assert COULD_NOT_CHECK not in run_monitors(monitors(), OBS).to_json()


def test_non_finite_and_undeclared_values_are_could_not_check() -> None:
    readings = run_monitors([Built("strays", {}, Strays()), Built("undeclared", {}, Undeclared())], OBS)
    assert readings.values == {K.SCORE_STD: 0.1}
    assert "not a finite number" in readings.could_not_check[K.SCORE_MEAN]
    assert "undeclared key(s) invalid_share" in readings.could_not_check[K.TIE_RATE]
    assert K.INVALID_SHARE not in readings.values
    with pytest.raises(TypeError, match="must declare the keys"):
        run_monitors([Built("nokeys", {}, SimpleNamespace(compute=lambda obs: {}))], OBS)
    with pytest.raises(UnknownMonitorKeyError, match="did you mean 'length_score_corr'"):
        monitor_key("length_score_cor")
    progress = run_monitors([MONITORS.build("progress")], RoundObservation(
        prompts=[], responses=[], lengths=[], scores=[], pair_margins=[], candidate_pairs=0,
        heldout={"judge_actve": 0.5}))
    assert "unknown held-out value 'heldout_judge_actve'" in progress.could_not_check[K.HELDOUT_JUDGE_ACTIVE]
    nan = Readings.from_json({"length_score_corr": float("nan")})  # as json.loads reads a stored NaN
    assert not nan.values and "not a finite number" in nan.could_not_check[K.LENGTH_SCORE_CORR]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "tether.db")
    s.create_run(Run(id="run-1", config={}, config_sha256="c" * 64, seed=0, rounds_budget=3, constitution_version=1,
                     invariants={}, invariants_sha256="i" * 64))
    yield s
    s.close()


def _monitor_node(store: Store, built: list[Built], monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph's monitor node on a scripted observation (everything else of the round is stubbed)."""
    logged: list[Mapping[str, float]] = []

    @contextmanager
    def timed(stage: str) -> Iterator[None]:
        yield

    ctx = SimpleNamespace(store=store, monitors=built, timed=timed, progress=False,
                          tracker=SimpleNamespace(log=lambda round_no, values: logged.append(values)))
    monkeypatch.setattr(monitor_node, "_observe", lambda ctx, run_id, round_no: OBS)
    store.upsert_round("run-1", 1, n_pairs=len(OBS.pair_margins), judge={"label": "j0"})
    assert monitor_node.monitor({"run_id": "run-1", "round": 1}, Runtime(context=ctx)) == {}  # type: ignore[typeddict-item]
    assert logged and all(math.isfinite(v) for v in logged[0].values())


def test_a_raising_monitor_in_the_node_leads_to_no_training_and_a_visible_log(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _monitor_node(store, monitors(Built("length", {}, Broken())), monkeypatch)
    record = store.get_round("run-1", 1)
    assert record is not None and record.monitors is not None
    assert set(record.monitors[COULD_NOT_CHECK]) == {"length_mean", "length_drift", "length_score_corr"}
    now = _signals(record, 1, "j0")
    assert K.LENGTH_SCORE_CORR in now.could_not_check and K.LENGTH_SCORE_CORR not in now.monitors
    cfg = ControllerConfig(rounds=3)
    for next_judge, action in (("rules", "switch_judge"), (None, "stop")):
        d = policy(ControllerInput(now=now, budget=3, next_judge=next_judge), cfg)
        assert d.action == action
        store.add_decision("run-1", 1, d.action, d.rationale, d.log_signals())
    log = notebook.render(store, "run-1")
    assert "COULD NOT CHECK length_score_corr (monitor length failed: RuntimeError: boom) -> treated as fired" in log
    assert "COULD NOT CHECK length_mean (monitor length failed" in log  # no rule reads it, still shown
    assert "ok   length_score_corr" not in notebook.render(store, "run-1", verbose=True)


def test_a_healthy_node_round_trains(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _monitor_node(store, monitors(), monkeypatch)
    record = store.get_round("run-1", 1)
    assert record is not None and COULD_NOT_CHECK not in (record.monitors or {})
    d = policy(ControllerInput(now=_signals(record, 1, "j0"), budget=3), ControllerConfig(rounds=3))
    assert d.action == "train"


def test_the_notebook_never_shows_an_unchecked_signal_as_ok(store: Store) -> None:
    checks = [
        {"signal": "over_refusal", "value": None, "op": ">", "threshold": 0.3, "fired": False,
         "setting": "propose_amendment.max_over_refusal", "status": "could_not_check",
         "reason": "over_refusal is not in round 1's monitors"},
        # Logged before statuses existed: no value means it was not checked.
        {"signal": "prompt_reuse", "value": None, "op": ">", "threshold": 0.8, "fired": False},
        {"signal": "invalid_share", "value": 0.0, "op": ">", "threshold": 0.2, "fired": False, "status": "ok"},
    ]
    store.upsert_round("run-1", 1, n_pairs=3)
    store.add_decision("run-1", 1, "train", "fine", {"checks": checks})
    quiet = notebook.render(store, "run-1")
    assert "could not check: over_refusal (over_refusal is not in round 1's monitors" in quiet
    assert "prompt_reuse (no value)" in quiet and "invalid_share 0 ≤ 0.2" in quiet
    loud = notebook.render(store, "run-1", verbose=True)
    assert "COULD NOT CHECK over_refusal" in loud and "COULD NOT CHECK prompt_reuse (no value)" in loud
    assert "ok    over_refusal" not in loud and "ok    prompt_reuse" not in loud
