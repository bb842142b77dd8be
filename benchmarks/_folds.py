"""Issue 22's leave-one-world-out folds (benchmarks/bench_folds.py), the parts that need no model: which suite
runs each fold's policy is fitted on, which baseline runs it is compared with, and the envelope check of the
decisions a learned policy took.

The selection is the evidence's honesty: a fold's policy must never have seen its left-out world, nor any seed it
is evaluated on, so the selection refuses (SystemExit, naming the fix) rather than fit on whatever is at hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASELINE_SYSTEMS: tuple[str, ...] = ("tether", "fixed")  # bench_suite's names: the rules policy, the fixed recipe
CONSISTENT = ("rounds", "overrides")  # what every suite output the folds read must share
# The exploration runs' behaviour (bench_suite --policy learned --set ...): half the rounds a uniform pick among the
# permitted actions, the others the rules' pick, because no action is trusted below 100000 fitted decisions.
EXPLORE_OVERRIDES: tuple[str, ...] = ("controller.explore=0.5", "controller.learned.min_decisions=100000")


@dataclass(frozen=True)
class FitRun:
    """A tether run of the suite whose measured decisions a fold may fit on: the rules policy's (`rules`), or an
    exploration run's (`explore`: EXPLORE_OVERRIDES), which tries the actions the rules would not have taken."""

    world: str
    seed: int
    run_id: str
    workspace: Path
    behaviour: str = "rules"

    @property
    def db(self) -> Path:
        return self.workspace / "tether.db"


@dataclass(frozen=True)
class Fold:
    """One left-out world and the runs its policy is fitted on (none of that world, none of an evaluation seed)."""

    world: str
    fit_runs: tuple[FitRun, ...]


