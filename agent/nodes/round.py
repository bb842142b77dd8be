"""The data half of a round: plan -> prompts -> sample -> judge -> pairs -> monitor.

Every node reads and writes the store by id and is idempotent: a node that re-runs after a crash
finds its rows already written (each write is one transaction) and reuses them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import RoundState
from guardrails import amendments
from guardrails.constitution import verify_pinned
from memory import Judgment, NewJudgment, NewPair, NewSample, Pair, Run, Sample
from policies.generation import SamplingSpec
from tools.judges import JudgeItem, PairItem, compare
from tools.monitors import RoundObservation, run_monitors
from tools.monitors.base import PairwiseWinner as Winner

Update = dict[str, Any]


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
    """An amendment approved (and verified) since the last round is in force from this round on."""
    with ctx.store.transaction():  # adoption and its log entry together, so a crash loses neither
        adopted = amendments.adopt(ctx.store, run)
        if adopted is None:
            return
        version, amended = adopted
        ctx.store.add_decision(
            run.id, round_no, "constitution",
            f"constitution v{version.version} (approval {version.approval_id}, proposed by {version.created_by}) "
            f"is in force from round {round_no}; it replaces v{run.constitution_version}",
            {"version": version.version, "previous": run.constitution_version, "approval": version.approval_id},
            actor="gate",
        )
    ctx.use_constitution(amended)


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
        do_sample=True,
        seed=ctx.config.seed * 1000 + round_no,
    )
    with ctx.timed("generate"):
        outputs = ctx.backend.generate([p.text for p in drawn], ctx.adapter(run.active_checkpoint), spec)
    ctx.counts["generated_tokens"] += sum(o.n_tokens for o in outputs)
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
    with ctx.timed("judge"):
        verdicts = ctx.judge.plugin.score([JudgeItem(s.prompt, s.response) for s in samples])
    rows = [
        NewJudgment(sample_id=s.id, judge=ctx.judge.name, score=v.score, valid=v.valid, raw=v.raw,
                    details=dict(v.details))
        for s, v in zip(samples, verdicts, strict=True)
    ]
    with ctx.timed("store"):
        ctx.store.add_judgments(rows)
    return {}


def _best_and_worst(group: list[tuple[Sample, float]]) -> tuple[tuple[Sample, float], tuple[Sample, float]]:
    ranked = sorted(group, key=lambda item: (item[1], -item[0].sample_index))
    return ranked[-1], ranked[0]


def pairs(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    """Best vs worst valid response per prompt; ties, small margins and identical texts dropped."""
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    if ctx.store.pairs(run_id, round_no):
        return {}
    scored = _scored_samples(ctx, run_id, round_no)
    rows = []
    for group in scored.values():
        if len(group) < 2:
            continue
        (best, hi), (worst, lo) = _best_and_worst(group)
        if hi - lo < ctx.config.pairs.min_margin or best.response.strip() == worst.response.strip():
            continue
        rows.append(
            NewPair(run_id=run_id, round=round_no, prompt_id=best.prompt_id, prompt=best.prompt,
                    chosen_sample_id=best.id, rejected_sample_id=worst.id, chosen=best.response,
                    rejected=worst.response, margin=hi - lo)
        )
    with ctx.timed("store"), ctx.store.transaction():
        ctx.store.add_pairs(rows)
        ctx.store.upsert_round(run_id, round_no, n_pairs=len(rows))
    return {}


def _scored_samples(ctx: RunContext, run_id: str, round_no: int) -> dict[str, list[tuple[Sample, float]]]:
    """Valid judgments grouped by prompt; invalid ones never become preferences."""
    by_sample = {j.sample_id: j for j in ctx.store.judgments(run_id, round_no)}
    grouped: dict[str, list[tuple[Sample, float]]] = defaultdict(list)
    for s in ctx.store.samples(run_id, round_no, split="train"):
        verdict = by_sample.get(s.id)
        if verdict is not None and verdict.valid and verdict.score is not None:
            grouped[s.prompt_id].append((s, verdict.score))
    return grouped


def monitor(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    """Every monitor on the round. One that raises neither fails the round nor vanishes: its keys are
    stored under the monitors' `_could_not_check` entry with the reason (tools/monitors/keys.py), and
    the controller treats a missing safety signal as fired."""
    ctx = runtime.context
    run_id, round_no = state["run_id"], state["round"]
    with ctx.timed("monitor"):
        obs = _observe(ctx, run_id, round_no)
        readings = run_monitors(ctx.monitors, obs)
    ctx.store.upsert_round(run_id, round_no, monitors=readings.to_json())
    ctx.tracker.log(round_no, readings.values)
    return {}


def _observe(ctx: RunContext, run_id: str, round_no: int) -> RoundObservation:
    by_sample = {j.sample_id: j for j in ctx.store.judgments(run_id, round_no)}
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in ctx.store.samples(run_id, round_no, split="train"):
        groups[s.prompt_id].append(s)
    ordered = list(groups.values())

    def score(s: Sample) -> float | None:
        j = by_sample.get(s.id)
        return j.score if j is not None and j.valid else None

    pairs = ctx.store.pairs(run_id, round_no)
    prompts = [ctx.prompt(g[0].prompt_id) for g in ordered]
    used = set(ctx.store.used_prompt_ids(run_id, before_round=round_no))
    defs = ctx.constitution.definitions
    return RoundObservation(
        prompts=[g[0].prompt for g in ordered],
        responses=[[s.response for s in g] for g in ordered],
        lengths=[[s.n_tokens for s in g] for g in ordered],
        scores=[[score(s) for s in g] for g in ordered],
        pair_margins=[p.margin for p in pairs],
        candidate_pairs=sum(1 for g in ordered if sum(score(s) is not None for s in g) >= 2),
        # Evaluation only: the oracle never reaches the judges; monitors measure judges against it. A world
        # without verifiers has none: None, so the oracle monitors stay silent (absent, never zero).
        oracle_scores=[[ctx.oracle(p, s.response) for s in g] for p, g in zip(prompts, ordered, strict=True)]
        if ctx.has_oracle else None,
        base_length_mean=_base_length_mean(ctx, run_id),
        pairwise=_position_checks(ctx, pairs),
        pool_scores=_pool_scores([by_sample.get(s.id) for g in ordered for s in g]),
        heldout=_last_heldout(ctx, run_id, round_no),
        prompt_reused=[p.id in used for p in prompts],
        # The constitution's own definitions (not the oracle): what the policy is asked to follow.
        benign=[not defs.is_harmful(p.text) for p in prompts],
        refusals=[[defs.is_refusal(s.response) for s in g] for g in ordered],
    )


def _pool_scores(judgments: list[Judgment | None]) -> dict[str, list[float | None]] | None:
    """Per-member scores of a jury (recorded in each judgment's details), for pool agreement."""
    labels = next((list(j.details["members"]) for j in judgments if j and "members" in j.details), None)
    if not labels:
        return None

    def member(j: Judgment | None, label: str) -> float | None:
        value = (j.details.get("members") or {}).get(label) if j else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return {label: [member(j, label) for j in judgments] for label in labels}


def _base_length_mean(ctx: RunContext, run_id: str) -> float | None:
    """Mean length of what the base model sampled in this run (round 1, unless rolled back since)."""
    base = [s.n_tokens for s in ctx.store.samples(run_id, None, split="train", checkpoint_id=f"{run_id}-base")]
    return sum(base) / len(base) if base else None


def _position_checks(ctx: RunContext, pairs: list[Pair]) -> list[tuple[Winner | None, Winner | None]]:
    """Each pair judged again in both orders: how often the judge's verdict follows the position."""
    verdicts = compare(ctx.judge.plugin, [PairItem(p.prompt, p.chosen, p.rejected) for p in pairs])
    checks: list[tuple[Winner | None, Winner | None]] = []
    for v in verdicts:
        if v.winner is None:
            checks.append((None, None))
        elif v.position_consistent:
            checks.append((v.winner, v.winner))
        else:
            first, second = v.details.get("orders", ("tie", "tie"))
            checks.append((first, second))
    return checks


def _last_heldout(ctx: RunContext, run_id: str, round_no: int) -> dict[str, float] | None:
    """The latest held-out evaluation before this round (the evaluate node runs after monitor)."""
    earlier = [c for c in ctx.store.checkpoints(run_id) if 0 < c.round < round_no and "eval" in (c.metrics or {})]
    if not earlier:
        return None
    evaluation = earlier[-1].metrics["eval"]
    return {f"{m}_{who}": evaluation[who][m] for who in ("active", "candidate") for m in ("oracle", "judge")
            if m in evaluation[who]}  # no oracle key for a world without verifiers
