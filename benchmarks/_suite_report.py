"""The failure-worlds suite's report (benchmarks/bench_suite.py): per world and system, the held-out oracle per
round (mean and spread over seeds), the round-N table with the mean over worlds, the mean rank and CPU seconds,
and the PNG grid with the rounds where tether intervened."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import SELF_REWARDING_ITERATIONS, mean_sd

COLOURS = {"tether": "tab:blue", "fixed": "tab:orange", "regularized": "tab:purple", "self_rewarding": "tab:green",
           "online_dpo": "tab:red"}


def value(run: dict[str, Any], r: int) -> float | None:
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
                values = [v for v in (value(run, r) for run in runs) if v is not None]
                mean, sd = mean_sd(values)
                carried = sum(bool(run["curve"][r].get("carried")) for run in runs if r < len(run["curve"]))
                per_round.append({"round": r, "mean": mean, "sd": sd, "n": len(values), "carried": carried})
            final = [v for v in (value(run, rounds) for run in runs) if v is not None]
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
