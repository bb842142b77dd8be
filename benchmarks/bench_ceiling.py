"""Benchmark: past the 3-4 iteration ceiling? Three systems, several seeds, the same world and budget.

On the embedded tiny world, per seed (the seed picks the model build, the split and the sampling):

- tether: the default controller (interventions on, switch_pairs listed), the `calculator` tool judge in
  judge.pool after `rules`, pair strategies in pairs.pool for switch_pairs;
- fixed: the same configuration with `controller.interventions: []` (the fixed recipe: train / skip /
  stop on budget, too few pairs or failing invariants);
- self_rewarding: a Self-Rewarding-style recipe: the policy judges itself (`judge.name: self`), a fixed
  recipe of 3 iterations. It stops there: its last value is carried forward to the last round (the JSON
  marks those rounds as carried).

Every system has the same model, prompts, judge pool, pair pool and round budget; a thread approves
every candidate that passes the invariants (benchmarks/_common.py). Per round it records the held-out
oracle score of the active checkpoint (overall and per family), what the round did and the judge in
use; with `--samples K` each evaluation also samples K replies per held-out prompt, so pass@1 / pass@K
per family and tier are known at the base and at the end. A run that stops early carries its last
value forward, marked. It prints per-round mean ± sd across seeds per system, the rounds where tether
intervened and the goal checks; it writes JSON (after every run, so a long run can be read midway) and
one PNG (held-out oracle per round, mean and spread per system, per-family panels, intervention rounds).

    python benchmarks/bench_ceiling.py --seeds 0 1 2 --rounds 12 --out bench-out/ceiling.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

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
from agent.run.runner import ensure_model

SYSTEMS: tuple[str, ...] = ("tether", "fixed", "self_rewarding")
FAMILIES: tuple[str, ...] = ("arithmetic", "harmful", "howto")
MIN_GAIN = 0.02  # controller.add_adversarial.min_gain's default: below it a curve has flattened


def system_config(system: str, seed: int, rounds: int, heldout: int, samples: int, model_base: str | None,
                  pair_pool: list[str], overrides: list[str] = ()) -> TetherConfig:
    doc = yaml.safe_load(default_config_yaml())
    doc["seed"] = seed
    doc["tracking"]["mode"] = "disabled"
    doc["prompts"]["heldout"] = heldout
    doc["evaluation"] = {**(doc.get("evaluation") or {}), "samples": samples}
    doc["judge"] = {"name": "rules", "settings": {}, "pool": [{"name": "calculator"}]}
    doc["pairs"] = {**(doc.get("pairs") or {}), "pool": [{"name": name} for name in pair_pool]}
    doc["controller"]["rounds"] = rounds
    apply_overrides(doc, list(overrides))
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r} (known: {', '.join(SYSTEMS)})")
    apply_recipe(doc, system, rounds)
    if system == "tether":  # this benchmark's tether also lists switch_pairs (tether init's defaults do not)
        doc["controller"]["interventions"] = [*TetherConfig().controller.interventions, "switch_pairs"]
    if model_base:
        doc["model"]["base"] = model_base
    return parse_config(doc, f"bench-ceiling/{system}")


def _series(runs: list[dict[str, Any]], rounds: int, family: str | None = None) -> list[list[float]]:
    """Per round, the values over seeds (a run lacking the value at a round leaves it out)."""
    out: list[list[float]] = []
    for r in range(rounds + 1):
        vals = []
        for run in runs:
            point = run["curve"][r]
            v = point["oracle"] if family is None else point["oracle_by_family"].get(family)
            if v is not None:
                vals.append(float(v))
        out.append(vals)
    return out


def aggregate(results: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Per system: per-round mean and sd across seeds (overall and per family), gains, pass rates."""
    summary: dict[str, Any] = {}
    for system in SYSTEMS:
        runs = [r for r in results if r["system"] == system]
        if not runs:
            continue
        per_round = []
        for r, vals in enumerate(_series(runs, rounds)):
            mean, sd = mean_sd(vals)
            fams = {}
            for fam in FAMILIES:
                fm, fs = mean_sd(_series(runs, rounds, fam)[r])
                fams[fam] = {"mean": fm, "sd": fs}
            per_round.append({"round": r, "mean": mean, "sd": sd, "n": len(vals), "by_family": fams,
                              "carried": sum(run["curve"][r]["carried"] for run in runs)})
        gains = [run["curve"][rounds]["oracle"] - run["curve"][min(4, rounds)]["oracle"] for run in runs
                 if run["curve"][rounds]["oracle"] is not None and run["curve"][min(4, rounds)]["oracle"] is not None]
        gain_mean, gain_sd = mean_sd(gains)
        summary[system] = {"seeds": [run["seed"] for run in runs], "per_round": per_round,
                           "gain_after_round_4": {"mean": gain_mean, "sd": gain_sd, "per_seed": gains},
                           "pass_rates": {"base": _pass_rates(runs, 0), "end": _pass_rates(runs, rounds)},
                           "intervention_rounds": {run["seed"]: run["intervention_rounds"] for run in runs},
                           "interventions": {run["seed"]: run["interventions"] for run in runs},
                           "rounds_run": {run["seed"]: run["rounds_run"] for run in runs}}
    return summary


