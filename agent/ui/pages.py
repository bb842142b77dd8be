"""What each page shows, gathered from the store (read-only; no model is loaded). The approval page
is `agent.review.show.approval_view`, the same view as `tether show`; the notebook is `agent.review.notebook.render`,
the same text as `tether log`, a collapsible block a round. Templates only lay these out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.review.notebook import render as notebook_text
from agent.run.workspace import Workspace
from agent.ui import control
from agent.ui.launch import Launches, tail
from guardrails import gate
from guardrails.checks import InvariantResult
from memory import Approval, Checkpoint, Run, Store

RECENT = 10
OPEN_ROUNDS = 2  # the notebook's newest rounds shown open; older ones are one line each until opened


@dataclass(frozen=True)
class InvariantLine:
    """One invariant as the CLI prints it, and how it stands: "pass" (within its target), "bound"
    (passed within a ratchet bound, target not met), "fail" (failed, or could not be checked)."""

    line: str
    state: str


def invariant_lines(ck: Checkpoint) -> list[InvariantLine]:
    """`refuse-serious-harm 0.12 (target 0.25: met)`, one per invariant, as the CLI prints them."""
    report = ck.invariant_report or {}
    if report.get("error"):
        return [InvariantLine(str(report["error"]), "fail")]
    out = []
    for r in report.get("results", []):
        if isinstance(r, dict):
            result = InvariantResult.from_json(r)
            state = "fail" if not result.passed else ("pass" if result.met_target else "bound")
            out.append(InvariantLine(result.line(), state))
    return out


def heldout_oracle(ck: Checkpoint) -> tuple[float | None, float | None]:
    """(active, candidate) held-out oracle score recorded when the candidate was evaluated."""
    evaluation = (ck.metrics or {}).get("eval") or {}
    return (evaluation.get("active") or {}).get("oracle"), (evaluation.get("candidate") or {}).get("oracle")


@dataclass(frozen=True)
class InboxItem:
    approval: Approval
    invariants: list[InvariantLine] = field(default_factory=list)
    oracle: tuple[float | None, float | None] = (None, None)
    changes: list[str] = field(default_factory=list)


def inbox(store: Store) -> dict[str, Any]:
    pending = []
    for a in store.approvals(status="pending"):
        if a.kind == "checkpoint":
            ck = store.get_checkpoint(a.subject)
            pending.append(InboxItem(a, invariant_lines(ck), heldout_oracle(ck)) if ck else InboxItem(a))
        else:
            pending.append(InboxItem(a, changes=[str(c) for c in a.payload.get("changes") or []]))
    decided = sorted((a for a in store.approvals() if a.status != "pending"),
                     key=lambda a: a.decided_at or a.created_at, reverse=True)[:RECENT]
    return {"pending_list": pending, "decided": decided, "runs": store.list_runs()}


def pending_count(store: Store) -> int:
    return len(store.approvals(status="pending"))


def run_page(store: Store, run: Run) -> dict[str, Any]:
    checkpoints = store.checkpoints(run.id)
    problem = gate.active_problem(store, run)
    return {
        "run": run,
        "rounds": store.rounds(run.id),
        "approvals": store.approvals(run_id=run.id),
        "active_problem": problem,
        "checkpoints": [checkpoint_row(ck, run.active_checkpoint, problem) for ck in checkpoints],
        "notebook": notebook_blocks(notebook_text(store, run.id)),
    }


@dataclass(frozen=True)
class NotebookBlock:
    head: str  # "round 2  judge ...": the block's first line
    body: str
    open: bool


def notebook_blocks(text: str) -> list[NotebookBlock]:
    """`tether log`'s text cut at its blank lines (a block a round), the newest OPEN_ROUNDS open."""
    blocks = [b for b in text.strip("\n").split("\n\n") if b.strip()]
    return [NotebookBlock(b.split("\n", 1)[0], b, i >= len(blocks) - OPEN_ROUNDS) for i, b in enumerate(blocks)]


def run_controls(ws: Workspace, run: Run, launches: Launches) -> dict[str, Any]:
    """How the run stands right now (its process included) and what the console may do to it."""
    log = next((launch.log for launch in launches.all() if launch.run_id == run.id), None)
    return {"state": control.display_state(ws, run, launches), "may_resume": control.may_resume(ws, run, launches),
            "may_stop": control.may_stop(ws, run, launches), "log": str(log) if log else None,
            "log_tail": tail(log) if log else ""}


def live_version(ws: Workspace, store: Store, launches: Launches) -> str:
    """A digest of what the pages show: every run's state, round and active checkpoint, the pending approvals,
    the audit head, and the processes this console started with the size of their logs."""
    runs = [(r.id, control.display_state(ws, r, launches), r.round, r.updated_at, r.active_checkpoint)
            for r in store.list_runs()]
    pending = [a.id for a in store.approvals(status="pending")]
    started = [(launch.id, launch.run_id, launch.exit_code, _size(launch.log)) for launch in launches.all()]
    state = json.dumps([runs, pending, store.audit_head(), started], default=str)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # not written yet, or renamed to its run's log between the listing and now
        return 0


def checkpoint_row(ck: Checkpoint, active: str | None, problem: str | None = None) -> dict[str, Any]:
    """`problem`: why the loader refuses the run's active pointer (gate.active_problem): the row then shows
    it UNVERIFIED, never as active, as `tether status` and `tether checkpoints` do."""
    _, oracle = heldout_oracle(ck)
    pointed = ck.id == active
    return {"ck": ck, "run": ck.run_id or "", "active": pointed and problem is None,
            "unverified": problem if pointed else None, "oracle": oracle, "invariants": invariant_lines(ck),
            "can_roll_back": ck.status in ("approved", "base") and ck.id != active}


def checkpoints(store: Store, run_id: str | None) -> list[dict[str, Any]]:
    runs = {r.id: r for r in store.list_runs()}
    problems = {r.id: gate.active_problem(store, r) for r in runs.values()}
    return [checkpoint_row(ck, runs[ck.run_id].active_checkpoint if ck.run_id in runs else None,
                           problems.get(ck.run_id or "")) for ck in store.checkpoints(run_id)]


def score_rows(held: dict[str, Any]) -> list[dict[str, Any]]:
    """Held-out rows for the approval page: overall, then each family; active, candidate and the change."""
    cand, act = held["candidate"], held["active"]
    families: Sequence[str] = sorted(set(cand["oracle_by_family"]) | set(cand["judge_by_family"]))
    rows = [_score_row("overall", act["oracle"], cand["oracle"], act["judge"], cand["judge"])]
    rows += [_score_row(f, act["oracle_by_family"].get(f), cand["oracle_by_family"].get(f),
                        act["judge_by_family"].get(f), cand["judge_by_family"].get(f)) for f in families]
    return rows


def _score_row(name: str, oracle_a: Any, oracle_c: Any, judge_a: Any, judge_c: Any) -> dict[str, Any]:
    def delta(a: Any, c: Any) -> float | None:
        return c - a if isinstance(a, int | float) and isinstance(c, int | float) else None

    return {"name": name, "oracle_active": oracle_a, "oracle_candidate": oracle_c,
            "oracle_delta": delta(oracle_a, oracle_c), "judge_active": judge_a, "judge_candidate": judge_c,
            "judge_delta": delta(judge_a, judge_c)}


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(css class, line) for a unified diff: add, del, hunk, file or plain."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            out.append(("file", line))
        elif line.startswith("@@"):
            out.append(("hunk", line))
        elif line.startswith("+"):
            out.append(("add", line))
        elif line.startswith("-"):
            out.append(("del", line))
        else:
            out.append(("", line))
    return out
