"""`tether log` as a lab notebook. Per round: the judge in use, the pairs, the held-out score of the
checkpoint active after the round (the reported one: the test split, which no decision read; a run evaluated
before the split: its one held-out set), the outcome; then, in the order they happened, what the controller
did and why (worded by agent/review/decision_text.py: every signal it read, once, as a true statement
against each of its thresholds, or "COULD NOT CHECK" and why, never "ok"), and what people and the runner
did around it: approvals with who decided, rollbacks with who and why, failures, pauses, resumes and config
changes (audit log)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.review.decision_text import decision_lines
from agent.run.splits import REPORTED, EvaluatedSplit, split_of
from guardrails.gate import ACTIVE_ACTIONS  # the audit entries that make a checkpoint active
from memory import AuditEntry, Checkpoint, Decision, DecisionOutcome, RoundRecord, Run, Store

# -- the audit trail around a run -------------------------------------------------------------------

# Audit actions the notebook shows. `run.resume` and `run.config` are rendered when present.
RUN_ACTIONS = ("run.start", "run.resume", "run.failed", "run.paused", "run.stop", "run.config",
               "constitution.adopt")
CHECKPOINT_ACTIONS = ("checkpoint.rollback", "checkpoint.inherit", "rollback.refused", "tamper.detected")
APPROVAL_ACTIONS = ("approval.signed", "approval.refused")


@dataclass(frozen=True)
class Event:
    """An audit entry about this run, placed in the round that was under way when it was written."""

    entry: AuditEntry
    round: int

    @property
    def at(self) -> str:
        return self.entry.at

    def text(self) -> str:
        e, d = self.entry, self.entry.details
        when = f"  (at {e.at[:19].replace('T', ' ')})"
        if e.action == "checkpoint.rollback":
            return f"ROLLBACK by {e.actor}: {d.get('from') or '?'} -> {e.subject}: {d.get('reason') or '-'}{when}"
        if e.action == "approval.signed":
            verb = {"approve": "approved", "reject": "rejected"}.get(str(d.get("decision")), str(d.get("decision")))
            note = f': "{d["note"]}"' if d.get("note") else ""
            return f"{e.actor} {verb} {d.get('subject') or e.subject} (approval {e.subject}){note}{when}"
        if e.action in ("approval.refused", "rollback.refused"):
            why = f": {d['reason']}" if d.get("reason") else ""
            return f"REFUSED a decision by {d.get('by') or e.actor} on {e.subject}{why}{when}"
        if e.action == "tamper.detected":
            return f"TAMPERING DETECTED on {e.subject}: {d.get('error')}{when}"
        if e.action == "run.failed":
            flag = " [tampering]" if d.get("tampering") else ""
            return f"RUN FAILED{flag}: {d.get('error')}{when}"
        if e.action == "run.paused":
            return f"RUN PAUSED: {d.get('error')}{when}"
        if e.action == "run.resume":
            was = f" (was {d['from_state']}" + (f": {d['error']}" if d.get("error") else "") + ")" \
                if d.get("from_state") else ""
            return f"RESUMED by {d.get('by') or e.actor}{was}{when}"
        if e.action == "run.config":  # as `tether resume --config` writes it: changes "key: old -> new"
            return f"CONFIG CHANGED by {e.actor}: {'; '.join(map(str, d.get('changes') or [])) or '-'}{when}"
        if e.action == "run.start":
            return f"run started by {e.actor} (constitution v{d.get('constitution_version', '?')}){when}"
        if e.action == "run.stop":
            by = f" by {e.actor}" if d.get("by_person") else ""
            why = f": {d['reason']}" if d.get("reason") else ""
            withdrawn = f" (withdrawn: {', '.join(d['withdrawn'])})" if d.get("withdrawn") else ""
            return f"run stopped{by}{why}{withdrawn}{when}"
        if e.action == "checkpoint.inherit":
            return f"started from {d.get('source')} (approval {d.get('approval')}) as {e.subject}{when}"
        if e.action == "constitution.adopt":
            return f"constitution v{d.get('version')} adopted (approval {d.get('approval')}){when}"
        return f"{e.action} by {e.actor}: {d}{when}"

    def to_json(self) -> dict[str, Any]:
        e = self.entry
        return {"seq": e.seq, "at": e.at, "round": self.round, "actor": e.actor, "action": e.action,
                "subject": e.subject, "details": e.details}


def _belongs(entry: AuditEntry, run_id: str, checkpoints: dict[str, Checkpoint], approvals: set[str]) -> bool:
    if entry.action in RUN_ACTIONS:
        return entry.subject == run_id
    if entry.action in CHECKPOINT_ACTIONS:
        return entry.details.get("run") == run_id or entry.subject in checkpoints
    if entry.action in APPROVAL_ACTIONS:
        return entry.subject in approvals
    return False


def _round_of(at: str, starts: list[tuple[str, int]]) -> int:
    """The round under way at `at`: the last one started at or before it (0 before the first)."""
    i = bisect.bisect_right([s for s, _ in starts], at)
    return starts[i - 1][1] if i else 0


# -- held-out score of the checkpoint active after each round ---------------------------------------


@dataclass(frozen=True)
class HeldOut:
    metric: str  # the one shown: controller.heldout_metric, or the other when the run has no value for it
    value: float
    checkpoint: str
    wanted: str  # controller.heldout_metric
    split: EvaluatedSplit = "heldout"  # test, or heldout: a run evaluated before the split (agent/run/splits.py)

    def text(self, run_id: str) -> str:
        short = self.checkpoint.removeprefix(f"{run_id}-")
        instead = f", no {self.wanted}" if self.metric != self.wanted else ""
        split = "" if self.split == "heldout" else f" {self.split}"
        return f"held-out{split} {self.metric} {self.value:.3f} ({short}{instead})"

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "checkpoint": self.checkpoint,
                "heldout_metric": self.wanted, "split": self.split}


def heldout_metric(run: Run) -> str:
    controller = (run.config or {}).get("controller") or {}
    return str(controller.get("heldout_metric") or "oracle")


def _pick(result: dict[str, Any], wanted: str) -> tuple[str, float] | None:
    """The wanted score of an evaluation, else the other one (a world without verifiers has no oracle)."""
    for metric in (wanted, "judge" if wanted == "oracle" else "oracle"):
        value = result.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return metric, float(value)
    return None


def active_evaluations(store: Store, run: Run, records: dict[int, RoundRecord],
                       audit: Sequence[AuditEntry]) -> dict[int, tuple[str, dict[str, Any]]]:
    """Per round: the checkpoint active when the round ended (an activation or a rollback counts from
    when it was written) and its newest held-out evaluation made by then, else its first one made
    later ({} when it has none). An evaluation is a checkpoint's own as a candidate, or its score as
    the active checkpoint beside a later candidate (checkpoint metrics["eval"]: the reported evaluation, the
    test split). Round 0 is the checkpoint the run started from, with its first evaluation."""
    evaluations: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for ck in store.checkpoints(run.id):
        result = (ck.metrics or {}).get(REPORTED) or {}
        if "candidate" in result:
            evaluations.setdefault(ck.id, []).append((ck.round, result["candidate"]))
        if "active" in result and ck.parent:
            evaluations.setdefault(ck.parent, []).append((ck.round, result["active"]))
    changes = [(e.at, str(e.subject)) for e in audit
               if e.action in ACTIVE_ACTIONS and e.details.get("run") == run.id]
    order = sorted(records)
    out: dict[int, tuple[str, dict[str, Any]]] = {}
    for i, round_no in enumerate(order):
        ends = records[order[i + 1]].started_at if i + 1 < len(order) else None
        active = [ck for at, ck in changes if ends is None or at < ends]
        checkpoint = active[-1] if active else (run.active_checkpoint or "?")
        made = sorted(evaluations.get(checkpoint, []), key=lambda x: x[0])
        by_then = [result for r, result in made if r <= round_no]
        # A checkpoint first evaluated later (the base, beside the first candidate) has that score.
        out[round_no] = (checkpoint, by_then[-1] if by_then else made[0][1] if made else {})
    if order and 0 not in records:  # round 0: the policy the run started from, by its first evaluation
        first = [ck for at, ck in changes if at < (records[order[0]].started_at or "")]
        base = first[-1] if first else f"{run.id}-base"
        made = sorted(evaluations.get(base, []), key=lambda x: x[0])
        out[0] = (base, made[0][1] if made else {})
    return out


def heldout_after_rounds(store: Store, run: Run, records: dict[int, RoundRecord],
                         audit: Sequence[AuditEntry]) -> dict[int, HeldOut]:
    """Per round, the held-out score of the checkpoint active after it, in controller.heldout_metric
    (or the other metric when that one is absent; a missing score is left out, never shown as 0)."""
    wanted = heldout_metric(run)
    out: dict[int, HeldOut] = {}
    for round_no, (checkpoint, result) in active_evaluations(store, run, records, audit).items():
        picked = _pick(result, wanted)
        if picked is not None:
            out[round_no] = HeldOut(picked[0], picked[1], checkpoint, wanted, split_of(result))
    return out


# -- the notebook ------------------------------------------------------------------------------------


@dataclass
class RoundView:
    round: int
    record: RoundRecord | None
    heldout: HeldOut | None
    items: list[Decision | Event] = field(default_factory=list)  # in the order they happened


def judge_label(record: RoundRecord | None) -> str | None:
    return None if record is None else record.judge_label


def timeline(store: Store, run_id: str) -> list[RoundView]:
    """The run round by round: decisions and audit events in time order (round 0: before round 1)."""
    run = store.get_run(run_id)
    if run is None:
        return []
    records = {r.round: r for r in store.rounds(run_id)}
    checkpoints = {c.id: c for c in store.checkpoints(run_id)}
    approvals = {a.id for a in store.approvals(run_id=run_id)}
    audit = store.audit_entries()
    starts = sorted((r.started_at, n) for n, r in records.items() if r.started_at)
    events = [Event(e, _round_of(e.at, starts)) for e in audit if _belongs(e, run_id, checkpoints, approvals)]
    heldout = heldout_after_rounds(store, run, records, audit)
    views: dict[int, RoundView] = {}

    def view(n: int) -> RoundView:
        if n not in views:
            views[n] = RoundView(n, records.get(n), heldout.get(n))
        return views[n]

    for n in records:
        view(n)
    for d in store.decisions(run_id):
        view(d.round).items.append(d)
    for ev in events:
        view(ev.round).items.append(ev)
    for v in views.values():
        v.items.sort(key=lambda item: item.at)
    return [views[n] for n in sorted(views)]


def entries(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The decision log for programs: per decision round, action, rationale, signals, actor, at, the
    round's judge and outcome; plus `heldout` (the round's: metric, value, checkpoint) and `events`
    (the audit events written after this decision and before the next one, each in exactly one
    entry; events before the first decision go with the first)."""
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    measured = {o.decision_id: o for o in store.outcomes(run_id)}
    for v in timeline(store, run_id):
        for item in v.items:
            if isinstance(item, Event):
                (out[-1]["events"] if out else pending).append(item.to_json())
                continue
            out.append({"round": item.round, "action": item.action, "rationale": item.rationale,
                        "signals": item.signals, "actor": item.actor, "at": item.at,
                        "judge": judge_label(v.record), "outcome": v.record.outcome if v.record else None,
                        "heldout": v.heldout.to_json() if v.heldout else None, "events": pending,
                        "decision_outcome": _outcome(measured.get(item.id))})
            pending = []
    return out