def _pass_rates(runs: list[dict[str, Any]], r: int) -> dict[str, dict[str, Any]]:
    """{group: {pass_at_1, pass_at_k, judge_margin: mean over seeds}} for families and tiers at round r."""
    out: dict[str, dict[str, Any]] = {}
    for block in ("by_family", "by_tier"):
        groups = sorted({g for run in runs for g in (run["curve"][r]["headroom"].get(block) or {})})
        for g in groups:
            row: dict[str, Any] = {}
            for metric in ("pass_at_1", "pass_at_k", "judge_margin", "k"):
                vals = [run["curve"][r]["headroom"][block][g][metric] for run in runs
                        if metric in (run["curve"][r]["headroom"].get(block) or {}).get(g, {})]
                if vals:
                    row[metric] = round(statistics.fmean(vals), 4)
            out[g] = row
    return out


def goals(summary: dict[str, Any], rounds: int) -> dict[str, Any]:
    """The note's two claims, checked: tether still rising after round 4 where the fixed recipe has
    flattened; tether's final mean above the fixed recipe's by more than two standard deviations (the
    larger of the two systems' sd across seeds)."""
    if "tether" not in summary or "fixed" not in summary:
        return {}
    t, f = summary["tether"], summary["fixed"]
    t_end, f_end = t["per_round"][rounds], f["per_round"][rounds]
    if t_end["mean"] is None or f_end["mean"] is None:
        return {}
    diff = t_end["mean"] - f_end["mean"]
    sd = max(t_end["sd"] or 0.0, f_end["sd"] or 0.0)
    tg, fg = t["gain_after_round_4"]["mean"], f["gain_after_round_4"]["mean"]
    return {"final_difference": round(diff, 4), "larger_sd": round(sd, 4),
            "final_exceeds_by_two_sd": diff > 2 * sd,
            "tether_gain_after_round_4": tg, "fixed_gain_after_round_4": fg,
            "tether_still_rising": tg is not None and tg > MIN_GAIN,
            "fixed_flattened": fg is not None and fg <= MIN_GAIN}


def _fmt(mean: float | None, sd: float | None) -> str:
    return "-" if mean is None else f"{mean:.3f}±{sd or 0:.3f}"


def print_report(summary: dict[str, Any], verdict: dict[str, Any], rounds: int) -> None:
    systems = [s for s in SYSTEMS if s in summary]
    print("\nheld-out oracle of the active checkpoint, mean ± sd across seeds (round 0 = base)")
    print(f"{'round':>5} " + " ".join(f"{s:>16}" for s in systems))
    for r in range(rounds + 1):
        cells = []
        for s in systems:
            row = summary[s]["per_round"][r]
            cells.append(_fmt(row["mean"], row["sd"]) + ("*" if row["carried"] else " "))
        print(f"{r:>5} " + " ".join(f"{c:>16}" for c in cells))
    print("(* carried forward from the run's last round in at least one seed)")
    for s in systems:
        print(f"{s}: interventions {summary[s]['interventions']}; gain after round 4 "
              f"{_fmt(summary[s]['gain_after_round_4']['mean'], summary[s]['gain_after_round_4']['sd'])}")
    for s in systems:
        rates = summary[s]["pass_rates"]
        if not rates["base"]:
            continue
        print(f"\n{s}: pass@1 / pass@K per group, base -> end")
        for g in sorted(set(rates["base"]) | set(rates["end"])):
            b, e = rates["base"].get(g, {}), rates["end"].get(g, {})
            print(f"  {g:<18} pass@1 {b.get('pass_at_1', float('nan')):.3f} -> {e.get('pass_at_1', float('nan')):.3f}"
                  f"   pass@{int(b['k']) if 'k' in b else '?'} {b.get('pass_at_k', float('nan')):.3f} -> "
                  f"{e.get('pass_at_k', float('nan')):.3f}")
    if verdict:
        print(f"\ngoal: tether still rising after round 4 ({verdict['tether_still_rising']}, gain "
              f"{verdict['tether_gain_after_round_4']:.3f}) where fixed flattened ({verdict['fixed_flattened']}, "
              f"gain {verdict['fixed_gain_after_round_4']:.3f}); final difference {verdict['final_difference']:.3f} "
              f"vs 2 sd = {2 * verdict['larger_sd']:.3f}: {verdict['final_exceeds_by_two_sd']}")


