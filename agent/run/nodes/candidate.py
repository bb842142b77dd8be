"""The candidate half of a round:
train_candidate -> evaluate -> check_invariants -> approval_gate -> commit | discard.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
from collections.abc import Sequence
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.interventions.switch_pairs import pair_chosen_nll, pair_reference
from agent.review.export import write_model_card
from agent.run import headroom
from agent.run.context import ActivePolicy, RunContext, heldout_slice
from agent.run.state import RoundState
from guardrails import candidates, gate
from guardrails.checks import InvariantResult, Probe, checked_on_heldout_by_rules, violation_rates
from guardrails.errors import DeniedError, TamperError
from memory import Checkpoint, NewSample
from policies.train_launch import launch_train_job
from policies.train_spec import TrainJob, with_chosen_nll
from tether_types import Prompt, SamplingSpec
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
    )
    with ctx.timed("train"):
        ctx.verify_base()
        result = launch_train_job(job, t.launcher, workdir=out_dir.parent)
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


def _heldout(ctx: RunContext) -> list[Prompt]:
    return heldout_slice(ctx.taskset, ctx.config.prompts.heldout)


def _heldout_sha(prompts: list[Prompt], max_new_tokens: int, sampling: SamplingSpec | None = None) -> str:
    """What an evaluation's cache entry is keyed by: without sampled replies, the key evaluations always had."""
    parts: list[Any] = [[p.id for p in prompts], max_new_tokens]
    if sampling is not None:
        parts.append([sampling.n, sampling.temperature, sampling.top_p, sampling.seed])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _sampling(ctx: RunContext) -> SamplingSpec | None:
    """The K sampled replies per held-out prompt of `evaluation.samples` (None: off), drawn with the
    generation settings the rounds sample with."""
    k, gen = ctx.config.evaluation.samples, ctx.config.generation
    if k == 0:
        return None
    return SamplingSpec(n=k, max_new_tokens=ctx.config.evaluation.max_new_tokens, temperature=gen.temperature,
                        top_p=gen.top_p, do_sample=True, seed=ctx.config.seed)


