"""`tether report`: plots a researcher reads beside the notebook, plus a summary (md + json).

- `scores.png`: held-out oracle and judge score of the checkpoint active after each round (round 0:
  the policy the run started from) and of each round's candidate, approved or not: the reported test
  split, which no decision of the run read (a run evaluated before the split: its one held-out set);
  summary.json says which as `heldout_split`.
- `monitors-<theme>.png`: one figure per theme (THEMES, by monitor key), a small plot per signal;
  the progress figure starts with the held-out curves of scores.png. Each plot draws every threshold
  the controller read for its signal (dashed; the legend names the config key), and every figure
  marks the rounds of interventions and rejected candidates, and rollbacks and config changes
  between rounds (vertical lines, legend at the bottom). All share the x axis, rounds 0..N.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.interventions import INTERVENTIONS
from agent.review import notebook
from agent.review.plots import HELDOUT_PANELS, Marker, ThresholdLine, heldout_points, is_number, plot_scores, plot_theme
from agent.run.splits import REPORTED, reported_split
from memory import Decision, Run, Store
from tether_types import COULD_NOT_CHECK, EXIT_USAGE, TetherError
from tether_types import MonitorKey as K
from tools.monitors import MONITORS


class ReportError(TetherError):
    """The report cannot be written (the message names the folder and why); the CLI exits 2 on it."""
    exit_code = EXIT_USAGE


def _themes() -> dict[K, str]:
    """The figure of every key a monitor emits: the theme its monitor names (a test checks that every key has
    one); a key two monitors emit (embedding_available, not plotted) goes with the first by name."""
    themes: dict[K, str] = {}
    for name in MONITORS.names():
        monitor = MONITORS.build(name).plugin
        for key in monitor.keys:
            themes.setdefault(key, getattr(monitor, "theme", "other"))
    return themes


THEMES: dict[K, str] = _themes()
# Values the controller derives from several rounds (not monitor keys): plotted from its recorded checks.
DERIVED_THEMES: dict[str, str] = {
    "invalid_rounds_in_a_row": "judge",
    "trained_rounds_without_heldout_gain": "progress",
    "candidates_failing_invariants_in_a_row": "progress",
    "over_refusal_rounds_in_a_row": "prompts",
    "margin_drop": "prompts",
    "base_logp_drop": "length",
    "heldout_drop_from_best": "progress",
}
THEME_TITLES: dict[str, str] = {
    "diversity": "Response diversity",
    "judge": "Judge reliability and score clustering",
    "length": "Length and drift from the base model",
    "progress": "Progress and held-out",
    "prompts": "Refusals, prompts and pairs",
    "other": "Other signals",
}
# Not plotted: a 0/1 flag (the embedder loaded); and the progress monitor's copies of the previous
# round's held-out evaluation: the progress panel draws the evaluations themselves, as scores.png does.
NOT_PLOTTED = frozenset({K.EMBEDDING_AVAILABLE.value, K.HELDOUT_ORACLE_ACTIVE.value, K.HELDOUT_JUDGE_ACTIVE.value,
                         K.HELDOUT_ORACLE_CANDIDATE.value, K.HELDOUT_JUDGE_CANDIDATE.value})

REJECTIONS = ("reject_candidate", "discard_candidate")


def _theme(signal: str) -> str:
    try:
        return THEMES[K(signal)]
    except ValueError:
        return DERIVED_THEMES.get(signal, "other")


def _thresholds(decisions: list[Decision]) -> dict[str, list[ThresholdLine]]:
    """signal -> the thresholds the controller read it against, per round (from its recorded checks)."""
    found: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for d in decisions:
        for c in d.signals.get("checks") or []:
            found[(c["signal"], c.get("setting") or "", c["op"])][d.round] = float(c["threshold"])
    out: dict[str, list[ThresholdLine]] = defaultdict(list)
    for (signal, setting, op), by_round in found.items():
        out[signal].append(ThresholdLine(signal, setting, op, by_round))
    return out


def _derived_values(decisions: list[Decision]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for d in decisions:
        for c in d.signals.get("checks") or []:
            if c["signal"] in DERIVED_THEMES and is_number(c.get("value")):
                out[c["signal"]].setdefault(d.round, float(c["value"]))
    return out


def markers(views: list[notebook.RoundView]) -> list[Marker]:
    """Interventions and rejections at their round; rollbacks and config changes between the round they
    followed and the next (they count from the next round on)."""
    out = []
    for v in views:
        for item in v.items:
            if isinstance(item, Decision):
                if item.action in INTERVENTIONS:
                    out.append(Marker(v.round, item.action, item.rationale))
                elif item.action in REJECTIONS:
                    out.append(Marker(v.round, "candidate rejected", f"{item.action}: {item.rationale}"))
                elif item.action == "config_change":
                    out.append(Marker(v.round + 0.5, "config change", item.rationale))
            elif item.entry.action == "checkpoint.rollback":
                out.append(Marker(v.round + 0.5, "rollback", item.text()))
    return out


def _rows(store: Store, run_id: str, views: list[notebook.RoundView],
          active: dict[int, tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    checkpoints = {c.round: c for c in store.checkpoints(run_id) if c.round > 0}
    rows = []
    for v in views:
        record = v.record
        if record is None:
            continue
        ck = checkpoints.get(record.round)
        evaluation = ((ck.metrics or {}).get(REPORTED) or {}) if ck else {}
        after_ck, after = active.get(record.round, (None, {}))
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
            "active_after": after_ck,
            "heldout_oracle_after": after.get("oracle"),
            "heldout_judge_after": after.get("judge"),
            "heldout": v.heldout.to_json() if v.heldout else None,
            "events": [i.to_json() for i in v.items if isinstance(i, notebook.Event)],
        })
    return rows


# -- the report -------------------------------------------------------------------------------------


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".tether-report-"):
            pass
    except OSError as err:
        raise ReportError(f"cannot write the report to {out}: {err.strerror or err}") from None


def _series(rows: list[dict[str, Any]], derived: dict[str, dict[int, float]], metric: str,
            round0: dict[str, Any]) -> dict[str, dict[str, dict[int, float]]]:
    """theme -> signal -> {round: value}: the held-out panels first (controller.heldout_metric's first),
    then monitor keys in MonitorKey order, other stored keys, and the controller's derived signals."""
    by_theme: dict[str, dict[str, dict[int, float]]] = {theme: {} for theme in THEME_TITLES}
    for name in sorted(HELDOUT_PANELS, key=lambda n: HELDOUT_PANELS[n] != metric):
        after, candidates = heldout_points(rows, round0, HELDOUT_PANELS[name])
        if after or candidates:
            by_theme["progress"][name] = dict(after)
    names = [k.value for k in K] + sorted({n for r in rows for n in r["monitors"]} - {k.value for k in K})
    for name in names:
        if name in NOT_PLOTTED or name == COULD_NOT_CHECK:
            continue
        values = {r["round"]: float(r["monitors"][name]) for r in rows if is_number(r["monitors"].get(name))}
        if values:
            by_theme[_theme(name)][name] = values
    for name, values in derived.items():
        by_theme[_theme(name)][name] = values
    return {theme: series for theme, series in by_theme.items() if series}


@dataclass(frozen=True)
class ReportData:
    """What the report draws, gathered once: `tether report` draws it with matplotlib (PNG), the desk with
    Plotly in the browser (agent/ui/charts.py)."""

    run: Run
    rows: list[dict[str, Any]]
    round0: dict[str, Any]  # the held-out evaluation of the policy the run started from
    decisions: list[Decision]
    marks: list[Marker]
    thresholds: dict[str, list[ThresholdLine]]
    series: dict[str, dict[str, dict[int, float]]]  # theme -> signal -> {round: value}
    right: float  # the x axis ends here (rounds 0..N, and a rollback after round N)
    metric: str


def gather(store: Store, run_id: str) -> ReportData:
    run = store.get_run(run_id)
    if run is None:
        raise ReportError(f"no run '{run_id}' (see `tether status`)")
    views = notebook.timeline(store, run_id)
    records = {v.round: v.record for v in views if v.record is not None}
    active = notebook.active_evaluations(store, run, records, store.audit_entries())
    rows = _rows(store, run_id, views, active)
    decisions = [i for v in views for i in v.items if isinstance(i, Decision)]
    marks = markers(views)
    metric = notebook.heldout_metric(run)
    round0 = active.get(0, ("", {}))[1]
    return ReportData(run, rows, round0, decisions, marks, _thresholds(decisions),
                      _series(rows, _derived_values(decisions), metric, round0),
                      max([r["round"] + 0.5 for r in rows] + [m.x + 0.3 for m in marks] + [1.5]), metric)


def write_report(store: Store, run_id: str, out: Path) -> list[Path]:
    """Write scores.png, one monitors-<theme>.png per theme with data, summary.json and summary.md into
    `out`; raises ReportError when `out` cannot be written."""
    import matplotlib

    matplotlib.use("Agg")
    data = gather(store, run_id)
    _writable(out)
    rows, marks, run = data.rows, data.marks, data.run
    written: list[Path] = []
    try:
        plot_scores(rows, data.round0, marks, data.right, out / "scores.png")
        written.append(out / "scores.png")
        for theme, series in data.series.items():
            path = out / f"monitors-{theme}.png"
            plot_theme(THEME_TITLES.get(theme, theme), series, data.thresholds, marks, data.right,
                       (rows, data.round0), path)
            written.append(path)
        summary = {
            "run_id": run_id, "state": run.state, "active_checkpoint": run.active_checkpoint,
            "heldout_metric": data.metric, "heldout_split": reported_split(store.checkpoints(run_id)), "rounds": rows,
            "decisions": [{"round": d.round, "action": d.action, "rationale": d.rationale, "actor": d.actor}
                          for d in data.decisions],
            "markers": [{"x": m.x, "kind": m.kind, "what": m.what} for m in marks],
            "thresholds": [{"signal": t.signal, "setting": f"controller.{t.setting}", "op": t.op,
                            "by_round": t.by_round} for lines in data.thresholds.values() for t in lines],
            "plots": [p.name for p in written],
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        (out / "summary.md").write_text(_markdown(run_id, run.state, run.active_checkpoint, data.metric,
                                                  str(summary["heldout_split"]), rows, marks,
                                                  [p.name for p in written]))
    except OSError as err:
        raise ReportError(f"cannot write the report to {out}: {err.strerror or err}") from None
    return [*written, out / "summary.json", out / "summary.md"]


def _markdown(run_id: str, state: str, active: str | None, metric: str, split: str, rows: list[dict[str, Any]],
              marks: list[Marker], plots: list[str]) -> str:
    def score(value: Any) -> str:
        return f"{value:.3f}" if is_number(value) else "–"

    held = "held-out" if split == "heldout" else f"held-out {split}"
    shown = ("its one held-out set: this run was evaluated before validation and test were split" if split == "heldout"
             else f"the {split} split, which no decision of the run read")
    lines = [f"# tether run {run_id}", "", f"state: {state}; active checkpoint: {active}; held-out metric: {metric} "
             f"({shown})", "", f"| round | judge | action | outcome | pairs | {held} {metric} after the round "
                 f"| candidate {metric} |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['judge'] or ''} | {r['action'] or ''} | {r['outcome'] or ''} | "
                     f"{'–' if r['pairs'] is None else r['pairs']} | {score(r[f'heldout_{metric}_after'])} | "
                     f"{score(r[f'heldout_{metric}_candidate'])} |")
    if marks:
        lines += ["", "## Marked rounds", ""]
        lines += [f"- round {m.x:g}: {m.kind} — {m.what}" for m in marks]
    lines.append("")
    lines += [f"![{name}]({name})\n" for name in plots]
    return "\n".join(lines) + "\n"