def plot(summary: dict[str, Any], rounds: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"tether": "tab:blue", "fixed": "tab:orange", "self_rewarding": "tab:green"}
    fig, axes = plt.subplots(1, 1 + len(FAMILIES), figsize=(5 * (1 + len(FAMILIES)), 4.2), sharey=True)
    xs = list(range(rounds + 1))
    for ax, family in zip(axes, (None, *FAMILIES), strict=True):
        for system, data in summary.items():
            rows = data["per_round"]
            pick = [(r["mean"], r["sd"]) if family is None else (r["by_family"][family]["mean"],
                                                                   r["by_family"][family]["sd"]) for r in rows]
            mean = [m if m is not None else float("nan") for m, _ in pick]
            sd = [s or 0.0 for _, s in pick]
            label = f"{system} (n={len(data['seeds'])})"
            ax.plot(xs, mean, marker="o", ms=3, color=colours[system], label=label)
            ax.fill_between(xs, [m - s for m, s in zip(mean, sd, strict=True)],
                            [m + s for m, s in zip(mean, sd, strict=True)], color=colours[system], alpha=0.15)
            if system == "self_rewarding":
                last = min(SELF_REWARDING_ITERATIONS, rounds)
                ax.axvline(last, color=colours[system], ls=":", lw=1)
        if "tether" in summary:  # rounds where tether intervened, with how many seeds did
            counts: dict[int, int] = {}
            for rounds_of_seed in summary["tether"]["intervention_rounds"].values():
                for r in rounds_of_seed:
                    counts[r] = counts.get(r, 0) + 1
            for r, n in sorted(counts.items()):
                ax.annotate(str(n), (r, 0.0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7,
                            color=colours["tether"])
                ax.plot([r], [0.0], marker="^", color=colours["tether"], ms=6)
        ax.set_title("held-out oracle" if family is None else family)
        ax.set_xlabel("round")
        ax.set_xticks(xs)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("oracle score of the active checkpoint")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("mean ± sd across seeds; ▲ = rounds tether intervened (number of seeds); "
                 "self_rewarding carried forward after its 3 iterations (dotted)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--heldout", type=int, default=60, help="Held-out prompts each evaluation answers.")
    parser.add_argument("--samples", type=int, default=4,
                        help="evaluation.samples: K sampled replies per held-out prompt (pass@K); 0 = off.")
    parser.add_argument("--pair-pool", nargs="*", default=["regularized", "rpo", "anchored", "diverse"],
                        help="pairs.pool: strategies switch_pairs may move to, in order.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Config override for every system, VALUE in YAML (repeatable), e.g. "
                             "--set training.loss_type=[sigmoid,sft].")
    parser.add_argument("--home", type=Path, default=None, help="Workspace (default: a new temp dir).")
    parser.add_argument("--model", default=None, help="model.base (default: the embedded tiny model, per seed).")
    parser.add_argument("--out", type=Path, default=Path("bench-out/ceiling.json"))
    parser.add_argument("--png", type=Path, default=None, help="Plot (default: --out with .png).")
    parser.add_argument("--keys-dir", type=Path, default=None,
                        help="Key folder of the benchmark's reviewer 'bench' (default: keys/ beside --out).")
    args = parser.parse_args()
    png = args.png or args.out.with_suffix(".png")

    ws, signer = fresh_workspace(args.home, args.keys_dir or keys_dir_for(args.out))
    settings = {"seeds": args.seeds, "rounds": args.rounds, "systems": args.systems, "heldout": args.heldout,
                "samples": args.samples, "pair_pool": args.pair_pool, "judge_pool": ["rules", "calculator"],
                "self_rewarding_iterations": SELF_REWARDING_ITERATIONS, "workspace": str(ws.home),
                "overrides": args.overrides}
    results: list[dict[str, Any]] = []
    builds: dict[int, float] = {}
    started = time.perf_counter()
    for seed in args.seeds:
        for system in args.systems:
            config = system_config(system, seed, args.rounds, args.heldout, args.samples, args.model, args.pair_pool,
                                   args.overrides)
            t0 = time.perf_counter()
            ensure_model(ws, config, print, progress=False)
            if seed not in builds:
                builds[seed] = round(time.perf_counter() - t0, 1)
            print(f"seed {seed} {system}: running {config.controller.rounds} round(s)", flush=True)
            result = {"seed": seed, **run_system(ws, signer, system, config, args.rounds)}
            results.append(result)
            last = result["curve"][args.rounds]["oracle"]
            print(f"seed {seed} {system}: {result['rounds_run']} round(s) in {result['wall_s']} s, "
                  f"final held-out oracle {last}, interventions {result['interventions']}", flush=True)
            summary = aggregate(results, args.rounds)
            report = {"settings": settings, "model_build_s": builds, "runs": results, "summary": summary,
                      "goal": goals(summary, args.rounds), "wall_s": round(time.perf_counter() - started, 1)}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    summary = aggregate(results, args.rounds)
    verdict = goals(summary, args.rounds)
    print_report(summary, verdict, args.rounds)
    plot(summary, args.rounds, png)
    print(f"\nwrote {args.out} and {png}")


if __name__ == "__main__":
    main()
