"""Issue 22's evidence: leave-one-world-out folds of the learned controller on the failure worlds.

For each fold world W: fit a controller policy (`tether controller fit`, in a subprocess, as a user would) on the
measured decisions of the rules-policy tether runs of every other world on the fit seeds (default 0 1 2), then run
the tether system with that policy (`bench_suite.py --policy learned`) on W and the evaluation seeds (default
3 4 5), which no fold ever fits on. It compares the round-N held-out oracle with the rules policy's and the fixed
recipe's runs on the same world and seeds, and checks that every decision the policy took stayed among the actions
the rules permitted that round (the envelope; expected: no violation).

Inputs are bench_suite.py outputs: --fit, whose tether runs on the fit seeds are the decision histories (their
workspaces must still exist: run it with --home); --explore, exploration runs on the fit seeds, fitted on with
them; --baseline, holding the tether and fixed runs on the evaluation seeds (any missing are run here, unless
--no-baseline-runs). One file may serve as --fit and --baseline.

Why exploration runs: the rules policy is deterministic, so its history shows each intervention only in the
states where the rules chose it, and a model of "what would an intervention have done here" has nothing to learn
from elsewhere. An exploration run (bench_suite.py --policy learned --set controller.explore=0.5 --set
controller.learned.min_decisions=100000) takes a uniform pick among the permitted actions on about half its
rounds and the rules' pick otherwise, the logged randomisation a contextual bandit is fitted from. Its policy file
is only a ticket through the adoption gate: no action is trusted, so it never chooses; `--behaviour FILE` fits one
on --fit's runs.

    python benchmarks/bench_folds.py --fit bench-out/folds/fit.json --baseline bench-out/folds/baseline.json \\
        --out bench-out/folds.json

Writes JSON (after every run), a markdown table beside it (per world learned vs rules vs fixed, the mean over
worlds; per fold the policy, its fit, exploration and the envelope), printed too, and one PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import keys_dir_for
from _folds import (
    FitRun,
    Fold,
    Key,
    baseline_runs,
    check_workspaces,
    envelope_of_run,
    fit_candidates,
    load_explore,
    load_suites,
    plan_folds,
)
from _folds_report import LABELS, report
from bench_suite import Builds, Job, ensure_models, run_job

from guardrails import keys
from tools.worlds.tiny.failures import SCENARIOS

REPO = Path(__file__).resolve().parents[1]


def fit_fold(fold: Fold, out: Path, keys_dir: Path) -> dict[str, Any]:
    """`tether controller fit` on the fold's runs, in a subprocess: what it reports (sha256, bytes, decisions,
    per-action counts, fit seconds) with its wall seconds, the runs by world, seed and behaviour, and `error`
    instead where it refused (exit 2: too little history)."""
    done, wall = controller_fit(fold.fit_runs, out, keys_dir)
    fitted_on = [{"world": r.world, "seed": r.seed, "run_id": r.run_id, "behaviour": r.behaviour}
                 for r in fold.fit_runs]
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        return {"error": f"exit {done.returncode}: {why[-1] if why else 'no output'}", "wall_s": wall,
                "fitted_on": fitted_on}
    doc = json.loads(done.stdout)
    return {"file": str(out), "sha256": doc["sha256"], "bytes": doc["bytes"], "decisions": doc["decisions"],
            "actions": doc["actions"], "fit_s": doc["fit_seconds"], "wall_s": wall, "fitted_on": fitted_on}


def controller_fit(runs: Sequence[FitRun], out: Path,
                   keys_dir: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """`tether controller fit --json` on `runs` (the first run's workspace as --home, the others' databases as
    --from-db), as a user would run it, with its wall seconds."""
    first, *others = runs
    command = [sys.executable, "-m", "agent.cli", "--home", str(first.workspace), "controller", "fit",
               *[a for r in runs for a in ("--runs", r.run_id)],
               *[a for r in others for a in ("--from-db", str(r.db))], "--out", str(out), "--json"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           keys.KEYS_ENV: str(keys_dir)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    return done, round(time.perf_counter() - started, 2)


def write_behaviour(candidates: Sequence[FitRun], out: Path, keys_dir: Path) -> None:
    """--behaviour: the exploration runs' policy file, fitted on every --fit run (its choices never read it)."""
    done, _ = controller_fit(candidates, out.resolve(), keys_dir)
    if done.returncode != 0:
        raise SystemExit(f"tether controller fit refused: {(done.stderr or done.stdout).strip()}")
    print(f"wrote {out}: the exploration runs' behaviour file (their choices never read it)", flush=True)