def _outcome(o: DecisionOutcome | None) -> dict[str, Any] | None:
    """A decision's measured outcome (agent/controller/outcomes.py): status and measures, each null until
    measured; None for a decision logged before outcomes were measured, or not the controller's."""
    return None if o is None else {"status": o.status, **o.outcome}


def render(store: Store, run_id: str, verbose: bool = False) -> str:
    views = timeline(store, run_id)
    out: list[str] = []
    for v in views:
        if v.round == 0 and v.record is None:
            head = "before round 1"
        else:
            head = f"round {v.round}"
            if v.record is not None:
                pairs = "-" if v.record.n_pairs is None else v.record.n_pairs
                head += f"  judge {judge_label(v.record) or '?'}  pairs {pairs}"
            head += f"  {v.heldout.text(run_id)}" if v.heldout else "  held-out -"
            if v.record is not None:
                head += f"  outcome {v.record.outcome or '-'}"
        out.append(head)
        logged = [i.signals.get("changes") for i in v.items if isinstance(i, Decision) and i.action == "config_change"]
        for item in v.items:
            if isinstance(item, Decision):
                out += decision_lines(item, verbose)
            elif not (item.entry.action == "run.config" and item.entry.details.get("changes") in logged):
                out.append(f"  {item.text()}")  # a config change is shown once: by its decision when it has one
        out.append("")
    if not any(isinstance(i, Decision) for v in views for i in v.items):
        out.insert(0, f"no decisions yet for {run_id}")
    return "\n".join(out).rstrip() + "\n"
