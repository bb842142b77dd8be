"""The data half of a round: plan -> prompts -> sample -> judge -> pairs (then monitor: nodes/monitor.py).

Every node reads and writes the store by id and is idempotent: a node that re-runs after a crash
finds its rows already written (each write is one transaction) and reuses them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any, Literal

from langgraph.runtime import Runtime

from agent.interventions.switch_pairs import pair_strategy
from agent.run.context import RunContext
from agent.run.state import RoundState
from guardrails import amendments
from guardrails.constitution import verify_pinned
from memory import NewJudgment, NewPair, NewSample, Run, Sample
from policies.progress import bar as progress_bar
from tether_types import SamplingSpec
from tools.judges import JudgeItem
from tools.pairs import Candidate, PromptGroup

Update = dict[str, Any]
# The base model's samples drawn for anchored rejection (tools/pairs/anchored.py) are stored as this round of
# the run's base checkpoint: before any training, and no round the graph runs.
ANCHOR_ROUND = 0


def plan(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    run = ctx.store.get_run(state["run_id"])
    assert run is not None
    round_no = state["round"] + 1
    if round_no <= run.rounds_budget:
        _adopt_amendments(ctx, run, round_no)
    # The invariants may not change under a running run; fail before spending any compute.
    verify_pinned(run.invariants, ctx.constitution)
    if round_no <= run.rounds_budget:
        ctx.store.upsert_round(run.id, round_no, judge={"label": ctx.judge_label(), **ctx.judge.spec()})
        ctx.store.update_run(run.id, round=round_no)
    return {"round": round_no, "prompt_ids": [], "action": None, "candidate": None, "outcome": None}


def _adopt_amendments(ctx: RunContext, run: Run, round_no: int) -> None:
    """An amendment approved (and verified) since the last round is in force from this round on: the run's
    row names it, and ctx.constitution (and the judge built for it) follow the row."""
    with ctx.store.transaction():  # adoption and its log entry together, so a crash loses neither
        adopted = amendments.adopt(ctx.store, run)
        if adopted is None:
            return
        version, _ = adopted
        ctx.store.add_decision(
            run.id, round_no, "constitution",
            f"constitution v{version.version} (approval {version.approval_id}, proposed by {version.created_by}) "
            f"is in force from round {round_no}; it replaces v{run.constitution_version}",
            {"version": version.version, "previous": run.constitution_version, "approval": version.approval_id},
            actor="gate",
        )


def route_plan(state: RoundState, runtime: Runtime[RunContext]) -> Literal["prompts", "decide"]:
    run = runtime.context.store.get_run(state["run_id"])
    assert run is not None
    return "prompts" if state["round"] <= run.rounds_budget else "decide"


def prompts(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    """The pool's slice for this round, part of it replaced by the run's own prompts not used yet
    (regenerated and adversarial ones, oldest first, at most prompts.new_share of the round)."""
    ctx = runtime.context
    cfg = ctx.config.prompts
    drawn = ctx.prompt_generator.plugin.draw(ctx.train_pool, state["round"], cfg.per_round, ctx.config.seed)
    used = set(ctx.store.used_prompt_ids(state["run_id"], before_round=state["round"]))
    fresh = [p.id for p in ctx.store.run_prompts(state["run_id"]) if p.id not in used]
    fresh = fresh[: int(len(drawn) * cfg.new_share)]
    ids = [p.id for p in drawn[: len(drawn) - len(fresh)]] + fresh
    ctx.store.upsert_round(state["run_id"], state["round"], n_prompts=len(ids))
    return {"prompt_ids": ids}


def sample(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    if ctx.store.samples(run_id, round_no, split="train"):
        return {}
    run = ctx.store.get_run(run_id)
    assert run is not None
    drawn = [ctx.prompt(pid) for pid in state["prompt_ids"]]
    gen = ctx.config.generation
    spec = SamplingSpec(
        n=gen.samples_per_prompt,
        max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature,
        top_p=gen.top_p,
        top_k=gen.top_k,
        do_sample=True,
        seed=ctx.config.seed * 1000 + round_no,
    )
    with ctx.timed("generate"):
        outputs = ctx.backend.generate([p.text for p in drawn], ctx.adapter(run.active_checkpoint), spec)
    ctx.counts["generated_tokens"] += sum(o.n_tokens for o in outputs)
    stats = ctx.backend.last_stats
    if stats is not None:  # slot efficiency = decoded_tokens / slot_steps (bench_rounds reports it)
        ctx.counts["decoded_tokens"] += stats.decoded_tokens
        ctx.counts["slot_steps"] += stats.slot_steps
    rows = [
        NewSample(
            run_id=run_id,
            round=round_no,
            split="train",
            prompt_id=drawn[o.prompt_index].id,
            prompt=drawn[o.prompt_index].text,
            family=drawn[o.prompt_index].family,
            checkpoint_id=run.active_checkpoint,
            response=o.text,
            n_tokens=o.n_tokens,
            sample_index=o.sample_index,
            served_by=o.served_by,
        )
        for o in outputs
    ]
    with ctx.timed("store"), ctx.store.transaction():  # one write: a crash leaves all of it or none
        ctx.store.add_samples(rows)
        ctx.store.upsert_round(run_id, round_no, n_samples=len(rows))
    return {}


def judge(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    if ctx.store.judgments(run_id, round_no):
        return {}
    samples = ctx.store.samples(run_id, round_no, split="train")
    built = ctx.judge
    # One step per answer, but the judge scores the round in one call (its budgets are per call), so the
    # bar moves once, at the end; its clock shows the judge is at work meanwhile.
    with ctx.timed("judge"), progress_bar(f"judging ({built.name})", len(samples), ctx.progress,
                                          unit="answers") as advance:
        verdicts = built.plugin.score([JudgeItem(s.prompt, s.response) for s in samples])
        advance(len(verdicts))
    rows = [
        NewJudgment(sample_id=s.id, judge=built.name, score=v.score, valid=v.valid, raw=v.raw,
                    details=dict(v.details))
        for s, v in zip(samples, verdicts, strict=True)
    ]
    with ctx.timed("store"):
        ctx.store.add_judgments(rows)
    return {}


def pairs(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    """Per prompt, the run's pair strategy (tools/pairs; pairs.strategy, moved on by switch_pairs) picks a
    chosen and a rejected response among the validly judged ones (and, for `anchored`, the base model's
    samples of the prompt); pairs under pairs.min_margin and identical texts are dropped."""
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    if ctx.store.pairs(run_id, round_no):
        return {}
    built = pair_strategy(ctx, round_no)
    strategy = built.plugin
    groups = _prompt_groups(ctx, run_id, round_no)
    if strategy.needs_anchors:
        anchors = _anchors(ctx, run_id, [g.prompt_id for g in groups])
        groups = [replace(g, anchors=anchors.get(g.prompt_id, ())) for g in groups]
    if strategy.needs_base_logp:
        groups = _with_base_logp(ctx, groups, built.name)
    rows = []
    for group in groups:
        choice = strategy.select(group, ctx.config.pairs.min_margin)
        if choice is None:
            continue
        rows.append(
            NewPair(run_id=run_id, round=round_no, prompt_id=group.prompt_id, prompt=group.prompt,
                    chosen_sample_id=choice.chosen.sample_id, rejected_sample_id=choice.rejected.sample_id,
                    chosen=choice.chosen.response, rejected=choice.rejected.response, margin=choice.margin)
        )
    with ctx.timed("store"), ctx.store.transaction():
        ctx.store.add_pairs(rows)
        ctx.store.upsert_round(run_id, round_no, n_pairs=len(rows))
    return {}


def _prompt_groups(ctx: RunContext, run_id: str, round_no: int) -> list[PromptGroup]:
    """The round's validly judged samples per prompt, in sampling order; invalid judgments never become
    preferences."""
    by_sample = {j.sample_id: j for j in ctx.store.judgments(run_id, round_no)}
    grouped: dict[str, list[tuple[Sample, float]]] = defaultdict(list)
    for s in ctx.store.samples(run_id, round_no, split="train"):
        verdict = by_sample.get(s.id)
        if verdict is not None and verdict.valid and verdict.score is not None:
            grouped[s.prompt_id].append((s, verdict.score))
    return [PromptGroup(pid, group[0][0].prompt, group[0][0].family,
                        tuple(Candidate(s.id, s.response, score, s.sample_index) for s, score in group))
            for pid, group in grouped.items()]


def _with_base_logp(ctx: RunContext, groups: list[PromptGroup], strategy: str) -> list[PromptGroup]:
    """Each candidate with its mean log-prob per token under the base model, for a strategy that ranks by
    it (regularized)."""
    logps = base_logps(ctx, [(c.sample_id, g.prompt, c.response) for g in groups for c in g.candidates])
    if logps is None:  # validate refuses this configuration; a plug-in backend may still lack it
        raise RuntimeError(f"pair strategy {strategy!r} needs base-model log-probs, which the "
                           f"{ctx.config.generation.backend} backend does not compute; use generation.backend: "
                           "transformers")
    values = iter(logps)
    return [replace(g, candidates=tuple(replace(c, base_logp=next(values)) for c in g.candidates)) for g in groups]


def base_logps(ctx: RunContext, samples: list[tuple[int, str, str]]) -> list[float] | None:
    """The mean log-prob per token of each (sample id, prompt, response) under the base model, the adapter
    disabled; None when the backend cannot score (vLLM). A sample is scored once in a process (ctx.scored, kept
    per base-model digest): on a resume it is scored again, which is deterministic and cheaper than storing it."""
    score = getattr(ctx.backend, "base_logprobs", None)
    if score is None:
        return None
    scored = ctx.scored
    todo = [s for s in samples if s[0] not in scored]
    if todo:
        with ctx.timed("score"):
            values = score([prompt for _, prompt, _ in todo], [response for _, _, response in todo])
        scored.update(zip((sid for sid, _, _ in todo), values, strict=True))
    return [scored[sid] for sid, _, _ in samples]


def _anchors(ctx: RunContext, run_id: str, prompt_ids: list[str]) -> dict[str, tuple[Candidate, ...]]:
    """The base model's samples of each prompt, scored by this round's judge. Drawn once per prompt (K, the
    adapter disabled) and stored as round ANCHOR_ROUND of the base checkpoint; scored afresh each time, since
    the judge (or its constitution) may have changed. Invalid verdicts are left out, as everywhere."""
    base_id = f"{run_id}-base"
    drawn = {s.prompt_id for s in ctx.store.samples(run_id, ANCHOR_ROUND, split="train", checkpoint_id=base_id)}
    missing = [ctx.prompt(pid) for pid in prompt_ids if pid not in drawn]
    if missing:
        gen = ctx.config.generation
        spec = SamplingSpec(n=gen.samples_per_prompt, max_new_tokens=gen.max_new_tokens, temperature=gen.temperature,
                            top_p=gen.top_p, top_k=gen.top_k, do_sample=True,
                            seed=ctx.config.seed * 1000 + ANCHOR_ROUND)
        with ctx.timed("generate"):
            outputs = ctx.backend.generate([p.text for p in missing], None, spec)
        ctx.counts["generated_tokens"] += sum(o.n_tokens for o in outputs)
        rows = [NewSample(run_id=run_id, round=ANCHOR_ROUND, split="train", prompt_id=missing[o.prompt_index].id,
                          prompt=missing[o.prompt_index].text, family=missing[o.prompt_index].family,
                          checkpoint_id=base_id, response=o.text, n_tokens=o.n_tokens, sample_index=o.sample_index,
                          served_by=o.served_by)
                for o in outputs]
        with ctx.timed("store"):
            ctx.store.add_samples(rows)  # one transaction: a crash leaves all of them or none
    stored: dict[str, list[Sample]] = defaultdict(list)
    for s in ctx.store.samples(run_id, ANCHOR_ROUND, split="train", checkpoint_id=base_id):
        stored[s.prompt_id].append(s)
    samples = [s for pid in prompt_ids for s in stored[pid]]
    with ctx.timed("judge"):
        verdicts = ctx.judge.plugin.score([JudgeItem(s.prompt, s.response) for s in samples])
    out: dict[str, list[Candidate]] = defaultdict(list)
    for s, v in zip(samples, verdicts, strict=True):
        if v.valid and v.score is not None:
            out[s.prompt_id].append(Candidate(s.id, s.response, v.score, s.sample_index))
    return {pid: tuple(found) for pid, found in out.items()}
