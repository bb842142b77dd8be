"""`tether log` as a lab notebook: per round, the judge in use, what the controller did and why, the
signals against their thresholds, and what came of it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from memory import Decision, RoundRecord, Store


def judge_label(record: RoundRecord | None) -> str | None:
    judge = (record.judge or {}) if record is not None else {}
    return judge.get("label") or judge.get("name")


def entries(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The decision log for programs: round, action, rationale, signals, actor, at, plus the round's
    judge and outcome."""
    rounds = {r.round: r for r in store.rounds(run_id)}
    return [{"round": d.round, "action": d.action, "rationale": d.rationale, "signals": d.signals,
             "actor": d.actor, "at": d.at, "judge": judge_label(rounds.get(d.round)),
             "outcome": rounds[d.round].outcome if d.round in rounds else None}
            for d in store.decisions(run_id)]


def _check_line(check: dict[str, Any]) -> str:
    value = "n/a" if check.get("value") is None else f"{check['value']:.3g}"
    mark = "FIRED" if check.get("fired") else "ok   "
    setting = f", controller.{check['setting']}" if check.get("setting") else ""
    return f"{mark} {check['signal']} = {value}  (fires when {check['op']} {check['threshold']:.3g}{setting})"


def _compact(check: dict[str, Any]) -> str:
    value = "n/a" if check.get("value") is None else f"{check['value']:.3g}"
    return f"{check['signal']} {value} ({check['op']} {check['threshold']:.3g})"


def _decision_lines(d: Decision, verbose: bool) -> list[str]:
    """The decision, the checks that fired (one a line, with the config key to tune), and the rest:
    one a line with --verbose, else together on one line."""
    who = "" if d.actor == "controller" else f" [{d.actor}]"
    lines = [f"  {d.action}{who}: {d.rationale}"]
    checks = d.signals.get("checks") or []
    lines += [f"      {_check_line(c)}" for c in checks if c.get("fired")]
    quiet = [c for c in checks if not c.get("fired") and (verbose or c.get("value") is not None)]
    if verbose:
        lines += [f"      {_check_line(c)}" for c in quiet]
    elif quiet:
        lines.append("      ok: " + ", ".join(_compact(c) for c in quiet))
    lines += [f"      warning: {w}" for w in d.signals.get("warnings") or []]
    for action, why in (d.signals.get("held_back") or {}).items():
        lines.append(f"      held back {action}: {why}")
    advice = d.signals.get("advice")
    if advice:
        verdict = f"overruled ({advice['overruled']})" if advice.get("overruled") else "taken"
        lines.append(f"      {advice.get('source', 'advisor')} advised {advice.get('action') or '-'}: {verdict}")
    return lines


def render(store: Store, run_id: str, verbose: bool = False) -> str:
    rounds = {r.round: r for r in store.rounds(run_id)}
    by_round: dict[int, list[Decision]] = defaultdict(list)
    for d in store.decisions(run_id):
        by_round[d.round].append(d)
    out: list[str] = []
    for round_no in sorted(by_round):
        record = rounds.get(round_no)
        head = f"round {round_no}"
        if record is not None:
            pairs = "-" if record.n_pairs is None else record.n_pairs
            head += f"  judge {judge_label(record) or '?'}  pairs {pairs}"
            head += f"  outcome {record.outcome or '-'}"
        out.append(head)
        for d in by_round[round_no]:
            out += _decision_lines(d, verbose)
        out.append("")
    return "\n".join(out).rstrip() + "\n" if out else f"no decisions yet for {run_id}\n"
