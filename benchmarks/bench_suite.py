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
import math
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
    mean_sd,
    run_system,
)

from agent.config import TetherConfig, default_config_yaml, parse_config
from agent.controller.learned import PolicyFileError, load_policy
from guardrails import controller_policy
from guardrails.constitution import default_constitution_yaml
from memory import Store
from tools.worlds import WORLDS, ModelBuilder
from tools.worlds.tiny.failures import SCENARIOS, Scenario

SYSTEMS: tuple[str, ...] = ("tether", "fixed", "regularized", "self_rewarding", _online_dpo.SYSTEM)
COLOURS = {"tether": "tab:blue", "fixed": "tab:orange", "regularized": "tab:purple", "self_rewarding": "tab:green",
           _online_dpo.SYSTEM: "tab:red"}


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
    return {"world": job.world, "seed": job.seed, **result, "system": job.system}


def learned_choices(db: Path, run_id: str) -> dict[str, int]:
    """How often a run's learned policy chose, explored, and chose otherwise than the rules would have."""
    with Store(db, readonly=True) as store:
        chosen = [d for d in store.decisions(run_id) if "learned" in d.signals]
    return {"decisions": len(chosen), "explored": sum(bool(d.signals["learned"]["explored"]) for d in chosen),
            "otherwise": sum(d.action != d.signals["learned"]["rules_choice"] for d in chosen)}


# -- aggregation ------------------------------------------------------------------------------------------

def _value(run: dict[str, Any], r: int) -> float | None:
    point = run["curve"][r] if r < len(run["curve"]) else None
    return None if point is None or point.get("oracle") is None else float(point["oracle"])


def summarise(results: Sequence[dict[str, Any]], rounds: int) -> dict[str, dict[str, Any]]:
    """world -> system -> per-round mean/sd/n over seeds, the round-`rounds` value, CPU and wall seconds, and
    where the runs intervened (by seed)."""
    out: dict[str, dict[str, Any]] = {}
    for world in dict.fromkeys(r["world"] for r in results):
        out[world] = {}
        for system in dict.fromkeys(r["system"] for r in results if r["world"] == world):
            runs = [r for r in results if r["world"] == world and r["system"] == system]
            per_round = []
            for r in range(rounds + 1):
                values = [v for v in (_value(run, r) for run in runs) if v is not None]
                mean, sd = mean_sd(values)
                carried = sum(bool(run["curve"][r].get("carried")) for run in runs if r < len(run["curve"]))
                per_round.append({"round": r, "mean": mean, "sd": sd, "n": len(values), "carried": carried})
            final = [v for v in (_value(run, rounds) for run in runs) if v is not None]
            cpu = [float(run["cpu_s"]) for run in runs]
            out[world][system] = {
                "seeds": [run["seed"] for run in runs], "per_round": per_round,
                "final": {"mean": per_round[rounds]["mean"], "sd": per_round[rounds]["sd"], "per_seed": final},
                "cpu_s": {"mean": mean_sd(cpu)[0], "total": sum(cpu)},
                "wall_s": {"mean": mean_sd([float(run["wall_s"]) for run in runs])[0]},
                "intervention_rounds": {run["seed"]: run["intervention_rounds"] for run in runs},
                "interventions": {run["seed"]: run["interventions"] for run in runs}}
    return out


def mean_ranks(summary: dict[str, dict[str, Any]], systems: Sequence[str]) -> dict[str, float | None]:
    """Per system, its rank by round-N mean within each world (1 = best, ties share the mean of their ranks),
    averaged over the worlds where it has a value."""
    ranks: dict[str, list[float]] = {s: [] for s in systems}
    for per_system in summary.values():
        scored = sorted(((v["final"]["mean"], s) for s, v in per_system.items()
                         if s in ranks and v["final"]["mean"] is not None), reverse=True)
        i = 0
        while i < len(scored):
            j = i
            while j + 1 < len(scored) and math.isclose(scored[j + 1][0], scored[i][0], abs_tol=1e-12):
                j += 1
            for k in range(i, j + 1):
                ranks[scored[k][1]].append((i + j) / 2 + 1)
            i = j + 1
    return {s: (sum(v) / len(v) if v else None) for s, v in ranks.items()}


def mean_over_worlds(summary: dict[str, dict[str, Any]], system: str) -> tuple[float | None, int]:
    """The mean of a system's round-N means over the worlds where it has one, and how many worlds that is."""
    values = [per[system]["final"]["mean"] for per in summary.values()
              if system in per and per[system]["final"]["mean"] is not None]
    return (sum(values) / len(values) if values else None), len(values)


def _cell(mean: float | None, sd: float | None) -> str:
    return "–" if mean is None else f"{mean:.3f} ± {sd or 0.0:.3f}"