def learned_run(job: Job, fit: dict[str, Any], rounds: int, model_dir: Path, root: Path, keys_dir: Path,
                overrides: Sequence[str]) -> dict[str, Any]:
    """The tether system on the fold's world and an evaluation seed with the fold's policy (bench_suite's
    run_job), labelled learned, with the envelope check of its decisions read from its workspace."""
    result = run_job(job, rounds, model_dir, root, keys_dir, overrides, Path(fit["file"]))
    result["envelope"] = envelope_of_run(Path(result["workspace"]) / "tether.db", result["run_id"], fit["sha256"])
    return {**result, "system": "learned", "fold": job.world, "policy_sha256": fit["sha256"]}


def settings_of(args: argparse.Namespace, docs: list[dict[str, Any]], folds: Sequence[Fold],
                rounds: int, overrides: list[str], builds: Builds) -> dict[str, Any]:
    return {"folds": [f.world for f in folds], "fit": [str(p) for p in args.fit],
            "baseline": [str(p) for p in args.baseline], "fit_seeds": args.fit_seeds, "eval_seeds": args.eval_seeds,
            "rounds": rounds, "overrides": overrides, "learned_overrides": args.overrides,
            "explore": [str(p) for p in args.explore],
            "fit_worlds": sorted({r.world for f in folds for r in f.fit_runs}),
            "baseline_runs_here": not args.no_baseline_runs,
            "models": {f"{w}/s{seed}": str(p) for (w, seed), (p, _) in builds.items()},
            "suite_wall_s": round(sum(float(d.get("wall_s") or 0.0) for d in docs), 1)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", type=Path, nargs="+", default=[], metavar="JSON",
                        help="bench_suite outputs whose tether runs on --fit-seeds are fitted on (kept workspaces).")
    parser.add_argument("--explore", type=Path, nargs="+", default=[], metavar="JSON",
                        help="bench_suite outputs of exploration runs on --fit-seeds, fitted on with --fit's (kept "
                        "workspaces).")
    parser.add_argument("--behaviour", type=Path, default=None, metavar="FILE",
                        help="Only write the exploration runs' policy file, fitted on every --fit run, and exit.")
    parser.add_argument("--baseline", type=Path, nargs="+", default=[], metavar="JSON",
                        help="bench_suite outputs with the tether and fixed runs on --eval-seeds (may be --fit's).")
    parser.add_argument("--world", nargs="+", default=None,
                        help="The folds: worlds to leave out in turn (default: every world with runs in --fit).")
    parser.add_argument("--fit-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--rounds", type=int, default=None, help="Rounds per run (default and only value: the "
                        "suites').")
    parser.add_argument("--out", type=Path, default=Path("bench-out/folds.json"))
    parser.add_argument("--models", type=Path, default=None, help="Where models are built (default: models/ beside "
                        "--out), as bench_suite.py.")
    parser.add_argument("--model", type=Path, default=None, help="A saved model folder every seed runs on instead "
                        "of the worlds' model built per seed, as bench_suite.py.")
    parser.add_argument("--home", type=Path, default=None, help="Folder for the runs' workspaces (default: a temp "
                        "dir, removed at the end).")
    parser.add_argument("--keys-dir", type=Path, default=None,
                        help="Key folder of the benchmark's reviewer 'bench' (default: keys/ beside --out).")
    parser.add_argument("--no-baseline-runs", action="store_true",
                        help="Run no missing baseline: report those cells as missing.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="A config setting of the learned runs only (repeatable), e.g. controller.explore=0 to "
                        "evaluate the policy's own picks without exploration; the baselines run as the suites did.")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="PART",
                        help="Run nothing: write --out's report from these parts' JSON (folds run apart, e.g. one "
                        "process per core, each on some worlds).")
    return parser


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    if not args.fit:
        parser.error("--fit JSON is required (or --merge PART ... to report on folds already run)")
    docs = load_suites(args.fit + args.baseline)
    suite_rounds, overrides = int(docs[0]["settings"]["rounds"]), list(docs[0]["settings"].get("overrides") or [])
    if args.rounds is not None and args.rounds != suite_rounds:
        parser.error(f"--rounds {args.rounds}: the suites ran {suite_rounds}; the folds compare runs of one length")
    candidates = fit_candidates(docs[:len(args.fit)], args.fit_seeds)
    if args.behaviour is not None:
        write_behaviour(candidates, args.behaviour, (args.keys_dir or keys_dir_for(args.out)).resolve())
        return
    candidates += fit_candidates(load_explore(args.explore, suite_rounds), args.fit_seeds, "explore")
    worlds = list(dict.fromkeys(args.world or [c.world for c in candidates]))
    unknown = sorted(set(worlds) - set(SCENARIOS))
    if unknown:
        parser.error(f"--world {unknown}: not failure worlds (known: {', '.join(sorted(SCENARIOS))})")
    folds = plan_folds(candidates, worlds, args.fit_seeds, args.eval_seeds)
    check_workspaces(folds)
    baselines, missing = baseline_runs(docs[len(args.fit):], worlds, args.eval_seeds)
    run(args, docs, folds, suite_rounds, overrides, baselines, missing)


