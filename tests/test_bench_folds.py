"""Issue 22's leave-one-world-out folds (benchmarks/bench_folds.py) without a model: which runs each fold's policy
is fitted on (never its left-out world, never an evaluation seed), the baselines it is compared with, the envelope
check of the learned decisions, and the report, on synthetic suite outputs. One real `tether controller fit` per
fold in a subprocess, on synthetic decision histories written through the store's API (seconds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from test_learned_controller import _history

from agent.controller.learned import load_policy
from conftest import init_workspace
from memory import Run, Store

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # benchmarks/ is no package
import _folds  # noqa: E402
import _folds_report  # noqa: E402
import bench_folds  # noqa: E402

WORLDS = ("blind_family", "invisible_drift", "unreliable_judge")


def _run(world: str, system: str, seed: int, final: float, **extra: Any) -> dict[str, Any]:
    curve = [{"round": 0, "oracle": 0.3, "carried": False}, {"round": 1, "oracle": final, "carried": False}]
    return {"world": world, "system": system, "seed": seed, "curve": curve, "cpu_s": 5.0, "wall_s": 6.0,
            "interventions": {}, "intervention_rounds": [], "run_id": f"run-{world}-{system}-{seed}",
            "workspace": f"/ws/{world}-{system}-s{seed}", **extra}


def _suite(path: Path, seeds: list[int], systems: tuple[str, ...] = ("tether", "fixed"), policy: str = "rules",
           rounds: int = 1) -> Path:
    runs = [_run(w, s, seed, 0.5 + 0.01 * seed) for seed in seeds for w in WORLDS for s in systems]
    settings = {"worlds": list(WORLDS), "systems": list(systems), "seeds": seeds, "rounds": rounds,
                "policy": policy, "overrides": []}
    path.write_text(json.dumps({"settings": settings, "runs": runs, "wall_s": 1.0}))
    return path


# -- which runs a fold fits on ------------------------------------------------------------------------------

@pytest.mark.parametrize("one_file", [True, False])
def test_a_fold_never_fits_on_its_left_out_world_nor_an_evaluation_seed(tmp_path: Path, one_file: bool) -> None:
    """The whole suite on seeds 0-5 in one file, or the fit and evaluation seeds apart: each fold fits on exactly
    the tether runs of the other worlds on seeds 0-2."""
    paths = ([_suite(tmp_path / "all.json", [0, 1, 2, 3, 4, 5])] if one_file
             else [_suite(tmp_path / "fit.json", [0, 1, 2], ("tether",)), _suite(tmp_path / "b.json", [3, 4, 5])])
    docs = _folds.load_suites(paths)
    candidates = _folds.fit_candidates(docs, [0, 1, 2])
    folds = _folds.plan_folds(candidates, list(WORLDS), [0, 1, 2], [3, 4, 5])
    assert [f.world for f in folds] == list(WORLDS)
    for fold in folds:
        fitted = {(r.world, r.seed) for r in fold.fit_runs}
        assert all(world != fold.world for world, _ in fitted)
        assert all(seed not in (3, 4, 5) for _, seed in fitted)
        assert fitted == {(w, s) for w in WORLDS if w != fold.world for s in (0, 1, 2)}
        assert {r.run_id for r in fold.fit_runs} == {f"run-{w}-tether-{s}" for w, s in fitted}  # never fixed's
    # A fold for a world --fit does not hold fits on every world it does.
    assert len(_folds.plan_folds(candidates, ["prompt_saturation"], [0, 1, 2], [3, 4, 5])[0].fit_runs) == 9


def test_folds_refuse_what_would_make_the_evidence_lie(tmp_path: Path) -> None:
    docs = _folds.load_suites([_suite(tmp_path / "all.json", [0, 1, 2, 3])])
    candidates = _folds.fit_candidates(docs, [0, 1, 2])
    with pytest.raises(SystemExit, match=r"\[2\] are both fit and evaluation seeds"):
        _folds.plan_folds(candidates, list(WORLDS), [0, 1, 2], [2, 3])
    partial = [c for c in candidates if (c.world, c.seed) != ("blind_family", 1)]
    with pytest.raises(SystemExit, match="lacks the tether run.* blind_family/s1"):
        _folds.plan_folds(partial, list(WORLDS), [0, 1, 2], [3])
    only_one = [c for c in candidates if c.world == "blind_family"]
    with pytest.raises(SystemExit, match="no world but blind_family"):
        _folds.plan_folds(only_one, ["blind_family"], [0, 1, 2], [3])
    with pytest.raises(SystemExit, match="fit workspace.* gone"):
        _folds.check_workspaces(_folds.plan_folds(candidates, list(WORLDS), [0, 1, 2], [3]))
    doc = json.loads((tmp_path / "all.json").read_text())
    del doc["runs"][0]["workspace"]
    with pytest.raises(SystemExit, match="records no workspace.*--home"):
        _folds.fit_candidates([doc], [0, 1, 2])
    with pytest.raises(SystemExit, match="ran --policy learned"):
        _folds.load_suites([_suite(tmp_path / "learned.json", [0], policy="learned")])
    with pytest.raises(SystemExit, match="differs .* in rounds"):
        _folds.load_suites([tmp_path / "all.json", _suite(tmp_path / "r2.json", [4], rounds=2)])



def _explore_suite(path: Path, seeds: list[int], overrides: list[str], rounds: int = 1) -> Path:
    doc = json.loads(_suite(path, seeds, ("tether",), policy="learned", rounds=rounds).read_text())
    doc["settings"]["overrides"] = overrides
    for run in doc["runs"]:
        run["run_id"], run["workspace"] = f"explore-{run['run_id']}", f"{run['workspace']}-explore"
    path.write_text(json.dumps(doc))
    return path


def test_exploration_runs_join_every_fold_but_their_own_world(tmp_path: Path) -> None:
    """Exploration runs on the fit seeds are fitted on with the rules runs, under the same leave-one-world-out
    rule; a suite that did not explore as the folds say, or ran other rounds, is refused."""
    rules = _folds.fit_candidates(_folds.load_suites([_suite(tmp_path / "fit.json", [0, 1], ("tether",))]), [0, 1])
    explore_docs = _folds.load_explore([_explore_suite(tmp_path / "x.json", [0, 1], list(_folds.EXPLORE_OVERRIDES))], 1)
    explored = _folds.fit_candidates(explore_docs, [0, 1], "explore")
    folds = _folds.plan_folds(rules + explored, list(WORLDS), [0, 1], [3])
    for fold in folds:
        by = {(r.world, r.seed, r.behaviour) for r in fold.fit_runs}
        assert by == {(w, s, b) for w in WORLDS if w != fold.world for s in (0, 1) for b in ("rules", "explore")}
    # Exploration runs never stand in for a missing rules run.
    with pytest.raises(SystemExit, match="lacks the tether run.* blind_family/s1"):
        _folds.plan_folds([c for c in rules if (c.world, c.seed) != ("blind_family", 1)] + explored,
                          list(WORLDS), [0, 1], [3])
    with pytest.raises(SystemExit, match="not an exploration suite"):
        _folds.load_explore([_explore_suite(tmp_path / "half.json", [0], ["controller.explore=0.5"])], 1)
    with pytest.raises(SystemExit, match="not an exploration suite"):
        _folds.load_explore([_suite(tmp_path / "rules.json", [0], ("tether",))], 1)
    with pytest.raises(SystemExit, match="ran 2 rounds"):
        _folds.load_explore([_explore_suite(tmp_path / "r2.json", [0], list(_folds.EXPLORE_OVERRIDES), 2)], 1)
    twice = _folds.fit_candidates(_folds.load_explore([tmp_path / "x.json"], 1), [0, 1], "explore")
    with pytest.raises(SystemExit, match="share a run id"):
        _folds.plan_folds(rules + explored + twice[:1], list(WORLDS), [0, 1], [3])

def test_baselines_are_the_rules_and_fixed_runs_on_the_evaluation_seeds(tmp_path: Path) -> None:
    docs = _folds.load_suites([_suite(tmp_path / "all.json", [0, 1, 2, 3, 4])])
    found, missing = _folds.baseline_runs(docs, ["blind_family", "unreliable_judge"], [3, 4, 5])
    assert set(found) == {(w, s, seed) for w in ("blind_family", "unreliable_judge") for s in ("tether", "fixed")
                          for seed in (3, 4)}
    assert missing == [(w, s, 5) for w in ("blind_family", "unreliable_judge") for s in ("tether", "fixed")]


# -- the envelope -------------------------------------------------------------------------------------------

def _learned(action: str | None, permitted: list[str] | None, version: str = "v1", **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"version": version, "predicted": {}, "explored": False, "rules_choice": "train",
                             "action": action, **extra}
    if permitted is not None:
        block["permitted"] = permitted
    return {"learned": block}


def test_the_envelope_check_counts_every_pick_outside_the_permitted_actions() -> None:
    ok = [("train", _learned("train", ["train", "switch_judge"])),
          ("switch_judge", _learned("switch_judge", ["train", "switch_judge"])),
          ("train", _learned(None, ["train"], overruled="no permitted action has a value fitted on "
                                                        "controller.learned.min_decisions decisions")),
          ("stop", {"budget": 3})]  # a safety rule's decision: the policy was never asked
    assert _folds.envelope(ok, "v1") == {"learned_decisions": 3, "taken": 2, "overruled": 1, "violations": 0,
                                         "other_version": 0, "unchecked": 0}
    bad = [("regenerate_prompts", _learned("regenerate_prompts", ["train"])),  # outside the envelope
           ("train", _learned("switch_judge", ["train", "switch_judge"])),  # logged one pick, took another
           ("train", _learned("train", ["train"], version="v2")),  # another policy than the fold's
           ("train", _learned("train", None))]  # cannot be checked: never a pass
    assert _folds.envelope(bad, "v1") == {"learned_decisions": 4, "taken": 4, "overruled": 0, "violations": 3,
                                          "other_version": 1, "unchecked": 1}


# -- the report ---------------------------------------------------------------------------------------------

def _fit(world: str) -> dict[str, Any]:
    return {"file": f"/p/{world}.json", "sha256": "ab" * 32, "bytes": 2300, "decisions": 90, "actions": {"train": 80},
            "fit_s": 0.014, "wall_s": 2.0, "fitted_on": [{"world": w, "seed": s, "run_id": "r"}
                                                         for w in WORLDS if w != world for s in (0, 1, 2)]}


def test_the_report_compares_each_left_out_world_and_sums_the_folds(tmp_path: Path) -> None:
    worlds = ["blind_family", "unreliable_judge"]
    env = {"learned_decisions": 3, "taken": 3, "overruled": 0, "violations": 0, "other_version": 0, "unchecked": 0}
    runs = [_run(w, "rules", s, 0.5) for w in worlds for s in (3, 4)]
    runs += [_run(w, "fixed", s, 0.4) for w in worlds for s in (3, 4)]
    learned = {"blind_family": [0.6, 0.7], "unreliable_judge": [0.45, 0.45]}  # beats rules on one fold of two
    runs += [_run(w, "learned", s, learned[w][s - 3], fold=w, learned={"decisions": 3, "explored": 1, "otherwise": 2},
                  envelope=env) for w in worlds for s in (3, 4)]
    fits = {"blind_family": _fit("blind_family"), "unreliable_judge": _fit("unreliable_judge"),
            "invisible_drift": {"error": "exit 2: too few measured decisions", "wall_s": 1.0, "fitted_on": []}}
    out = tmp_path / "folds.json"
    settings = {"folds": [*worlds, "invisible_drift"], "rounds": 1}
    doc = _folds_report.report(out, settings, fits, runs, 12.0)
    t = doc["totals"]
    assert t["folds"] == 3 and t["folds_fitted"] == 2 and t["folds_compared"] == 2 and t["learned_beats_rules"] == 1
    assert t["mean_over_worlds"]["learned"] == pytest.approx((0.65 + 0.45) / 2)
    assert t["mean_over_worlds"]["rules"] == pytest.approx(0.5)
    assert t["choices"] == {"decisions": 12, "explored": 4, "otherwise": 8}
    assert t["envelope"]["violations"] == 0 and t["envelope"]["taken"] == 12
    assert t["policy_bytes"] == {"min": 2300, "max": 2300}
    md = out.with_suffix(".md").read_text()
    assert "| blind_family | 0.650 ± 0.071 | 0.500 ± 0.000 | 0.400 ± 0.000 |" in md
    assert "| blind_family | 6 (90) | abababababab | 2300 | 0.014 (2.0) | +0.150 | yes | 6: 2 / 4 | 0 (0) |" in md
    assert "| invisible_drift | 0 runs: not fitted (exit 2: too few measured decisions)" in md
    assert "in 1 of 2 fold(s) with both" in md and "0 violation(s) in 12 decision(s)" in md
    assert json.loads(out.read_text())["folds"][0]["beats_rules"] is True
    assert out.with_suffix(".png").stat().st_size > 5_000



def test_folds_run_apart_merge_into_one_report(tmp_path: Path) -> None:
    """Two parts, one per core, each on some worlds: one report over every fold, refused where the parts are not
    one evaluation or share a fold."""
    def part(name: str, world: str, learned: float, **settings: Any) -> Path:
        runs = [_run(world, "rules", s, 0.5) for s in (3, 4)] + [_run(world, "fixed", s, 0.4) for s in (3, 4)]
        runs += [_run(world, "learned", s, learned, fold=world, learned={"decisions": 3, "explored": 0,
                                                                          "otherwise": 1}) for s in (3, 4)]
        doc = {"settings": {"folds": [world], "rounds": 1, "fit": ["f.json"], "explore": [], "fit_seeds": [0, 1, 2],
                            "eval_seeds": [3, 4], "overrides": [], "fit_worlds": [w for w in WORLDS if w != world],
                            "models": {}, **settings},
               "fits": {world: _fit(world)}, "runs": runs, "wall_s": 10.0}
        (tmp_path / name).write_text(json.dumps(doc))
        return tmp_path / name

    a, b = part("a.json", "blind_family", 0.6), part("b.json", "unreliable_judge", 0.45)
    bench_folds.merge([a, b], tmp_path / "folds.json")
    doc = json.loads((tmp_path / "folds.json").read_text())
    assert doc["settings"]["folds"] == ["blind_family", "unreliable_judge"] and doc["wall_s"] == 20.0
    assert doc["totals"]["learned_beats_rules"] == 1 and doc["totals"]["folds_compared"] == 2
    assert doc["totals"]["mean_over_worlds"]["learned"] == pytest.approx((0.6 + 0.45) / 2)
    with pytest.raises(SystemExit, match="differs .* in eval_seeds"):
        bench_folds.merge([a, part("c.json", "invisible_drift", 0.5, eval_seeds=[6, 7])], tmp_path / "x.json")
    with pytest.raises(SystemExit, match="in more than one part"):
        bench_folds.merge([a, part("d.json", "blind_family", 0.5)], tmp_path / "x.json")

# -- one real fit per fold, in a subprocess -----------------------------------------------------------------

def _fit_run(tmp_path: Path, world: str, seed: int, actions: list[str]) -> _folds.FitRun:
    """A workspace holding one finished run with measured decisions, as bench_suite --home leaves it."""
    home = tmp_path / f"{world}-s{seed}"
    init_workspace(home, ("alice",))
    run_id = f"run-{world}-{seed}"
    with Store(home / "tether.db") as store:
        if actions:
            _history(store, run_id, actions, seed=seed)
        else:
            store.create_run(Run(id=run_id, config={}, config_sha256="c" * 64, seed=seed, rounds_budget=1,
                                 constitution_version=1, invariants={}, invariants_sha256="i" * 64))
    return _folds.FitRun(world, seed, run_id, home)


def test_each_fold_is_fitted_by_the_cli_on_the_other_worlds_runs_only(tmp_path: Path) -> None:
    runs = [_fit_run(tmp_path, w, s, ["train", "regenerate_prompts"] * 3 if w != "unreliable_judge" else [])
            for w in WORLDS for s in (0, 1)]
    folds = _folds.plan_folds(runs, list(WORLDS), [0, 1], [3])
    _folds.check_workspaces(folds)
    fold = next(f for f in folds if f.world == "unreliable_judge")
    fit = bench_folds.fit_fold(fold, tmp_path / "policies" / "unreliable_judge.json", tmp_path / "keys")
    assert "error" not in fit, fit
    policy, sha = load_policy(Path(fit["file"]))
    assert sha == fit["sha256"] and fit["bytes"] == Path(fit["file"]).stat().st_size and fit["fit_s"] >= 0
    assert sorted(r.run_id for r in policy.fitted_on) == sorted(
        f"run-{w}-{s}" for w in ("blind_family", "invisible_drift") for s in (0, 1))
    assert fit["fitted_on"] == [{"world": r.world, "seed": r.seed, "run_id": r.run_id, "behaviour": "rules"}
                                for r in fold.fit_runs]
    # A fold whose other worlds have no measured decision is refused by the CLI (exit 2), and said so.
    empty = _folds.Fold("blind_family", tuple(r for r in runs if r.world == "unreliable_judge"))
    refused = bench_folds.fit_fold(empty, tmp_path / "policies" / "blind_family.json", tmp_path / "keys")
    assert refused["error"].startswith("exit 2") and "too few measured decisions" in refused["error"], refused
    assert not (tmp_path / "policies" / "blind_family.json").exists()
    # The envelope check reads a run's decisions from its workspace (these are rules decisions: none learned).
    assert _folds.envelope_of_run(runs[0].db, runs[0].run_id, sha)["learned_decisions"] == 0
