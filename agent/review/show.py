"""What a reviewer needs to decide an approval, gathered from the store (no model is loaded).

For a checkpoint: held-out scores of the candidate against the active checkpoint it would replace
(overall and per family; the test split, which no decision of the run read: agent/run/splits.py), each
invariant's absolute rate with its interval (lower–upper, n, level), the bound in use and the target, which
targets are not met (approving needs --accept-not-met), the test prompts where the two answers differ most
(both answers), a sample of the pairs it was trained on, the
decisions that led to it, and who has signed. For a constitution change: a unified diff of the
proposal against the version it amends, who proposed it, and who has signed; for a new lineage
(`tether constitution new`) also its whole text and its invariants in full, and what it changes against the
lineage in force.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import asdict
from typing import Any

from agent.controller.learned import PolicyFileError, parse_policy
from agent.review import policy_view
from agent.run.judge_trust import candidate_judge_audits
from agent.run.splits import REPORTED, REPORTED_SPLITS, split_of
from guardrails import amendments, lineage, signoff
from guardrails.checks import InvariantReport, InvariantResult
from guardrails.constitution import ConstitutionError, parse_constitution
from guardrails.errors import TamperError
from memory import Approval, Checkpoint, Store

DIFFERING = 5  # held-out prompts shown by default; --all shows every one
PAIRS = 4  # training pairs shown


def approval_view(store: Store, approval: Approval, *, all_prompts: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": approval.id, "kind": approval.kind, "status": approval.status, "run_id": approval.run_id,
        "subject": approval.subject, "subject_sha256": approval.subject_sha256, "created_at": approval.created_at,
        "summary": approval.summary, "signatures": _signatures(store, approval),
    }
    if approval.kind == "constitution":
        return {**view, **_constitution_view(store, approval)}
    if approval.kind == "controller":
        return {**view, **_policy_view(approval)}
    ck = store.get_checkpoint(approval.subject)
    if ck is None:
        return {**view, "error": f"checkpoint {approval.subject} is not in the store"}
    return {**view, **_checkpoint_view(store, ck, all_prompts)}


def _policy_view(approval: Approval) -> dict[str, Any]:
    """A proposed controller policy as `tether controller show` explains it, from the text the approval holds."""
    text = str(approval.payload.get("content", ""))
    try:
        policy = parse_policy(text.encode(), f"approval {approval.id}")
    except PolicyFileError as err:
        return {"error": str(err)}
    return {"policy": policy_view.explain(policy, approval.subject_sha256)}


def _signatures(store: Store, approval: Approval) -> dict[str, Any]:
    try:
        result = signoff.verify(store, approval)
    except TamperError as err:
        return {"verified": False, "problem": str(err), "signed": []}
    return {"verified": True, "required": result.required, "approved_by": list(result.approved_by),
            "rejected_by": [name for name, _ in result.rejected_by], "signed": list(result.signatures)}


def _scores(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {"oracle": evaluation.get("oracle"), "judge": evaluation.get("judge"),
            "oracle_by_family": evaluation.get("oracle_by_family") or {},
            "judge_by_family": evaluation.get("judge_by_family") or {}, "n": evaluation.get("n"),
            # pass@1 / pass@K / the judge's spread per family and tier, when evaluation.samples > 0
            "headroom": evaluation.get("headroom") or {}}


def _checkpoint_view(store: Store, ck: Checkpoint, all_prompts: bool) -> dict[str, Any]:
    evaluation = (ck.metrics or {}).get(REPORTED) or {}
    report = ck.invariant_report or {}
    return {
        "checkpoint": {"id": ck.id, "round": ck.round, "status": ck.status, "parent": ck.parent, "path": ck.path,
                       "train": (ck.metrics or {}).get("train") or {}},
        # "split": test, or "heldout" for a run evaluated before the split (its one set)
        "heldout": {"split": split_of(evaluation.get("candidate") or {}),
                    "candidate": _scores(evaluation.get("candidate") or {}),
                    "active": _scores(evaluation.get("active") or {})},
        "invariants": [_invariant(r) for r in report.get("results", []) if isinstance(r, dict)],
        "targets_not_met": [r.id for r in InvariantReport.from_json(report).not_met()],
        "invariants_error": report.get("error"),
        "answers": _answers(store, ck, all_prompts),
        "pairs": _pairs(store, ck),
        "judge_audits": _judge_audits(store, ck),
        "decisions": _decisions(store, ck),
    }


def _invariant(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored result with every field (a report from before intervals: lower, upper and confidence
    None), whether its target is met, and its line."""
    result = InvariantResult.from_json(stored)
    return {**stored, **asdict(result), "met_target": result.met_target, "line": result.line()}