def markdown_table(summary: dict[str, dict[str, Any]], systems: Sequence[str], rounds: int) -> str:
    """Round-`rounds` held-out oracle, mean ± sd over seeds, per world and system; the mean over worlds, the mean
    rank, and CPU seconds per run (mean) and in all beside them."""
    shown = [s for s in systems if any(s in per for per in summary.values())]
    lines = [f"| world (round {rounds} held-out oracle) | " + " | ".join(shown) + " |",
             "|---|" + "---|" * len(shown)]
    for world, per in summary.items():
        lines.append(f"| {world} | " + " | ".join(
            _cell(per[s]["final"]["mean"], per[s]["final"]["sd"]) if s in per else "–" for s in shown) + " |")
    n_worlds = len(summary)
    over = [mean_over_worlds(summary, s) for s in shown]
    lines.append("| mean over worlds | " + " | ".join(
        "–" if m is None else f"{m:.3f}" + ("" if n == n_worlds else f" ({n} of {n_worlds})") for m, n in over) + " |")
    ranks = mean_ranks(summary, shown)
    lines.append("| mean rank (1 = best) | " + " | ".join(
        "–" if ranks[s] is None else f"{ranks[s]:.2f}" for s in shown) + " |")
    cpu = {s: [per[s]["cpu_s"] for per in summary.values() if s in per] for s in shown}
    runs = {s: sum(len(per[s]["seeds"]) for per in summary.values() if s in per) for s in shown}
    lines.append("| CPU s per run (mean) | " + " | ".join(
        f"{sum(c['total'] for c in cpu[s]) / max(runs[s], 1):.0f}" for s in shown) + " |")
    lines.append("| CPU s in all | " + " | ".join(f"{sum(c['total'] for c in cpu[s]):.0f}" for s in shown) + " |")
    return "\n".join(lines)


def intervention_counts(summary: dict[str, dict[str, Any]], world: str) -> dict[int, int]:
    """Round -> how many of tether's seeds intervened on it, on `world`."""
    counts: dict[int, int] = {}
    for rounds_of_seed in summary.get(world, {}).get("tether", {}).get("intervention_rounds", {}).values():
        for r in rounds_of_seed:
            counts[int(r)] = counts.get(int(r), 0) + 1
    return counts


def plot_grid(summary: dict[str, dict[str, Any]], rounds: int, path: Path) -> None:
    """One panel per world: held-out oracle per round, mean ± sd per system, ▲ where tether intervened."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = list(summary)
    cols = min(4, len(worlds))
    rows = math.ceil(len(worlds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), sharey=True, squeeze=False)
    xs = list(range(rounds + 1))
    for ax, world in zip(axes.flat, worlds, strict=False):
        for system, data in summary[world].items():
            mean = [r["mean"] if r["mean"] is not None else float("nan") for r in data["per_round"]]
            sd = [r["sd"] or 0.0 for r in data["per_round"]]
            colour = COLOURS.get(system)
            ax.plot(xs, mean, marker="o", ms=3, color=colour, label=f"{system} (n={len(data['seeds'])})")
            ax.fill_between(xs, [m - s for m, s in zip(mean, sd, strict=True)],
                            [m + s for m, s in zip(mean, sd, strict=True)], color=colour, alpha=0.15)
            if system == "self_rewarding" and SELF_REWARDING_ITERATIONS < rounds:
                ax.axvline(SELF_REWARDING_ITERATIONS, color=colour, ls=":", lw=1)
        for r, n in sorted(intervention_counts(summary, world).items()):
            ax.plot([r], [0.0], marker="^", color=COLOURS["tether"], ms=6)
            ax.annotate(str(n), (r, 0.0), xytext=(0, 5), textcoords="offset points", ha="center", fontsize=7,
                        color=COLOURS["tether"])
        ax.set_title(world, fontsize=10)
        ax.set_xticks(xs)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(worlds):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("held-out oracle")
    axes.flat[0].legend(loc="upper left", fontsize=7)
    fig.suptitle("held-out oracle of the active policy, mean ± sd over seeds; ▲ = rounds tether intervened "
                 "(number of seeds)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command ------------------------------------------------------------------------------------------

def _write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", nargs="+", default=sorted(SCENARIOS), choices=sorted(SCENARIOS))
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=12)
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
    args = parser.parse_args()
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
    md_path, png_path = args.out.with_suffix(".md"), args.out.with_suffix(".png")

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
            print(f"  -> held-out {_value(result, args.rounds)} after {result['rounds_run']} round(s), "
                  f"interventions {result['interventions']}, {result['wall_s']} s wall, {result['cpu_s']} s CPU",
                  flush=True)
            _write(args.out, {"settings": settings, "model_build_s": build_s,
                              "runs": results, "summary": summarise(results, args.rounds),
                              "wall_s": round(time.perf_counter() - started, 1)})
    finally:
        if args.home is None:
            shutil.rmtree(root, ignore_errors=True)
    summary = summarise(results, args.rounds)
    table = markdown_table(summary, systems, args.rounds)
    worlds_md = "\n".join(f"- {w}: {SCENARIOS[w].failure}; shows in {SCENARIOS[w].monitor}; fix: "
                          f"{SCENARIOS[w].reaction}" for w in worlds)
    md_path.write_text(f"{table}\n\n{worlds_md}\n")
    _write(args.out, {"settings": settings, "model_build_s": build_s, "runs": results,
                      "summary": summary, "mean_rank": mean_ranks(summary, systems), "table": table,
                      "wall_s": round(time.perf_counter() - started, 1)})
    plot_grid(summary, args.rounds, png_path)
    print(f"\n{table}\n\n{worlds_md}\n\nwrote {args.out}, {md_path} and {png_path}")


if __name__ == "__main__":
    main()
