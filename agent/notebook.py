"""`tether log` as a lab notebook: per round, the judge in use, what the controller did and why, the
signals against their thresholds (or "COULD NOT CHECK" and why, never "ok"), and what came of it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from memory import Decision, RoundRecord, Store
from tools.monitors.keys import CheckStatus


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


def _status(check: dict[str, Any]) -> CheckStatus:
    """A logged check's status; checks logged before statuses existed derive it (no value: not checked)."""
    status = check.get("status")
    if status in ("fired", "ok", "could_not_check"):
        return status  # type: ignore[no-any-return]
    if check.get("value") is None:
        return "could_not_check"
    return "fired" if check.get("fired") else "ok"


def _reason(check: dict[str, Any]) -> str:
    return check.get("reason") or "no value"


def _check_line(check: dict[str, Any]) -> str:
    setting = f", controller.{check['setting']}" if check.get("setting") else ""
    fires = f"fires when {check['op']} {check['threshold']:.3g}{setting}"
    if _status(check) == "could_not_check":
        acted = " -> treated as fired" if check.get("fired") else ""
        return f"COULD NOT CHECK {check['signal']} ({_reason(check)}){acted}  ({fires})"
    value = "n/a" if check.get("value") is None else f"{check['value']:.3g}"
    mark = "FIRED" if check.get("fired") else "ok   "
    return f"{mark} {check['signal']} = {value}  ({fires})"


def _compact(check: dict[str, Any]) -> str:
    if _status(check) == "could_not_check":
        return f"{check['signal']} ({_reason(check)})"
    return f"{check['signal']} {check['value']:.3g} ({check['op']} {check['threshold']:.3g})"


def _decision_lines(d: Decision, verbose: bool) -> list[str]:
    """The decision, the checks that fired (one a line, with the config key to tune), the checks that
    could not be made, and the rest: one a line with --verbose, else together on one line. A check
    that could not be made is never shown as ok; a monitor key whose monitor failed is listed even
    when no rule read it."""
    who = "" if d.actor == "controller" else f" [{d.actor}]"
    lines = [f"  {d.action}{who}: {d.rationale}"]
    checks = d.signals.get("checks") or []
    unchecked = [c for c in checks if _status(c) == "could_not_check" and not c.get("fired")]
    quiet = [c for c in checks if _status(c) == "ok"]
    lines += [f"      {_check_line(c)}" for c in checks if c.get("fired")]
    if verbose:
        lines += [f"      {_check_line(c)}" for c in (*unchecked, *quiet)]
    else:
        if unchecked:
            lines.append("      could not check: " + ", ".join(_compact(c) for c in unchecked))
        if quiet:
            lines.append("      ok: " + ", ".join(_compact(c) for c in quiet))
    read = {c["signal"] for c in checks}
    for key, why in (d.signals.get("could_not_check") or {}).items():
        if key not in read:
            lines.append(f"      COULD NOT CHECK {key} ({why})")
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