def run(args: argparse.Namespace, docs: list[dict[str, Any]], folds: Sequence[Fold], rounds: int,
        overrides: list[str], baselines: dict[Key, dict[str, Any]], missing: list[Key]) -> None:
    """Fit and run every fold, then the missing baselines; the report after every run and at the end. Exit 1
    where a fold could not be fitted (its cells stay empty in the report)."""
    to_run = [] if args.no_baseline_runs else missing
    worlds = [f.world for f in folds]
    builds: Builds = ({(w, seed): (args.model.resolve(), 0.0) for w in worlds for seed in args.eval_seeds}
                      if args.model is not None else ensure_models(args.eval_seeds, worlds,
                                                                    args.models or args.out.parent / "models"))
    settings = settings_of(args, docs, folds, rounds, overrides, builds)
    settings["baseline_missing"] = [f"{w}/{s}/s{seed}" for w, s, seed in missing if not to_run]
    keys_dir = (args.keys_dir or keys_dir_for(args.out)).resolve()
    policies = args.out.with_name(args.out.stem + "-policies")
    policies.mkdir(parents=True, exist_ok=True)
    root = args.home or Path(tempfile.mkdtemp(prefix="tether-bench-folds-"))
    root.mkdir(parents=True, exist_ok=True)
    runs = [{**r, "system": LABELS[r["system"]]} for r in baselines.values()]
    fits: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()

    def progress() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"settings": settings, "fits": fits, "runs": runs,
                                        "wall_s": round(time.perf_counter() - started, 1)}, indent=2) + "\n")

    try:
        for fold in folds:
            fits[fold.world] = fit = fit_fold(fold, (policies / f"{fold.world}.json").resolve(), keys_dir)
            print(f"fold {fold.world}: fitted on {len(fold.fit_runs)} run(s): "
                  + (fit.get("error") or f"{fit['decisions']} decisions, sha256 {fit['sha256'][:12]}, "
                     f"{fit['bytes']} bytes, {fit['fit_s']} s"), flush=True)
            progress()
            if "error" in fit:
                continue
            for seed in args.eval_seeds:
                job = Job(fold.world, "tether", seed)
                result = learned_run(job, fit, rounds, builds[(fold.world, seed)][0], root, keys_dir,
                                     [*overrides, *args.overrides])
                runs.append(result)
                print(f"  {fold.world} / learned / seed {seed}: {result['learned']}, envelope "
                      f"{result['envelope']['violations']} violation(s)", flush=True)
                progress()
        for world, system, seed in to_run:
            print(f"baseline {world} / {system} / seed {seed}: not in --baseline, running it", flush=True)
            result = run_job(Job(world, system, seed), rounds, builds[(world, seed)][0], root, keys_dir, overrides)
            runs.append({**result, "system": LABELS[system]})
            progress()
    finally:
        if args.home is None:
            shutil.rmtree(root, ignore_errors=True)
    report(args.out, settings, fits, runs, round(time.perf_counter() - started, 1))
    if any("error" in f for f in fits.values()):
        raise SystemExit(1)

MERGED_SAME = ("fit", "explore", "fit_seeds", "eval_seeds", "rounds", "overrides", "learned_overrides")  # what parts of one evaluation share


def merge(parts: Sequence[Path], out: Path) -> None:
    """One report from folds run apart: their fits and runs together, refused unless every part fitted on the same
    suites and seeds and evaluated on the same seeds, and no fold or run is in two parts."""
    docs = [json.loads(Path(p).read_text()) for p in parts]
    for path, doc in zip(parts, docs, strict=True):
        differs = [k for k in MERGED_SAME if doc["settings"].get(k) != docs[0]["settings"].get(k)]
        if differs:
            raise SystemExit(f"{path} differs from {parts[0]} in {', '.join(differs)}: parts of one evaluation "
                             "share them")
    folds = [w for d in docs for w in d["settings"]["folds"]]
    runs = [r for d in docs for r in d["runs"]]
    seen = [(r["world"], r["system"], r["seed"]) for r in runs]
    twice = sorted({w for w in folds if folds.count(w) > 1}) + sorted({j for j in seen if seen.count(j) > 1})
    if twice:
        raise SystemExit(f"in more than one part: {twice}")
    settings = {**docs[0]["settings"], "folds": folds,
                "fit_worlds": sorted({w for d in docs for w in d["settings"]["fit_worlds"]}),
                "models": {k: v for d in docs for k, v in d["settings"]["models"].items()},
                "baseline_missing": [m for d in docs for m in d["settings"].get("baseline_missing", [])],
                "suite_wall_s": sum(float(d["settings"].get("suite_wall_s") or 0.0) for d in docs),
                "merged_from": [str(p) for p in parts]}
    report(out, settings, {w: f for d in docs for w, f in d["fits"].items()}, runs,
           round(sum(float(d.get("wall_s") or 0.0) for d in docs), 1))


if __name__ == "__main__":
    main()
