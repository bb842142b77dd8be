"""How the notebook words one decision: each signal the controller read, once, as a true statement against
each of its thresholds (or "COULD NOT CHECK" and why, never "ok"), then the warnings, held-back actions and
advice logged with it. `tether log` (agent/review/notebook.py) and the W&B decision table
(agent/run/tracking.py) read decisions through it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.controller.vocabulary import InvalidJudgments
from memory import Decision
from tether_types import CheckStatus

_SYMBOL = {">": ">", "<": "<", ">=": "≥", "<=": "≤"}
_NEGATION = {">": "≤", "<": "≥", ">=": "<", "<=": ">"}  # what holds when a check did not fire


def _status(check: dict[str, Any]) -> CheckStatus:
    """A logged check's status; checks logged before statuses existed derive it (no value: not checked)."""
    status = check.get("status")
    if status in ("fired", "ok", "could_not_check"):
        return status  # type: ignore[no-any-return]
    if check.get("value") is None:
        return "could_not_check"
    return "fired" if check.get("fired") else "ok"


@dataclass(frozen=True)
class Threshold:
    op: str  # the controller's firing condition: value OP threshold
    threshold: float
    setting: str  # the config key under controller: that holds it
    fired: bool

    def key(self) -> str:
        return f"controller.{self.setting}" if self.setting else ""


@dataclass(frozen=True)
class SignalCheck:
    """Every check of one signal in one decision: one value, one or more thresholds (two rules may read
    the same signal with different thresholds)."""

    signal: str
    value: float | None
    status: CheckStatus  # fired if any threshold fired; could_not_check when there was no value
    reason: str
    thresholds: tuple[Threshold, ...]

    @property
    def fired(self) -> bool:
        return any(t.fired for t in self.thresholds)

    @property
    def unchecked(self) -> bool:
        return self.status == "could_not_check"

    def statement(self, keys: bool = True) -> str:
        """`pairs 60 ≥ 1 ok`, `length_score_corr 0.967 > 0.6 FIRED`; when two rules read the signal, one clause
        per threshold, each with the value (`x 2 < 4 ok (a) and 2 ≥ 2 FIRED (b)`: `2 < 4, ≥ 2` read as
        nothing); `COULD NOT CHECK x (why)` when it had no value."""
        if self.unchecked:
            acted = " -> treated as fired" if self.fired else ""
            rules = "; ".join(f"{_SYMBOL.get(t.op, t.op)} {t.threshold:.3g}" + (f", {t.key()}" if keys and t.key()
                                                                                else "")
                              for t in self.thresholds)
            return f"COULD NOT CHECK {self.signal} ({self.reason}){acted}  (fires when {rules})"
        parts = []
        for t in self.thresholds:
            relation = _SYMBOL.get(t.op, t.op) if t.fired else _NEGATION.get(t.op, f"not {t.op}")
            where = f" ({t.key()})" if keys and t.key() else ""
            parts.append(f"{self.value:.3g} {relation} {t.threshold:.3g} {'FIRED' if t.fired else 'ok'}{where}")
        return f"{self.signal} " + " and ".join(parts)

    def compact(self) -> str:
        """The statement without its verdict words, for a line headed `ok:` or `could not check:`."""
        if self.unchecked:
            return f"{self.signal} ({self.reason})"
        # With two thresholds (two rules read the signal) each clause has the value and names its setting:
        # `0 < 3, < 2` said nothing.
        named = len(self.thresholds) > 1
        relations = " and ".join(f"{self.value:.3g} {_NEGATION.get(t.op, t.op)} {t.threshold:.3g}"
                                 + (f" ({t.key()})" if named and t.key() else "") for t in self.thresholds)
        return f"{self.signal} {relations}"


def merged_checks(checks: Sequence[dict[str, Any]]) -> list[SignalCheck]:
    """A decision's logged checks, one per signal in the order first read; repeated identical
    thresholds count once (fired if any of them fired)."""
    order: list[str] = []
    by_signal: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        if c["signal"] not in by_signal:
            order.append(c["signal"])
            by_signal[c["signal"]] = []
        by_signal[c["signal"]].append(c)
    out = []
    for signal in order:
        group = by_signal[signal]
        thresholds: dict[tuple[str, float, str], bool] = {}
        for c in group:
            key = (c["op"], float(c["threshold"]), c.get("setting") or "")
            thresholds[key] = thresholds.get(key, False) or bool(c.get("fired"))
        statuses = [_status(c) for c in group]
        status: CheckStatus = ("could_not_check" if "could_not_check" in statuses
                               else "fired" if "fired" in statuses else "ok")
        value = next((c.get("value") for c in group if c.get("value") is not None), None)
        reason = next((c.get("reason") for c in group if c.get("reason")), "") or "no value"
        out.append(SignalCheck(signal, None if status == "could_not_check" else value, status, reason,
                               tuple(Threshold(op, thr, setting, fired)
                                     for (op, thr, setting), fired in thresholds.items())))
    return out


def decision_lines(d: Decision, verbose: bool) -> list[str]:
    """The decision, the signals that fired (one a line, with the config key to tune), those that
    could not be checked, and the rest: one a line with --verbose, else together on one line. A check
    that could not be made is never shown as ok; a monitor key whose monitor failed is listed even
    when no rule read it."""
    who = "" if d.actor == "controller" else f" [{d.actor}]"
    lines = [f"  {d.action}{who}: {d.rationale}"]
    checks = merged_checks(d.signals.get("checks") or [])
    unchecked = [c for c in checks if c.unchecked and not c.fired]
    quiet = [c for c in checks if not c.unchecked and not c.fired]
    lines += [f"      {c.statement()}" for c in checks if c.fired]
    if verbose:
        lines += [f"      {c.statement()}" for c in (*unchecked, *quiet)]
    else:
        if unchecked:
            lines.append("      could not check: " + ", ".join(c.compact() for c in unchecked))
        if quiet:
            lines.append("      ok: " + ", ".join(c.compact() for c in quiet))
    read = {c.signal for c in checks}
    for key, why in (d.signals.get("could_not_check") or {}).items():
        if key not in read:
            lines.append(f"      COULD NOT CHECK {key} ({why})")
    lines += [f"      warning: {w}" for w in d.signals.get("warnings") or []]
    invalid = d.signals.get("invalid_judgments")
    if invalid:  # what made them invalid (an endpoint down, a model that ignores the format), unless said above
        said = InvalidJudgments.from_json(invalid).text(reasons=len(invalid.get("reasons") or ()))
        lines += [] if said in d.rationale else [f"      {said}"]
    for action, why in (d.signals.get("held_back") or {}).items():
        lines.append(f"      held back {action}: {why}")
    advice = d.signals.get("advice")
    if advice:
        verdict = f"overruled ({advice['overruled']})" if advice.get("overruled") else "taken"
        lines.append(f"      {advice.get('source', 'advisor')} advised {advice.get('action') or '-'}: {verdict}")
    return lines