def _answers(store: Store, ck: Checkpoint, all_prompts: bool) -> list[dict[str, Any]]:
    """Held-out prompts of the reported split with both answers, the most different first (by text: 1 - difflib
    ratio)."""
    if ck.run_id is None or ck.parent is None:
        return []
    mine = {s.prompt_id: s for split in REPORTED_SPLITS
            for s in store.samples(ck.run_id, None, split=split, checkpoint_id=ck.id)}
    theirs = {s.prompt_id: s for split in REPORTED_SPLITS
              for s in store.samples(ck.run_id, None, split=split, checkpoint_id=ck.parent)}
    rows = []
    for pid in sorted(mine.keys() & theirs.keys()):
        a, b = theirs[pid], mine[pid]
        difference = 1.0 - difflib.SequenceMatcher(None, a.response, b.response).ratio()
        rows.append({"prompt_id": pid, "family": b.family, "prompt": b.prompt, "active": a.response,
                     "candidate": b.response, "difference": round(difference, 3)})
    rows.sort(key=lambda r: (-r["difference"], r["prompt_id"]))
    return rows if all_prompts else rows[:DIFFERING]


def _pairs(store: Store, ck: Checkpoint) -> dict[str, Any]:
    pairs = store.pairs(ck.run_id, ck.round) if ck.run_id else []
    shown = random.Random(ck.id).sample(pairs, min(PAIRS, len(pairs)))
    return {"total": len(pairs), "shown": [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
                                            "margin": p.margin} for p in shown]}


def _judge_audits(store: Store, ck: Checkpoint) -> list[dict[str, Any]]:
    """The audits that vouched for the judges whose verdicts chose its pairs, as they stood when it was trained."""
    run = store.get_run(ck.run_id) if ck.run_id else None
    return [] if run is None else candidate_judge_audits(store, run, ck.round, ck.created_at)


def _decisions(store: Store, ck: Checkpoint) -> list[dict[str, Any]]:
    """The decisions of the rounds since the parent's round: what led to this candidate."""
    if ck.run_id is None:
        return []
    parent = store.get_checkpoint(ck.parent) if ck.parent else None
    since = parent.round if parent is not None else 0
    return [{"round": d.round, "action": d.action, "actor": d.actor, "rationale": d.rationale, "at": d.at}
            for d in store.decisions(ck.run_id) if since < d.round <= ck.round]


def _constitution_view(store: Store, approval: Approval) -> dict[str, Any]:
    base_version = approval.payload.get("base_version")
    base = store.get_constitution_version(base_version) if isinstance(base_version, int) else None
    proposed = str(approval.payload.get("content", ""))
    before = base.content if base is not None else ""
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), proposed.splitlines(keepends=True),
                                        fromfile=f"constitution v{base_version}", tofile=f"proposal {approval.id}"))
    view = {"proposed_by": approval.payload.get("proposed_by"), "base_version": base_version,
            "changes": approval.payload.get("changes") or [], "diff": diff, "lineage": None}
    founds = amendments.founded_lineage(approval)
    if founds is None:
        return view
    try:  # what it changes, recomputed from the texts themselves (the digest binds the proposed one)
        new = parse_constitution(proposed, f"proposal {approval.id}")
        if base is not None:
            view["changes"] = lineage.changes(parse_constitution(base.content, f"v{base.version}"), new)
        shown: dict[str, Any] = new.model_dump(mode="json")
    except ConstitutionError as err:
        shown = {"error": str(err)}
    return {**view, "lineage": founds, "content": proposed, "constitution": shown,
            "replaces_lineage": amendments.lineage_of(store, base) if base is not None else None}
