"""The leave-one-world-out report (benchmarks/bench_folds.py): per world the round-N held-out oracle of the learned
policy fitted without that world against the rules policy and the fixed recipe (mean ± sd over the evaluation
seeds, bench_suite's table), and per fold the policy (size, fit time, runs fitted on), whether it beat the rules on
its left-out world, how often it explored and chose otherwise than the rules, and the envelope check."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _suite_report import markdown_table, mean_over_worlds, summarise

SHOWN: tuple[str, ...] = ("learned", "rules", "fixed")
LABELS: Mapping[str, str] = {"tether": "rules", "fixed": "fixed"}  # bench_suite's system -> the report's
COLOURS = {"learned": "tab:green", "rules": "tab:blue", "fixed": "tab:orange"}
COUNTS = ("decisions", "explored", "otherwise")
ENVELOPE = ("learned_decisions", "taken", "overruled", "violations", "other_version", "unchecked")


def _final(summary: Mapping[str, Any], world: str, system: str) -> tuple[float | None, float | None]:
    cell = summary.get(world, {}).get(system)
    return (None, None) if cell is None else (cell["final"]["mean"], cell["final"]["sd"])


def _sums(runs: Sequence[Mapping[str, Any]], field: str, keys: Sequence[str]) -> dict[str, int]:
    return {k: sum(int((r.get(field) or {}).get(k, 0)) for r in runs) for k in keys}


def fold_rows(summary: Mapping[str, Any], fits: Mapping[str, Mapping[str, Any]],
              runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per fold: its fit, the three systems' round-N means on the left-out world, whether learned beat rules
    there (None: a mean is missing), and its runs' exploration and envelope counts summed."""
    rows = []
    for world, fit in fits.items():
        own = [r for r in runs if r["system"] == "learned" and r.get("fold") == world]
        learned, rules = _final(summary, world, "learned")[0], _final(summary, world, "rules")[0]
        rows.append({
            "world": world, "fit": dict(fit), "runs": len(own),
            "final": {s: _final(summary, world, s)[0] for s in SHOWN},
            "learned_minus_rules": None if learned is None or rules is None else learned - rules,
            "beats_rules": None if learned is None or rules is None else learned > rules,
            "choices": _sums(own, "learned", COUNTS), "envelope": _sums(own, "envelope", ENVELOPE)})
    return rows


