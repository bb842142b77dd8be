"""What each page shows, gathered from the store (read-only; no model is loaded). The approval page
is `agent.review.show.approval_view`, the same view as `tether show`; the notebook is `agent.review.notebook.render`,
the same text as `tether log`. Templates only lay these out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrails import gate
from guardrails.checks import InvariantResult
from memory import Approval, Checkpoint, Run, Store
from memory.common import SPLITS

PROMPTS_PER_PAGE = 20
RECENT = 10


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
    }


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


@dataclass
class Response:
    sample_id: int
    index: int
    checkpoint: str
    text: str
    n_tokens: int
    scores: list[tuple[str, float | None, bool]]  # (judge, score, valid)
    chosen: list[float] = field(default_factory=list)  # margins of the pairs it was chosen in
    rejected: list[float] = field(default_factory=list)


@dataclass
class PromptGroup:
    prompt_id: str
    family: str
    prompt: str
    responses: list[Response] = field(default_factory=list)


def samples(store: Store, run: Run, round_: int, split: str, page: int) -> dict[str, Any]:
    """The round's samples grouped by prompt: each response with its judges' scores and whether a
    preference pair chose or rejected it (with the margin). PROMPTS_PER_PAGE prompts a page."""
    if split not in SPLITS:
        split = "train"
    rows = store.samples(run.id, round_, split=split)
    scores: dict[int, list[tuple[str, float | None, bool]]] = {}
    for j in store.judgments(run.id, round_, split=split):
        scores.setdefault(j.sample_id, []).append((j.judge, j.score, j.valid))
    pairs = store.pairs(run.id, round_)
    groups: dict[str, PromptGroup] = {}
    by_id: dict[int, Response] = {}
    for s in rows:
        group = groups.setdefault(s.prompt_id, PromptGroup(s.prompt_id, s.family, s.prompt))
        response = Response(s.id, s.sample_index, s.checkpoint_id or f"{run.id}-base", s.response, s.n_tokens,
                            scores.get(s.id, []))
        group.responses.append(response)
        by_id[s.id] = response
    for p in pairs:
        if p.chosen_sample_id in by_id:
            by_id[p.chosen_sample_id].chosen.append(p.margin)
        if p.rejected_sample_id in by_id:
            by_id[p.rejected_sample_id].rejected.append(p.margin)
    ordered = list(groups.values())
    pages = max(1, -(-len(ordered) // PROMPTS_PER_PAGE))
    page = min(max(1, page), pages)
    return {"run": run, "round": round_, "split": split, "splits": sorted(SPLITS, reverse=True),
            "rounds": [r.round for r in store.rounds(run.id)], "page": page, "pages": pages,
            "groups": ordered[(page - 1) * PROMPTS_PER_PAGE: page * PROMPTS_PER_PAGE],
            "n_prompts": len(ordered), "n_samples": len(rows), "n_pairs": len(pairs)}


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