def load_suites(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """bench_suite outputs, refused unless each ran the rules policy and all share rounds and overrides: a fold
    compares runs that differ only in their controller."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    for path, doc in zip(paths, docs, strict=True):
        settings = doc.get("settings") or {}
        if settings.get("policy", "rules") != "rules":
            raise SystemExit(f"{path} ran --policy {settings['policy']}: the folds fit on and compare with the "
                             "rules policy's runs (bench_suite.py without --policy)")
        differs = [k for k in CONSISTENT if settings.get(k) != (docs[0].get("settings") or {}).get(k)]
        if differs:
            raise SystemExit(f"{path} differs from {paths[0]} in {', '.join(differs)}: the folds compare runs of "
                             "one configuration")
    return docs


def load_explore(paths: Sequence[Path], rounds: int) -> list[dict[str, Any]]:
    """bench_suite outputs of exploration runs, refused unless each ran the learned policy with EXPLORE_OVERRIDES
    (whatever its file: with them its choices never read it) and `rounds` rounds."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    for path, doc in zip(paths, docs, strict=True):
        settings = doc.get("settings") or {}
        lacks = [o for o in EXPLORE_OVERRIDES if o not in (settings.get("overrides") or [])]
        if settings.get("policy") != "learned" or lacks:
            raise SystemExit(f"{path} is not an exploration suite: run bench_suite.py --policy learned --policy-file F "
                             + " ".join(f"--set {o}" for o in EXPLORE_OVERRIDES))
        if int(settings.get("rounds", -1)) != rounds:
            raise SystemExit(f"{path} ran {settings.get('rounds')} rounds, the rules suites {rounds}: the folds fit "
                             "on runs of one length")
    return docs


def fit_candidates(docs: Iterable[Mapping[str, Any]], fit_seeds: Sequence[int],
                   behaviour: str = "rules") -> list[FitRun]:
    """The tether runs on `fit_seeds` of the suites, refused where one lacks its workspace (bench_suite keeps
    it only with --home) or two claim the same world and seed."""
    found: dict[tuple[str, int], FitRun] = {}
    for doc in docs:
        for run in doc.get("runs", []):
            if run.get("system") != "tether" or run.get("seed") not in fit_seeds:
                continue
            if not run.get("workspace") or not run.get("run_id"):
                raise SystemExit(f"the tether run {run['world']}/s{run['seed']} records no workspace: rerun "
                                 "bench_suite.py (it records them) with --home DIR, which keeps them")
            key = (str(run["world"]), int(run["seed"]))
            if key in found:
                raise SystemExit(f"two tether runs of {key[0]} seed {key[1]} in --fit: pass each once")
            found[key] = FitRun(key[0], key[1], str(run["run_id"]), Path(run["workspace"]), behaviour)
    return sorted(found.values(), key=lambda r: (r.world, r.seed))


def plan_folds(candidates: Sequence[FitRun], fold_worlds: Sequence[str], fit_seeds: Sequence[int],
               eval_seeds: Sequence[int]) -> list[Fold]:
    """Per left-out world, the candidates of every other world on the fit seeds. Refused where the fit and
    evaluation seeds overlap, a fitted world lacks a fit seed's rules run (a fold would fit on less than it says),
    or two candidates share a run id."""
    ids = [c.run_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise SystemExit("two fit runs share a run id: `tether controller fit` could not tell them apart")
    overlap = sorted(set(fit_seeds) & set(eval_seeds))
    if overlap:
        raise SystemExit(f"seed(s) {overlap} are both fit and evaluation seeds: a policy is evaluated only on "
                         "seeds it was not fitted on")
    fit_worlds = sorted({c.world for c in candidates})
    have = {(c.world, c.seed) for c in candidates if c.behaviour == "rules"}
    missing = [f"{w}/s{s}" for w in fit_worlds for s in fit_seeds if (w, s) not in have]
    if missing:
        raise SystemExit(f"--fit lacks the tether run(s) {', '.join(missing)}: run bench_suite.py --systems tether "
                         "on them with --home, or leave those seeds out with --fit-seeds")
    folds = []
    for world in dict.fromkeys(fold_worlds):
        runs = tuple(c for c in candidates if c.world != world and c.seed in fit_seeds and c.seed not in eval_seeds)
        if not runs:
            raise SystemExit(f"no world but {world} in --fit to fit its fold on")
        folds.append(Fold(world, runs))
    return folds


def check_workspaces(folds: Sequence[Fold]) -> None:
    """Every fit run's database is there (bench_suite without --home removed the workspaces at its end)."""
    gone = sorted({str(r.db) for f in folds for r in f.fit_runs if not r.db.is_file()})
    if gone:
        raise SystemExit(f"{len(gone)} fit workspace(s) are gone, e.g. {gone[0]}: rerun bench_suite.py with --home "
                         "DIR (kept), or pass the output whose workspaces still exist")


Key = tuple[str, str, int]  # (world, bench_suite system, seed)


def baseline_runs(docs: Iterable[Mapping[str, Any]], worlds: Sequence[str],
                  eval_seeds: Sequence[int]) -> tuple[dict[Key, dict[str, Any]], list[Key]]:
    """({(world, system, seed): run} of the rules and fixed runs on the evaluation seeds, the keys missing)."""
    found: dict[Key, dict[str, Any]] = {}
    for doc in docs:
        for run in doc.get("runs", []):
            key = (str(run["world"]), str(run["system"]), int(run["seed"]))
            if key[0] in worlds and key[1] in BASELINE_SYSTEMS and key[2] in eval_seeds:
                if key in found:
                    raise SystemExit(f"two {key[1]} runs of {key[0]} seed {key[2]} in --baseline: pass each once")
                found[key] = run
    wanted = [(w, s, seed) for seed in eval_seeds for w in worlds for s in BASELINE_SYSTEMS]
    return found, [k for k in wanted if k not in found]


# -- the envelope -------------------------------------------------------------------------------------------

def envelope(decisions: Iterable[tuple[str, Mapping[str, Any]]], version: str) -> dict[str, int]:
    """Over a run's (action, signals) decisions, those where the learned policy spoke (`signals.learned`, written by
    agent/controller/rules.py `_learned`): how many it took, how many the rules overruled, and the violations: a
    taken pick outside the actions the rules permitted that round, or a decision by a policy other than the fold's.
    A record whose permitted list is missing is counted as unchecked, never as a pass."""
    out = {"learned_decisions": 0, "taken": 0, "overruled": 0, "violations": 0, "other_version": 0, "unchecked": 0}
    for action, signals in decisions:
        learned = signals.get("learned")
        if not isinstance(learned, Mapping):
            continue
        out["learned_decisions"] += 1
        out["other_version"] += learned.get("version") != version
        if "overruled" in learned:
            out["overruled"] += 1
            continue
        out["taken"] += 1
        permitted = learned.get("permitted")
        if not isinstance(permitted, list):
            out["unchecked"] += 1
        elif action not in permitted or action != learned.get("action"):
            out["violations"] += 1
    out["violations"] += out["other_version"]
    return out


def envelope_of_run(db: Path, run_id: str, version: str) -> dict[str, int]:
    """`envelope` of a run read from its workspace's database."""
    from memory import Store

    with Store(db, readonly=True) as store:
        return envelope(((d.action, d.signals) for d in store.decisions(run_id)), version)
