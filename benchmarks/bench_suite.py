"""Benchmark: every system on every failure world (tools/worlds/tiny/failures/), seeds x rounds.

Systems, each on the world's scenario (the judge, pools and constitution a user would configure for it,
the same for every system) with the same model, prompts and sample budget:

- tether: `tether init`'s defaults, nothing tuned per world (its interventions as shipped);
- fixed: the same with `controller.interventions: []`;
- regularized: the fixed recipe with `pairs.strategy: regularized` from round 1;
- self_rewarding: the policy judges itself (`judge.name: self`), a fixed recipe of 3 iterations, then
  carried forward (marked);
- online_dpo: TRL's online DPO (benchmarks/_online_dpo.py) with the same LoRA, the scenario's first judge as
  its reward and the same samples per round; where `trl.experimental.online_dpo` is installed.

Each tether-system run has a workspace of its own (an approved amendment changes the workspace's
constitution, so runs must not share one), started with the scenario's constitution; a thread approves
every candidate that passes the invariants and every amendment the agent proposes, as a reviewer would.
Models are built once per seed into --models and shared by every world and system (model.base names the
folder). Per run it records the held-out oracle of the active policy per round, where tether intervened,
and wall and CPU seconds. It writes JSON (after every run), a markdown table (round-N held-out per world
and system, the mean over worlds and the mean rank, CPU seconds) beside it, printed too, and one PNG grid
(a panel per world: held-out oracle per round, mean and spread per system, markers where tether
intervened).

    python benchmarks/bench_suite.py --world prompt_saturation unreliable_judge --systems tether fixed \\
        --seeds 0 --rounds 3 --out bench-out/suite.json

`--policy learned --policy-file F`: the tether system runs with the fitted controller policy F, adopted in each
workspace (proposed by `bench-fit`, signed by the bench reviewer); each run records how often it chose, explored
and chose otherwise than the rules. Issue 22's leave-one-world-out folds: fit on seeds 0-2 of all worlds but one,
run `--seeds 3 4 5` with it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _online_dpo
import yaml
from _common import (
    SELF_REWARDING_ITERATIONS,
    apply_overrides,
    apply_recipe,
    fresh_workspace,
    keys_dir_for,
    run_system,
)
from _suite_report import markdown_table, mean_ranks, plot_grid, summarise, value

from agent.config import TetherConfig, default_config_yaml, parse_config
from agent.controller.learned import PolicyFileError, load_policy
from guardrails import controller_policy
from guardrails.constitution import default_constitution_yaml
from memory import Store
from tools.worlds import WORLDS, ModelBuilder
from tools.worlds.tiny.failures import SCENARIOS, Scenario

SYSTEMS: tuple[str, ...] = ("tether", "fixed", "regularized", "self_rewarding", _online_dpo.SYSTEM)


@dataclass(frozen=True)
class Job:
    world: str
    system: str
    seed: int


def plan(worlds: Sequence[str], systems: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    """Every world x system x seed, seeds outermost (a seed's model is built once, before its first run)."""
    return [Job(w, s, seed) for seed in seeds for w in worlds for s in systems]


# -- configuration ----------------------------------------------------------------------------------------

def scenario_doc(world: str, scenario: Scenario, seed: int, rounds: int, model_base: str,
                 overrides: Sequence[str] = ()) -> dict[str, Any]:
    """`tether init`'s config with the world, the scenario's sections (each replaces the keys it names), the
    seed, the round budget and the shared model; tracking off (a harness setting, no behaviour)."""
    doc: dict[str, Any] = yaml.safe_load(default_config_yaml())
    doc["seed"] = seed
    doc["tracking"]["mode"] = "disabled"
    doc["world"] = {"name": world, "settings": {}}
    for section, values in scenario.config.items():
        doc[section] = {**(doc.get(section) or {}), **json.loads(json.dumps(values))}  # a copy: scenarios are shared
    doc["controller"]["rounds"] = rounds
    doc["model"]["base"] = model_base
    apply_overrides(doc, list(overrides))
    return doc


def system_config(job: Job, rounds: int, model_base: str, overrides: Sequence[str] = ()) -> TetherConfig:
    """The config `job.system` runs `job.world` with (online_dpo reads the tether recipe's)."""
    doc = scenario_doc(job.world, SCENARIOS[job.world], job.seed, rounds, model_base, overrides)
    apply_recipe(doc, "tether" if job.system == _online_dpo.SYSTEM else job.system, rounds)
    return parse_config(doc, f"bench-suite/{job.world}/{job.system}")


Builds = dict[tuple[str, int], tuple[Path, float]]  # (world, seed) -> (model folder, build seconds)


def ensure_models(seeds: Sequence[int], worlds: Sequence[str], models: Path) -> Builds:
    """The model each world runs on per seed, built into `models` (kept between runs of the benchmark): (world,
    seed) -> (its folder, seconds spent on it: a build, or only the check that it is built). The
    failure worlds of a seed share the tiny model of that seed, so each seed is built once."""
    out: dict[tuple[str, int], tuple[Path, float]] = {}
    built: set[Path] = set()
    for seed in seeds:
        for world in worlds:
            builder = WORLDS.build(world, {}, seed=seed).plugin
            if not isinstance(builder, ModelBuilder):
                raise SystemExit(f"world {world} builds no model: pass --model DIR")
            folder = (models / builder.model_folder).resolve()
            started = time.perf_counter()
            if folder not in built:
                if builder.model_state(folder) != "built":
                    print(f"seed {seed}: building {builder.model_label} in {folder} ({builder.build_estimate})",
                          flush=True)
                builder.build_model(folder, progress=False, rebuild=False, threads="auto")
                built.add(folder)
            out[(world, seed)] = (folder, round(time.perf_counter() - started, 1))
    return out


# -- running ----------------------------------------------------------------------------------------------

def run_job(job: Job, rounds: int, model_dir: Path, root: Path, keys_dir: Path,
            overrides: Sequence[str] = (), policy_file: Path | None = None) -> dict[str, Any]:
    """One system on one world and seed, in a workspace of its own under `root`; its curve, wall and CPU s.
    `policy_file`: the tether system runs with that learned controller policy, adopted in its workspace."""
    scenario = SCENARIOS[job.world]
    learned = policy_file is not None and job.system == "tether"
    if learned:
        overrides = [*overrides, "controller.policy=learned", f"controller.policy_file={policy_file}"]
    config = system_config(job, rounds, str(model_dir), overrides)
    home = Path(tempfile.mkdtemp(prefix=f"{job.world}-{job.system}-s{job.seed}-", dir=root))
    cpu0 = time.process_time()
    if job.system == _online_dpo.SYSTEM:
        world = WORLDS.build(job.world, {}, seed=job.seed).plugin
        result = _online_dpo.run_online_dpo(world, config, scenario.constitution or default_constitution_yaml(),
                                            model_dir, rounds, home)
    else:
        ws, signer = fresh_workspace(home, keys_dir, scenario.constitution)
        if learned and policy_file is not None:
            with Store(ws.db_path) as store:
                approval = controller_policy.propose(store, policy_file.read_text(), "bench-suite", "bench-fit")
                controller_policy.decide(store, approval.id, "approve", signer, "bench-suite --policy learned")
        result = run_system(ws, signer, job.system, config, rounds, approve_amendments=True)
        if learned:
            result["learned"] = learned_choices(ws.db_path, result["run_id"])
    result["cpu_s"] = round(time.process_time() - cpu0, 1)
    return {"world": job.world, "seed": job.seed, **result, "system": job.system, "workspace": str(home)}


def learned_choices(db: Path, run_id: str) -> dict[str, int]:
    """How often a run's learned policy chose, explored, and chose otherwise than the rules would have."""
    with Store(db, readonly=True) as store:
        chosen = [d for d in store.decisions(run_id) if "learned" in d.signals]
    return {"decisions": len(chosen), "explored": sum(bool(d.signals["learned"]["explored"]) for d in chosen),
            "otherwise": sum(d.action != d.signals["learned"]["rules_choice"] for d in chosen)}


# -- the command ------------------------------------------------------------------------------------------

def _write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", nargs="+", default=sorted(SCENARIOS), choices=sorted(SCENARIOS))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    # Seed 0 tunes defaults; 1-3 evaluate them. 6 rounds for every system keeps the whole suite near 2 CPU-hours.
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("bench-out/suite.json"))
    parser.add_argument("--models", type=Path, default=None, help="Where models are built (default: models/ beside "
                        "--out; kept, so a later run reuses them).")
    parser.add_argument("--model", type=Path, default=None, help="A saved model folder every seed runs on instead "
                        "of the worlds' model built per seed (e.g. a prebuilt tiny model).")
    parser.add_argument("--home", type=Path, default=None, help="Folder for the runs' workspaces (default: a temp "
                        "dir, removed at the end).")
    parser.add_argument("--keys-dir", type=Path, default=None,
                        help="Key folder of the benchmark's reviewer 'bench' (default: keys/ beside --out).")
    parser.add_argument("--policy", choices=("rules", "learned"), default="rules",
                        help="The tether system's controller.policy; learned needs --policy-file.")
    parser.add_argument("--policy-file", type=Path, default=None,
                        help="A fitted controller policy (`tether controller fit`) for --policy learned.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Config override for every system and world, VALUE in YAML (repeatable).")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="PART",
                        help="Run nothing: write --out's report from these parts' JSON (suites run apart).")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    if (args.policy == "learned") != (args.policy_file is not None):
        parser.error("--policy learned and --policy-file F go together")
    policy_sha = None
    if args.policy_file is not None:
        args.policy_file = args.policy_file.resolve()
        try:
            policy_sha = load_policy(args.policy_file)[1]
        except PolicyFileError as err:
            parser.error(str(err))
    systems = list(dict.fromkeys(args.systems))
    if _online_dpo.SYSTEM in systems and not _online_dpo.available():
        print(f"{_online_dpo.SYSTEM} left out: {_online_dpo.MODULE} is not installed (TRL with online DPO)")
        systems.remove(_online_dpo.SYSTEM)
    worlds = list(dict.fromkeys(args.world))
    models = args.models or args.out.parent / "models"
    root = args.home or Path(tempfile.mkdtemp(prefix="tether-bench-suite-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    builds: Builds = ({(w, seed): (args.model.resolve(), 0.0) for w in worlds for seed in args.seeds}
              if args.model is not None else ensure_models(args.seeds, worlds, models))
    build_s = {f"{w}/s{seed}": b for (w, seed), (_, b) in builds.items() if b}
    settings = {"worlds": worlds, "systems": systems, "seeds": args.seeds, "rounds": args.rounds,
                "policy": args.policy, "policy_file": str(args.policy_file or ""), "policy_sha256": policy_sha,
                "overrides": args.overrides, "models": {f"{w}/s{seed}": str(p) for (w, seed), (p, _) in builds.items()},
                "self_rewarding_iterations": SELF_REWARDING_ITERATIONS,
                "scenarios": {w: {"config": SCENARIOS[w].config, "failure": SCENARIOS[w].failure,
                                  "monitor": SCENARIOS[w].monitor, "reaction": SCENARIOS[w].reaction,
                                  "constitution": "default" if SCENARIOS[w].constitution is None else "own"}
                              for w in worlds}}
    results: list[dict[str, Any]] = []
    keys_dir = args.keys_dir or keys_dir_for(args.out)
    try:
        for job in plan(worlds, systems, args.seeds):
            print(f"{job.world} / {job.system} / seed {job.seed}: {args.rounds} round(s)", flush=True)
            result = run_job(job, args.rounds, builds[(job.world, job.seed)][0], root, keys_dir, args.overrides,
                             args.policy_file)
            results.append(result)
            print(f"  -> held-out {value(result, args.rounds)} after {result['rounds_run']} round(s), "
                  f"interventions {result['interventions']}, {result['wall_s']} s wall, {result['cpu_s']} s CPU",
                  flush=True)
            _write(args.out, {"settings": settings, "model_build_s": build_s,
                              "runs": results, "summary": summarise(results, args.rounds),
                              "wall_s": round(time.perf_counter() - started, 1)})
    finally:
        if args.home is None:
            shutil.rmtree(root, ignore_errors=True)
    report(args.out, settings, build_s, results, round(time.perf_counter() - started, 1))


def report(out: Path, settings: dict[str, Any], build_s: dict[str, float], results: list[dict[str, Any]],
           wall_s: float) -> None:
    """The suite's JSON, markdown table and PNG grid from its runs, printed too."""
    worlds, systems, rounds = settings["worlds"], settings["systems"], settings["rounds"]
    summary = summarise(results, rounds)
    table = markdown_table(summary, systems, rounds)
    worlds_md = "\n".join(f"- {w}: {SCENARIOS[w].failure}; shows in {SCENARIOS[w].monitor}; fix: "
                          f"{SCENARIOS[w].reaction}" for w in worlds)
    out.with_suffix(".md").write_text(f"{table}\n\n{worlds_md}\n")
    _write(out, {"settings": settings, "model_build_s": build_s, "runs": results,
                 "summary": summary, "mean_rank": mean_ranks(summary, systems), "table": table, "wall_s": wall_s})
    plot_grid(summary, rounds, out.with_suffix(".png"))
    print(f"\n{table}\n\n{worlds_md}\n\nwrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")


def merge(parts: Sequence[Path], out: Path) -> None:
    """One report from parts of the suite run apart (e.g. one process per core, each on some worlds or seeds):
    their runs together, refused unless every part ran the same rounds, policy and overrides. Wall seconds are
    the parts' sum (their CPU seconds are per run, as always)."""
    docs = [json.loads(Path(p).read_text()) for p in parts]
    keys = ("rounds", "policy", "policy_sha256", "overrides")
    for path, doc in zip(parts, docs, strict=True):
        differs = [k for k in keys if doc["settings"].get(k) != docs[0]["settings"].get(k)]
        if differs:
            raise SystemExit(f"{path} differs from {parts[0]} in {', '.join(differs)}: parts of one suite share them")
    runs = [run for doc in docs for run in doc["runs"]]
    seen = [(r["world"], r["system"], r["seed"]) for r in runs]
    twice = sorted({job for job in seen if seen.count(job) > 1})
    if twice:
        raise SystemExit(f"runs in more than one part: {twice}")
    settings = {**docs[0]["settings"],
                "worlds": list(dict.fromkeys(w for d in docs for w in d["settings"]["worlds"])),
                "systems": [s for s in SYSTEMS if any(s in d["settings"]["systems"] for d in docs)],
                "seeds": sorted({s for d in docs for s in d["settings"]["seeds"]}),
                "models": {k: v for d in docs for k, v in d["settings"]["models"].items()},
                "scenarios": {k: v for d in docs for k, v in d["settings"]["scenarios"].items()},
                "merged_from": [str(p) for p in parts]}
    report(out, settings, {k: v for d in docs for k, v in d["model_build_s"].items()}, runs,
           round(sum(float(d.get("wall_s") or 0.0) for d in docs), 1))


if __name__ == "__main__":
    main()
