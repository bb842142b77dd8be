"""`tether report`: PNG plots of monitors and held-out scores per round, plus a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent import notebook
from memory import Store


def _rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    checkpoints = {c.round: c for c in store.checkpoints(run_id) if c.round > 0}
    rows = []
    for record in store.rounds(run_id):
        ck = checkpoints.get(record.round)
        evaluation = ((ck.metrics or {}).get("eval") or {}) if ck else {}
        rows.append({
            "round": record.round,
            "action": record.action,
            "outcome": record.outcome,
            "pairs": record.n_pairs,
            "judge": notebook.judge_label(record),
            "monitors": record.monitors or {},
            "heldout_oracle_active": evaluation.get("active", {}).get("oracle"),
            "heldout_oracle_candidate": evaluation.get("candidate", {}).get("oracle"),
            "heldout_judge_active": evaluation.get("active", {}).get("judge"),
            "heldout_judge_candidate": evaluation.get("candidate", {}).get("judge"),
            "checkpoint": ck.id if ck else None,
            "checkpoint_status": ck.status if ck else None,
        })
    return rows


def _plot_monitors(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = sorted({k for r in rows for k, v in r["monitors"].items() if isinstance(v, (int, float))})
    cols = 3
    nrows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        xs = [r["round"] for r in rows if name in r["monitors"]]
        ax.plot(xs, [r["monitors"][name] for r in rows if name in r["monitors"]], marker="o")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("round", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_scores(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, metric in zip(axes, ("oracle", "judge"), strict=True):
        for who, style in (("active", "o-"), ("candidate", "s--")):
            key = f"heldout_{metric}_{who}"
            points = [(r["round"], r[key]) for r in rows if r[key] is not None]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=who)
        ax.set_title(f"held-out {metric} score", fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(store: Store, run_id: str, out: Path) -> list[Path]:
    """Write monitors.png, scores.png, summary.json and summary.md into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(store, run_id)
    run = store.get_run(run_id)
    assert run is not None
    _plot_monitors(rows, out / "monitors.png")
    _plot_scores(rows, out / "scores.png")
    summary = {"run_id": run_id, "state": run.state, "active_checkpoint": run.active_checkpoint, "rounds": rows,
               "decisions": [{"round": d.round, "action": d.action, "rationale": d.rationale}
                             for d in store.decisions(run_id)]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    lines = [f"# tether run {run_id}", "", f"state: {run.state}; active checkpoint: {run.active_checkpoint}", "",
             "| round | judge | action | outcome | pairs | held-out oracle (active → candidate) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        a, c = r["heldout_oracle_active"], r["heldout_oracle_candidate"]
        scores = f"{a:.3f} → {c:.3f}" if a is not None and c is not None else ""
        lines.append(f"| {r['round']} | {r['judge'] or ''} | {r['action'] or ''} | {r['outcome'] or ''} | "
                     f"{r['pairs'] or 0} | {scores} |")
    lines += ["", "![monitors](monitors.png)", "", "![scores](scores.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))
    return [out / n for n in ("monitors.png", "scores.png", "summary.json", "summary.md")]
