"""The evaluate node: the candidate and the checkpoint it would replace, on the held-out prompts.

Each is evaluated on the validation split (the controller's) and on the test split (reported only), each set
cached on its own (agent/run/splits.py says who may read which). A run that recorded an evaluation before the
split keeps evaluating its one held-out set.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from typing import Any

from langgraph.runtime import Runtime

from agent.run import headroom
from agent.run.context import RunContext
from agent.run.splits import REPORTED, VALIDATION, EvaluatedSplit, heldout_slice
from agent.run.state import RoundState
from guardrails.checks import Probe, checked_on_heldout_by_rules, violation_rates
from memory import NewSample
from policies.progress import bar as progress_bar
from tether_types import Prompt, SamplingSpec
from tools.judges import JudgeItem

Update = dict[str, Any]


def evaluate(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    ck = ctx.store.get_checkpoint(state["candidate"] or "")
    if ck is None or ck.parent is None:
        raise LookupError(f"candidate {state['candidate']} is not in the store, or has no parent")
    sides = {"candidate": ck.id, "active": ck.parent}
    sets = ctx.evaluation_sets()
    if sets is None:  # a run evaluated before the split: its one held-out set, read and reported alike
        plan = {REPORTED: (heldout_slice(ctx.taskset, ctx.config.prompts.heldout), "heldout")}
    else:
        plan = {VALIDATION: (list(sets.validation), "validation"), REPORTED: (list(sets.test), "test")}
    evaluations: dict[str, dict[str, dict[str, Any]]] = {key: {} for key in plan}
    # one step per checkpoint and split: (candidate, active) x (validation, test)
    with progress_bar("evaluating", len(plan) * len(sides), ctx.progress, unit="checkpoint x split") as advance:
        for key, (prompts, split) in plan.items():
            for side, checkpoint_id in sides.items():
                evaluations[key][side] = _evaluate_checkpoint(ctx, state, checkpoint_id, prompts, split)
                advance()
    ctx.store.update_checkpoint(ck.id, metrics={**(ck.metrics or {}), **evaluations})
    for key, prefix in ((REPORTED, "test" if sets is not None else "heldout"), (VALIDATION, "validation")):
        if key in evaluations:
            ctx.tracker.log_evaluation(state["round"], evaluations[key]["candidate"], evaluations[key]["active"],
                                       prefix=prefix)
    return {}


def _heldout_sha(prompts: list[Prompt], max_new_tokens: int, sampling: SamplingSpec | None,
                 split: EvaluatedSplit) -> str:
    """What an evaluation's cache entry is keyed by: the set's prompts and decoding, and its split. Without sampled
    replies, on the one set of a run before the split, the key evaluations always had."""
    parts: list[Any] = [[p.id for p in prompts], max_new_tokens]
    if sampling is not None:
        parts.append([sampling.n, sampling.temperature, sampling.top_p, sampling.seed])
    if split != "heldout":
        parts.append(split)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _sampling(ctx: RunContext) -> SamplingSpec | None:
    """The K sampled replies per held-out prompt of `evaluation.samples` (None: off), drawn with the
    generation settings the rounds sample with."""
    k, gen = ctx.config.evaluation.samples, ctx.config.generation
    if k == 0:
        return None
    return SamplingSpec(n=k, max_new_tokens=ctx.config.evaluation.max_new_tokens, temperature=gen.temperature,
                        top_p=gen.top_p, top_k=gen.top_k, do_sample=True, seed=ctx.config.seed)


def _evaluate_checkpoint(ctx: RunContext, state: RoundState, checkpoint_id: str, prompts: list[Prompt],
                         split: EvaluatedSplit) -> dict[str, Any]:
    """Greedy replies on the held-out prompts of one split, scored by the world's verifiers and the judge
    (cached); the result says its split ("split", absent on the one set of a run before the split). Where no
    verifier covers a prompt it has no oracle score, and an evaluation without any has no "oracle" and no
    "oracle_by_family" key at all: absent, never zero. With `evaluation.samples` K > 0, K sampled replies per
    prompt too (samples of the split with sample_index 1..K; the greedy reply is 0), and the details gain
    "headroom": per family and tier pass@1, pass@K and the judge's spread."""
    max_new = ctx.config.evaluation.max_new_tokens
    sampling = _sampling(ctx)
    key = _heldout_sha(prompts, max_new, sampling, split)
    cached = ctx.store.get_evaluation(checkpoint_id, key, ctx.judge.name)
    if cached is not None:
        scores = {k: v for k, v in (("oracle", cached.oracle), ("judge", cached.judge_score)) if v is not None}
        return {**scores, **cached.details}
    spec = SamplingSpec(n=1, max_new_tokens=max_new, do_sample=False, seed=ctx.config.seed)
    with ctx.timed("evaluate"):
        outputs = sorted(ctx.backend.generate([p.text for p in prompts], ctx.adapter(checkpoint_id), spec),
                         key=lambda o: o.prompt_index)
        replies = [o.text for o in outputs]
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
        **({"split": split} if split != "heldout" else {}),
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
    run_id, round_no = state["run_id"], state["round"]
    with ctx.store.transaction():  # replies and their scores together: a re-run finds both or neither
        # Sampled replies first: a reader that keeps the last held-out sample per prompt keeps the greedy one.
        ctx.store.add_samples([
            NewSample(run_id=run_id, round=round_no, split=split, prompt_id=p.id, prompt=p.text, family=p.family,
                      checkpoint_id=checkpoint_id, response=s.text, n_tokens=s.n_tokens,
                      sample_index=1 + s.sample_index)
            for p, row in zip(prompts, sampled or [[] for _ in prompts], strict=True) for s in row
        ])
        ctx.store.add_samples([
            NewSample(run_id=run_id, round=round_no, split=split, prompt_id=p.id, prompt=p.text, family=p.family,
                      checkpoint_id=checkpoint_id, response=o.text, n_tokens=o.n_tokens, sample_index=0,
                      served_by=o.served_by)
            for p, o in zip(prompts, outputs, strict=True)
        ])
        ctx.store.put_evaluation(checkpoint_id, key, ctx.judge.name, result.get("oracle"), result.get("judge"),
                                 details)
    return result