def totals(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence in numbers: mean over worlds per system, folds where learned beat rules (of those with both
    means), exploration and the envelope over every fold, and the policies' size and fit time."""
    fitted = [r["fit"] for r in rows if "error" not in r["fit"]]
    compared = [r for r in rows if r["beats_rules"] is not None]
    return {
        "mean_over_worlds": {s: mean_over_worlds(dict(summary), s)[0] for s in SHOWN},
        "folds": len(rows), "folds_fitted": len(fitted), "folds_compared": len(compared),
        "learned_beats_rules": sum(bool(r["beats_rules"]) for r in compared),
        "choices": {k: sum(r["choices"][k] for r in rows) for k in COUNTS},
        "envelope": {k: sum(r["envelope"][k] for r in rows) for k in ENVELOPE},
        "policy_bytes": {"min": min((f["bytes"] for f in fitted), default=None),
                         "max": max((f["bytes"] for f in fitted), default=None)},
        "fit_s": {"max": max((f["fit_s"] for f in fitted), default=None),
                  "total": round(sum(f["fit_s"] for f in fitted), 4)},
        "fit_wall_s": {"max": max((f["wall_s"] for f in fitted), default=None)}}


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "–" if value is None else format(value, fmt)


def folds_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per fold: the runs and decisions its policy was fitted on, the policy, learned − rules on the
    left-out world, the learned runs' choices and the envelope."""
    lines = ["| left-out world | fitted on: runs (decisions) | policy sha256 | bytes | fit s (wall s) | "
             "learned − rules | beats rules | learned decisions: explored / otherwise than rules | "
             "envelope violations (unchecked) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fit, ch, env = r["fit"], r["choices"], r["envelope"]
        if "error" in fit:
            lines.append(f"| {r['world']} | {len(fit['fitted_on'])} runs: not fitted ({fit['error']}) "
                         "| – | – | – | – | – | – | – |")
            continue
        beats = "–" if r["beats_rules"] is None else ("yes" if r["beats_rules"] else "no")
        lines.append(f"| {r['world']} | {len(fit['fitted_on'])} ({fit['decisions']}) | {fit['sha256'][:12]} | "
                     f"{fit['bytes']} | {fit['fit_s']:.3f} ({fit['wall_s']:.1f}) | "
                     f"{_num(r['learned_minus_rules'], '+.3f')} | {beats} | "
                     f"{ch['decisions']}: {ch['explored']} / {ch['otherwise']} | "
                     f"{env['violations']} ({env['unchecked']}) |")
    return "\n".join(lines)


def verdict(t: Mapping[str, Any]) -> str:
    """The issue's goal, as measured: stated, never judged here."""
    means = t["mean_over_worlds"]
    env = t["envelope"]
    return (f"Mean round-N held-out over the folds' worlds: learned {_num(means['learned'])}, rules "
            f"{_num(means['rules'])}, fixed {_num(means['fixed'])}. Learned beat rules on its left-out world in "
            f"{t['learned_beats_rules']} of {t['folds_compared']} fold(s) with both ({t['folds']} fold(s), "
            f"{t['folds_fitted']} fitted). The learned policy chose {t['choices']['decisions']} time(s), explored "
            f"{t['choices']['explored']}, chose otherwise than the rules {t['choices']['otherwise']}. Envelope: "
            f"{env['violations']} violation(s) in {env['taken']} decision(s) it took ({env['overruled']} overruled, "
            f"{env['unchecked']} could not be checked).")


def plot_folds(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], rounds: int, path: Path) -> None:
    """Grouped bars per left-out world and for the mean over worlds: round-N held-out, mean ± sd over the
    evaluation seeds, per system; each seed's value as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = [r["world"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * (len(worlds) + 1)), 4.2))
    width = 0.8 / len(SHOWN)
    for i, system in enumerate(SHOWN):
        xs = [j + (i - (len(SHOWN) - 1) / 2) * width for j in range(len(worlds) + 1)]
        cells = [summary.get(w, {}).get(system) for w in worlds]
        means = [c["final"]["mean"] if c and c["final"]["mean"] is not None else math.nan for c in cells]
        over = mean_over_worlds(dict(summary), system)[0]
        means.append(math.nan if over is None else over)
        sds = [(c["final"]["sd"] or 0.0) if c else 0.0 for c in cells] + [0.0]
        ax.bar(xs, means, width, yerr=sds, capsize=2, color=COLOURS[system], alpha=0.8, label=system)
        for x, c in zip(xs, cells, strict=False):
            for v in (c["final"]["per_seed"] if c else []):
                ax.plot([x], [v], "k.", ms=3)
    ax.set_xticks(range(len(worlds) + 1), [*worlds, "mean over worlds"], rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.03)
    ax.set_ylabel(f"round-{rounds} held-out oracle")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    beat = sum(bool(r["beats_rules"]) for r in rows)
    ax.set_title(f"leave-one-world-out: learned (fitted without the world) vs rules vs fixed\n"
                 f"learned beats rules in {beat} of {len(rows)} folds; mean ± sd over the evaluation seeds, "
                 "dots: seeds", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: Path, settings: Mapping[str, Any], fits: Mapping[str, Mapping[str, Any]],
           runs: Sequence[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """The folds' JSON, markdown and PNG beside `out`, printed too; returns the JSON document."""
    rounds = int(settings["rounds"])
    summary = summarise(runs, rounds)
    ordered = {w: summary[w] for w in settings["folds"] if w in summary}
    rows = fold_rows(ordered, fits, runs)
    t = totals(rows, ordered)
    table, per_fold, said = markdown_table(ordered, SHOWN, rounds), folds_table(rows), verdict(t)
    out.with_suffix(".md").write_text(f"{table}\n\n{per_fold}\n\n{said}\n")
    doc = {"settings": dict(settings), "fits": dict(fits), "runs": list(runs), "summary": ordered, "folds": rows,
           "totals": t, "table": table, "folds_table": per_fold, "wall_s": wall_s}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    plot_folds(ordered, rows, rounds, out.with_suffix(".png"))
    print(f"\n{table}\n\n{per_fold}\n\n{said}\n\nwrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return doc
