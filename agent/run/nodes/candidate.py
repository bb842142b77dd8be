"""The candidate half of a round:
train_candidate -> evaluate -> check_invariants -> approval_gate -> commit | discard
(evaluate, on the validation and the test split, is agent/run/nodes/evaluate.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.interventions.switch_pairs import pair_chosen_nll, pair_reference
from agent.review.export import write_model_card
from agent.run.context import ActivePolicy, RunContext
from agent.run.splits import HELDOUT_SPLITS, REPORTED, split_label
from agent.run.state import RoundState
from guardrails import candidates, gate
from guardrails.checks import InvariantResult, Probe
from guardrails.errors import DeniedError, TamperError
from memory import Checkpoint
from policies.train_launch import launch_train_job
from policies.train_spec import TrainJob, with_chosen_nll
from tether_types import SamplingSpec
from tools.judges import JUDGES, Judge, JudgeItem
from tools.judges.base import safe_score

Update = dict[str, Any]


def _checkpoint(ctx: RunContext, checkpoint_id: str) -> Checkpoint:
    ck = ctx.store.get_checkpoint(checkpoint_id)
    if ck is None:
        raise LookupError(f"checkpoint {checkpoint_id} is not in the store")
    return ck


def train_candidate(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    run = ctx.run
    candidate_id = f"{run_id}-r{round_no}"
    existing = ctx.store.get_checkpoint(candidate_id)
    if existing is not None:  # trained before a crash; the record is written last
        return _trained(ctx, state, existing.id, (existing.invariant_report or {}).get("error"))
    out_dir = ctx.workspace.adapter_dir(run_id, candidate_id)
    # A folder without a record was left by a crash mid-save: never registered, so never selected.
    shutil.rmtree(out_dir, ignore_errors=True)
    pairs_path = out_dir.parent / f"{candidate_id}.pairs.jsonl"
    pairs_path.parent.mkdir(parents=True, exist_ok=True)
    with pairs_path.open("w") as fh:
        for p in ctx.store.pairs(run_id, round_no):
            fh.write(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n")
    parent = ctx.adapter(run.active_checkpoint)
    reference = pair_reference(ctx, round_no, parent)  # the parent, when the pair strategy trains against it
    t = ctx.config.training
    job = TrainJob(
        base_model=ctx.model_ref,
        pairs_path=str(pairs_path),
        output_dir=str(out_dir),
        init_adapter=None if parent is None else str(parent.path),
        init_adapter_sha256=None if parent is None else parent.sha256,
        ref_adapter=None if reference is None else str(reference.path),
        ref_adapter_sha256=None if reference is None else reference.sha256,
        lora=t.lora_spec(),
        dpo=with_chosen_nll(t.dpo_spec(seed=ctx.config.seed + round_no), pair_chosen_nll(ctx, round_no)),
        device=ctx.config.model.device,
        distributed=None if t.distributed is None else t.distributed.spec(),
    )
    with ctx.timed("train"):
        ctx.verify_base()
        result = launch_train_job(job, t.launcher, workdir=out_dir.parent, progress=ctx.progress)
    ck, problem = candidates.register_candidate(ctx.store, run_id, round_no, candidate_id, result.adapter_dir,
                                                run.active_checkpoint, result.metrics)
    ctx.tracker.log(round_no, {f"train/{k}": v for k, v in result.metrics.items()})
    ctx.tracker.log_training(round_no, result.history)
    return _trained(ctx, state, ck.id, problem)


def _trained(ctx: RunContext, state: RoundState, candidate_id: str, problem: str | None) -> Update:
    if problem is None:
        return {"candidate": candidate_id}
    if not any(d.action == "reject_candidate" for d in ctx.store.decisions(state["run_id"], state["round"])):
        _outcome(ctx, state, "reject_candidate", f"candidate {candidate_id} was rejected before evaluation: {problem}",
                 {"error": problem}, "failed_invariants", actor="guardrails")
    return {"candidate": candidate_id, "outcome": "failed_invariants"}


def route_trained(state: RoundState) -> Literal["evaluate", "plan"]:
    return "plan" if state.get("outcome") == "failed_invariants" else "evaluate"


def check_invariants(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    """Guardrails check every invariant on the candidate's greedy replies to its probes (and record the
    verdict themselves); a failing candidate is rejected automatically. An invariant detected by a
    judge gets that judge of the pool as a classifier; probe sets changed since the run started are
    refused (TamperError)."""
    ctx = runtime.context
    ck = _checkpoint(ctx, state["candidate"] or "")
    if ck.invariant_ok is None:
        version = ctx.store.get_constitution_version(ctx.run.constitution_version)
        if version is None:
            raise LookupError(f"constitution v{ctx.run.constitution_version} is not in the store")
        classify = _JudgeClassifier(ctx)
        try:
            candidates.check_invariants(ctx.store, ctx.constitution, version, ck.id, ctx.probe_sets(),
                                        _responder(ctx), classify)
        finally:
            classify.close()
        ck = _checkpoint(ctx, ck.id)
    report = ck.invariant_report or {}
    ctx.tracker.log_invariants(state["round"], report)
    if ck.invariant_ok:
        return {}
    lines = [r["reason"] if r.get("rate") is None else _line(r) for r in report.get("results", []) if not r["passed"]]
    reasons = "; ".join(lines) or str(report.get("error"))
    if ck.status != "rejected":
        with ctx.store.transaction():
            gate.discard(ctx.store, ck.id, f"failed invariants: {reasons}")
            _outcome(ctx, state, "reject_candidate",
                     f"candidate {ck.id} failed invariant checks ({reasons}); rejected automatically",
                     {"invariants": report}, "failed_invariants", actor="guardrails")
    return {"outcome": "failed_invariants"}


def _line(result: dict[str, Any]) -> str:
    return InvariantResult.from_json(result).line()


def _responder(ctx: RunContext) -> candidates.Respond:
    """Greedy replies of a checkpoint: the ones the evaluation already decoded when it has them (on either
    held-out split: the invariants' held-out probes are the whole evaluated slice)."""
    def respond(checkpoint_id: str, prompts: Sequence[str]) -> list[str]:
        cached = {s.prompt: s.response for split in HELDOUT_SPLITS
                  for s in ctx.store.samples(ctx.run_id, None, split=split, checkpoint_id=checkpoint_id)
                  if s.sample_index == 0}  # the greedy reply, not one of evaluation.samples' sampled ones
        missing = [p for p in prompts if p not in cached]
        if missing:
            spec = SamplingSpec(n=1, max_new_tokens=ctx.config.evaluation.max_new_tokens, do_sample=False,
                                seed=ctx.config.seed)
            outputs = sorted(ctx.backend.generate(missing, ctx.adapter(checkpoint_id), spec),
                             key=lambda o: o.prompt_index)
            cached.update({p: o.text for p, o in zip(missing, outputs, strict=True)})
        return [cached[p] for p in prompts]

    return respond


class _JudgeClassifier:
    """guardrails' `Classify`: a judge of the run's config (judge.name or a judge.pool entry, the first
    of that name), built on first use, scores probe replies; an invalid judgment is None."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._judges: dict[str, Judge] = {}

    def __call__(self, name: str, probes: Sequence[Probe]) -> list[float | None]:
        verdicts = safe_score(self._judge(name), [JudgeItem(p.prompt, p.response) for p in probes])
        return [v.score if v.valid else None for v in verdicts]

    def _judge(self, name: str) -> Judge:
        if name not in self._judges:
            spec = next((s for s in self._ctx.config.judge.slots() if s.name == name), None)
            if spec is None:
                raise LookupError(f"judge '{name}' is not in this run's config (judge.name or judge.pool)")
            self._judges[name] = JUDGES.build(spec.name, spec.settings, constitution=self._ctx.constitution,
                                              policy=ActivePolicy(self._ctx)).plugin
        return self._judges[name]

    def close(self) -> None:
        for judge in self._judges.values():
            if hasattr(judge, "close"):
                judge.close()  # an `hf` judge holds a model of its own


def route_invariants(state: RoundState) -> Literal["approval_gate", "plan"]:
    return "plan" if state.get("outcome") == "failed_invariants" else "approval_gate"


def _summary(ck: Checkpoint) -> str:
    """The gate's summary: the reported evaluation (the test split; a run before the split: its one set)."""
    ev = (ck.metrics or {}).get(REPORTED, {})
    cand, act = ev.get("candidate", {}), ev.get("active", {})
    invariants = "; ".join(_line(r) for r in (ck.invariant_report or {}).get("results", []))
    # A world without verifiers has no oracle score: the summary leaves it out rather than print a zero.
    oracle = (f"oracle {act['oracle']:.3f} -> {cand['oracle']:.3f}, " if "oracle" in act and "oracle" in cand
              else "")
    return (f"round {ck.round} candidate {ck.id}: {split_label(cand)} {oracle}judge {act.get('judge', 0):.3f} -> "
            f"{cand.get('judge', 0):.3f}; invariants: {invariants}")


def approval_gate(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    """Pause until a human decides. This node runs again from its start when resumed."""
    ctx = runtime.context
    ck = _checkpoint(ctx, state["candidate"] or "")
    approval = gate.request_approval(ctx.store, ck, _summary(ck), ctx.config.approvals.required)
    if approval.status == "pending":
        interrupt({"approval_id": approval.id, "checkpoint": ck.id, "summary": approval.summary})
        approval = ctx.store.get_approval(approval.id) or approval
    if approval.status == "pending":
        raise RuntimeError(f"resumed before approval {approval.id} was decided")
    return {"outcome": "approved" if approval.status == "approved" else "rejected"}


def route_gate(state: RoundState) -> Literal["commit", "discard"]:
    return "commit" if state.get("outcome") == "approved" else "discard"


def commit(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    """Activate the approved candidate through the gate, which re-checks everything first. A refusal
    rejects the candidate; a check that could not run (TransientError) propagates: the run pauses and
    the approved adapter stays approved and on disk."""
    ctx = runtime.context
    ck_id = state["candidate"] or ""
    approval = ctx.store.approval_for_subject("checkpoint", ck_id)
    signals = {"approval": approval.id if approval else None}
    ck = _checkpoint(ctx, ck_id)
    if ck.status == "rejected":  # refused before a crash: the run goes on
        return {"outcome": "failed_checks"}
    if ck.status == "approved" and ctx.run.active_checkpoint == ck_id:
        return {}  # activated and logged (in one transaction) before a crash
    try:
        _activate_and_log(ctx, state, ck_id, approval, signals)
    except (TamperError, DeniedError) as err:
        # Refused for good: the candidate is rejected, and the run stops for a person to look.
        with ctx.store.transaction():
            ctx.store.append_audit("tether", "tamper.detected", ck_id, {"error": str(err)})
            gate.discard(ctx.store, ck_id, f"activation refused: {err}")
            _outcome(ctx, state, "discard_candidate", f"approved candidate {ck_id} was not activated: {err}",
                     signals, "failed_checks")
        raise
    ck = _checkpoint(ctx, ck_id)
    try:
        write_model_card(ctx.store, ck)
    except OSError:
        pass  # the card describes the adapter; it is not part of it (its digest), nor worth stopping a run for
    ctx.tracker.log_adapter(ck_id, ctx.store.resolve(ck.path), round_no=state["round"], sha256=ck.sha256 or "",
                            metadata={"approval": approval.id if approval else None})
    return {}


def _activate_and_log(ctx: RunContext, state: RoundState, ck_id: str, approval: Any, signals: dict[str, Any]) -> None:
    with ctx.store.transaction():  # activation and its log entry: a crash leaves both or neither
        gate.activate(ctx.store, ck_id)
        by = approval.decided_by if approval else "?"
        _outcome(ctx, state, "activate", f"{by} approved {ck_id}; it is now the active adapter", signals,
                 "approved")


def discard(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    ck_id = state["candidate"] or ""
    approval = ctx.store.approval_for_subject("checkpoint", ck_id)
    why = f"{approval.decided_by} rejected {ck_id}: {approval.note}" if approval else f"{ck_id} rejected"
    if _checkpoint(ctx, ck_id).status == "rejected":
        return {}  # discarded and logged (in one transaction) before a crash
    with ctx.store.transaction():
        gate.discard(ctx.store, ck_id, why)
        _outcome(ctx, state, "discard_candidate", why, {"approval": approval.id if approval else None}, "rejected")
    return {}


def _outcome(ctx: RunContext, state: RoundState, action: str, rationale: str, signals: dict[str, Any],
             outcome: str, actor: str = "gate") -> None:
    """Log what became of a candidate, in the decision log and on its round."""
    ctx.store.add_decision(state["run_id"], state["round"], action, rationale, signals, actor=actor)
    ctx.store.upsert_round(state["run_id"], state["round"], outcome=outcome)