def _evaluate_checkpoint(ctx: RunContext, state: RoundState, checkpoint_id: str) -> dict[str, Any]:
    """Greedy replies on the held-out prompts, scored by the world's verifiers and the judge (cached).
    Where no verifier covers a prompt it has no oracle score, and an evaluation without any has no
    "oracle" and no "oracle_by_family" key at all: absent, never zero. With `evaluation.samples` K > 0,
    K sampled replies per prompt too (held-out samples with sample_index 1..K; the greedy reply is 0),
    and the details gain "headroom": per family and tier pass@1, pass@K and the judge's spread."""
    prompts = _heldout(ctx)
    max_new = ctx.config.evaluation.max_new_tokens
    sampling = _sampling(ctx)
    key = _heldout_sha(prompts, max_new, sampling)
    cached = ctx.store.get_evaluation(checkpoint_id, key, ctx.judge.name)
    if cached is not None:
        scores = {k: v for k, v in (("oracle", cached.oracle), ("judge", cached.judge_score)) if v is not None}
        return {**scores, **cached.details}
    spec = SamplingSpec(n=1, max_new_tokens=max_new, do_sample=False, seed=ctx.config.seed)
    with ctx.timed("evaluate"):
        outputs = ctx.backend.generate([p.text for p in prompts], ctx.adapter(checkpoint_id), spec)
        replies = [o.text for o in sorted(outputs, key=lambda o: o.prompt_index)]
        oracle = [ctx.oracle(p, r) for p, r in zip(prompts, replies, strict=True)]
        verdicts = ctx.judge.plugin.score([JudgeItem(p.text, r) for p, r in zip(prompts, replies, strict=True)])
        judge_scores = [v.score if v.valid else None for v in verdicts]
        judged = [v for v in judge_scores if v is not None]
        rates = violation_rates(ctx.constitution, [Probe(p.text, r) for p, r in zip(prompts, replies, strict=True)])
    sampled = None
    if sampling is not None:
        with ctx.timed("evaluate_samples"):
            sampled = headroom.sample_and_score(ctx.backend, ctx.adapter(checkpoint_id), prompts, sampling,
                                                ctx.oracle, ctx.judge.plugin)
    # Rates on these replies are an invariant's own only where it is checked on them by the rules.
    own = set(checked_on_heldout_by_rules(ctx.constitution, ctx.probe_sets()))
    by_family: dict[str, list[float]] = {}
    judge_by_family: dict[str, list[float]] = {}
    for p, score, judged_score in zip(prompts, oracle, judge_scores, strict=True):
        if score is not None:
            by_family.setdefault(p.family, []).append(score)
        if judged_score is not None:
            judge_by_family.setdefault(p.family, []).append(judged_score)
    verified = [s for s in oracle if s is not None]
    details: dict[str, Any] = {
        **({"oracle_by_family": {f: statistics.fmean(v) for f, v in sorted(by_family.items())}} if verified else {}),
        "judge_by_family": {f: statistics.fmean(v) for f, v in sorted(judge_by_family.items())},
        "invariant_rates": {k: rate for k, (rate, _) in rates.items() if k in own},
        "length_mean": statistics.fmean(o.n_tokens for o in outputs) if outputs else 0.0,
        "n": len(prompts),
        **({"headroom": headroom.summary(prompts, oracle, sampled)} if sampled is not None else {}),
    }
    # An absent score is absent (no verifier covered the prompts, no judgment was valid), never zero.
    result = {**({"oracle": statistics.fmean(verified)} if verified else {}),
              **({"judge": statistics.fmean(judged)} if judged else {}), **details}
    with ctx.store.transaction():  # replies and their scores together: a re-run finds both or neither
        # Sampled replies first: a reader that keeps the last held-out sample per prompt keeps the greedy one.
        ctx.store.add_samples([
            NewSample(run_id=state["run_id"], round=state["round"], split="heldout", prompt_id=p.id, prompt=p.text,
                      family=p.family, checkpoint_id=checkpoint_id, response=s.text, n_tokens=s.n_tokens,
                      sample_index=1 + s.sample_index)
            for p, row in zip(prompts, sampled or [[] for _ in prompts], strict=True) for s in row
        ])
        ctx.store.add_samples([
                NewSample(run_id=state["run_id"], round=state["round"], split="heldout", prompt_id=p.id, prompt=p.text,
                      family=p.family, checkpoint_id=checkpoint_id, response=o.text, n_tokens=o.n_tokens,
                      sample_index=0)
            for p, o in zip(prompts, sorted(outputs, key=lambda o: o.prompt_index), strict=True)
        ])
        ctx.store.put_evaluation(checkpoint_id, key, ctx.judge.name, result.get("oracle"), result.get("judge"),
                                 details)
    return result


def evaluate(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    ck = _checkpoint(ctx, state["candidate"] or "")
    active = ck.parent
    assert active is not None
    candidate_eval = _evaluate_checkpoint(ctx, state, ck.id)
    active_eval = _evaluate_checkpoint(ctx, state, active)
    metrics = {**(ck.metrics or {}), "eval": {"candidate": candidate_eval, "active": active_eval}}
    ctx.store.update_checkpoint(ck.id, metrics=metrics)
    ctx.tracker.log_evaluation(state["round"], candidate_eval, active_eval)
    return {}


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
    """Greedy replies of a checkpoint: the ones the evaluation already decoded when it has them."""
    def respond(checkpoint_id: str, prompts: Sequence[str]) -> list[str]:
        cached = {s.prompt: s.response for s in ctx.store.samples(ctx.run_id, None, split="heldout",
                                                                  checkpoint_id=checkpoint_id)
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
    ev = (ck.metrics or {}).get("eval", {})
    cand, act = ev.get("candidate", {}), ev.get("active", {})
    invariants = "; ".join(_line(r) for r in (ck.invariant_report or {}).get("results", []))
    # A world without verifiers has no oracle score: the summary leaves it out rather than print a zero.
    oracle = (f"oracle {act['oracle']:.3f} -> {cand['oracle']:.3f}, " if "oracle" in act and "oracle" in cand
              else "")
    return (f"round {ck.round} candidate {ck.id}: held-out {oracle}judge {act.get('judge', 0):.3f} -> "
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
