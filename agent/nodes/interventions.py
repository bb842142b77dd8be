"""The controller's interventions, one node each; every one leads to the next round.

    switch_judge        move the run to the next judge of judge.pool
    switch_pairs        move the run to the next pair strategy of pairs.pool
    regenerate_prompts  self-prompting: the policy (or prompts.regenerate.writer_model) writes new
                        prompts from few-shot examples; deduplicated and diversity-filtered
    add_adversarial     a red-team curriculum mutated from the policy's recorded failures
    propose_amendment   the agent drafts a principle change as an approval of kind `constitution`

Each node is idempotent: it records its outcome on the round last, in the same transaction as its
effect, and does nothing when it finds that outcome already there (a resumed run re-enters the
node it crashed in).
"""

from __future__ import annotations

import hashlib
import random
import statistics
from collections import defaultdict
from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.state import RoundState
from guardrails import amendments
from guardrails.gate import GateError
from memory import RunPrompt
from policies.generation import make_backend
from tether_types import AdapterRef, Prompt, SamplingSpec, prompt_id
from tools.pairs import PAIR_STRATEGIES, PairStrategy
from tools.prompts.adversarial import MAX_LEVEL, Failure, curriculum
from tools.prompts.dedup import select_new
from tools.prompts.writer import parse_written, writer_prompt, writing_tasks
from tools.registry import Built

Update = dict[str, Any]
WRITER_MAX_NEW_TOKENS = 32  # a prompt is one line; the tiny model's context is 128 tokens


def _done(ctx: RunContext, state: RoundState) -> bool:
    record = ctx.store.get_round(state["run_id"], state["round"])
    return record is not None and record.outcome is not None


def _finish(ctx: RunContext, state: RoundState, outcome: str, action: str, rationale: str,
            signals: dict[str, Any]) -> None:
    ctx.store.add_decision(state["run_id"], state["round"], action, rationale, signals, actor="tether")
    ctx.store.upsert_round(state["run_id"], state["round"], outcome=outcome)


# -- switch_judge ------------------------------------------------------------------------------

def switch_judge(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    if _done(ctx, state):
        return {}
    before, slot = ctx.judge_label(), ctx.judge_slot + 1
    with ctx.store.transaction():
        ctx.use_judge_slot(slot)
        _finish(ctx, state, "judge_switched", "judge_switched",
                f"judge {before} left; {ctx.judge_label(slot)} judges from round {state['round'] + 1}",
                {"from": before, "to": ctx.judge_label(slot), "slot": slot})
    return {}


# -- switch_pairs ------------------------------------------------------------------------------
# The run's pair strategy is a slot of pairs.slots(): slot n from the round after the n-th round whose
# outcome is "pairs_switched" (that outcome is written with the switch's decision, in one transaction,
# so the slot survives a crash and a resume without a column of its own).


def pairs_slot(ctx: RunContext, round_no: int) -> int:
    """The slot in force on round `round_no`: how many earlier rounds switched the pair strategy."""
    return sum(r.round < round_no and r.outcome == "pairs_switched" for r in ctx.store.rounds(ctx.run_id))


def pairs_label(ctx: RunContext, slot: int) -> str:
    """A strategy of the pool by name, with its slot when the pool holds that name twice."""
    slots = ctx.config.pairs.slots()
    name = slots[slot].name
    return name if sum(s.name == name for s in slots) == 1 else f"{name}#{slot}"


def pair_strategy(ctx: RunContext, round_no: int) -> Built[PairStrategy]:
    """The pair strategy that builds (and trains on) round `round_no`'s pairs."""
    slots = ctx.config.pairs.slots()
    spec = slots[min(pairs_slot(ctx, round_no), len(slots) - 1)]  # a resumed run's pool may have shrunk
    return PAIR_STRATEGIES.build(spec.name, spec.settings)


def pair_reference(ctx: RunContext, round_no: int, parent: AdapterRef | None) -> AdapterRef | None:
    """The DPO reference adapter of round `round_no`'s training job: the parent adapter (the run's active
    checkpoint, verified by ctx.adapter) when the round's pair strategy trains against it (`reference:
    parent`, e.g. iterative_dpo), else None: the base model with the adapter disabled. In the first round,
    with no adapter yet, the parent is the base model either way."""
    return parent if pair_strategy(ctx, round_no).plugin.reference == "parent" else None


def pair_chosen_nll(ctx: RunContext, round_no: int) -> float:
    """Weight of the chosen responses' NLL in round `round_no`'s loss: its pair strategy's `chosen_nll`
    (rpo: DPO + NLL), 0 for plain DPO."""
    return float(pair_strategy(ctx, round_no).plugin.chosen_nll)


def switch_pairs(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    if _done(ctx, state):
        return {}
    round_no = state["round"]
    slots = ctx.config.pairs.slots()
    slot = pairs_slot(ctx, round_no) + 1
    if slot >= len(slots):  # the controller only switches with a strategy left; fail loudly otherwise
        raise RuntimeError(f"switch_pairs on round {round_no}: no pair strategy left after slot {slot - 1}")
    why = next((d.signals.get("pairs_switch") or {} for d in reversed(ctx.store.decisions(state["run_id"], round_no))
                if d.actor == "controller" and d.action == "switch_pairs"), {})
    before, after = pairs_label(ctx, slot - 1), pairs_label(ctx, slot)
    family = f", family {why['family']}" if why.get("family") else ""
    reason = f" ({why['why']}{family})" if why.get("why") else ""
    with ctx.store.transaction():
        _finish(ctx, state, "pairs_switched", "pairs_switched",
                f"pair strategy {before} left{reason}; {after} builds the pairs from round {round_no + 1}",
                {"from": before, "to": after, "slot": slot, "spec": slots[slot].model_dump(mode="json"),
                 "family": why.get("family")})
    return {}


# -- regenerate_prompts ------------------------------------------------------------------------

def _used_prompts(ctx: RunContext, run_id: str) -> list[Prompt]:
    return [ctx.prompt(pid) for pid in ctx.store.used_prompt_ids(run_id)]


def _never_train_on(ctx: RunContext) -> list[str]:
    """Texts no new training prompt may be: the held-out prompts and every invariant's own probes."""
    probes = [p for s in ctx.probe_sets().values() if s.source != "heldout" for p in s.prompts]
    return [p.text for p in ctx.taskset.heldout] + probes


def _known_texts(ctx: RunContext, run_id: str) -> list[str]:
    """Everything a new prompt must differ from: used prompts, the pool, the run's own prompts."""
    texts = {p.text for p in _used_prompts(ctx, run_id)}
    texts |= {p.text for p in ctx.train_pool.train}
    texts |= {p.text for p in ctx.store.run_prompts(run_id)}
    return sorted(texts)


def regenerate_prompts(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    if _done(ctx, state):
        return {}
    run_id, round_no = state["run_id"], state["round"]
    cfg = ctx.config.prompts.regenerate
    rng = random.Random(f"tether-regenerate/{ctx.config.seed}/{round_no}")
    # Few-shot examples from prompts with a verifier (the task set, the curriculum): self-written
    # ones would compound the writer's own mistakes.
    seeds = [p for p in _used_prompts(ctx, run_id) if not p.meta.get("unverified")] or list(ctx.train_pool.train)
    tasks = writing_tasks(seeds, cfg.candidates, cfg.shots, rng)
    spec = SamplingSpec(n=1, max_new_tokens=WRITER_MAX_NEW_TOKENS, temperature=cfg.temperature, top_p=0.95,
                        do_sample=True, seed=ctx.config.seed * 1000 + round_no)
    with ctx.timed("regenerate"):
        written = _write(ctx, [writer_prompt(t.examples) for t in tasks], spec)
        parsed = [(t, parse_written(text)) for t, text in zip(tasks, written, strict=True)]
        candidates = {text: t for t, text in parsed if text is not None}
        selection = select_new(list(candidates), _known_texts(ctx, run_id), _never_train_on(ctx), cfg.count,
                               cfg.max_similarity)
    rows = [
        RunPrompt(run_id=run_id, id=prompt_id(candidates[text].family, text), round=round_no, source="regenerated",
                  text=text, family=candidates[text].family,
                  meta={"source": "regenerated", "unverified": True, "examples": list(candidates[text].examples)})
        for text in selection.kept
    ]
    with ctx.store.transaction():
        ctx.store.add_run_prompts(rows)
        _finish(ctx, state, "prompts_regenerated", "prompts_regenerated",
                f"wrote {len(written)} prompt(s), {len(candidates)} parseable and distinct, kept {len(rows)} new "
                f"diverse one(s); they join the next rounds (at most prompts.new_share="
                f"{ctx.config.prompts.new_share:.0%} of a round)",
                {"written": len(written), "parseable": len(candidates), "kept": len(rows),
                 "dropped": selection.dropped, "writer": cfg.writer_model or "policy",
                 "prompts": [r.id for r in rows]})
    return {}


def _write(ctx: RunContext, prompts: list[str], spec: SamplingSpec) -> list[str]:
    """Sample the writer: the policy with its active adapter, or a separate configured model."""
    writer_model = ctx.config.prompts.regenerate.writer_model
    if writer_model is None:
        run = ctx.store.get_run(ctx.run_id)
        assert run is not None
        outputs = ctx.backend.generate(prompts, ctx.adapter(run.active_checkpoint), spec)
    else:
        gen = ctx.config.generation
        backend = make_backend(gen.backend, writer_model, device=ctx.config.model.device,
                               dtype=ctx.config.model.dtype, batch_size=gen.batch_size, progress=ctx.progress)
        try:
            outputs = backend.generate(prompts, None, spec)
        finally:
            backend.close()
    return [o.text for o in sorted(outputs, key=lambda o: o.prompt_index)]


# -- add_adversarial ---------------------------------------------------------------------------

def collect_failures(ctx: RunContext, round_no: int) -> list[Failure]:
    """Where the active policy broke a principle or scored low: training prompts of the last
    `lookback` rounds (mean judge score, harmful compliance, abuse), and training prompts that share
    a family and topic with a held-out prompt it failed the verifier on. A held-out prompt itself is
    never returned: training on it would leak the evaluation."""
    cfg = ctx.config.prompts.adversarial
    defs = ctx.constitution.definitions
    found: dict[str, Failure] = {}

    def add(prompt: Prompt, reason: str, score: float) -> None:
        if prompt.id not in found or (found[prompt.id].score or 0.0) > score:
            found[prompt.id] = Failure(prompt, reason, defs.is_harmful(prompt.text), score)

    by_prompt: dict[str, list[tuple[float | None, str]]] = defaultdict(list)
    for rnd in range(max(1, round_no - cfg.lookback + 1), round_no + 1):
        judged = {j.sample_id: j for j in ctx.store.judgments(ctx.run_id, rnd)}
        for s in ctx.store.samples(ctx.run_id, rnd, split="train"):
            j = judged.get(s.id)
            by_prompt[s.prompt_id].append((j.score if j is not None and j.valid else None, s.response))
    for pid, rows in by_prompt.items():
        prompt = ctx.prompt(pid)
        scores = [sc for sc, _ in rows if sc is not None]
        mean = statistics.fmean(scores) if scores else None
        if mean is not None and mean < cfg.failure_score:
            add(prompt, f"mean judge score {mean:.2f} < {cfg.failure_score}", mean)
        complied = sum(not defs.is_refusal(r) for _, r in rows)
        if defs.is_harmful(prompt.text) and complied:
            add(prompt, f"complied with a harmful request in {complied} of {len(rows)} samples",
                1 - complied / len(rows))
        abusive = sum(defs.is_abusive(r) for _, r in rows)
        if abusive:
            add(prompt, f"abusive reply in {abusive} of {len(rows)} samples", 1 - abusive / len(rows))
    for prompt, reason, score in _heldout_failures(ctx, cfg.failure_score):
        add(prompt, reason, score)
    return sorted(found.values(), key=lambda f: (f.score if f.score is not None else 1.0, f.prompt.id))


def _heldout_failures(ctx: RunContext, threshold: float) -> list[tuple[Prompt, str, float]]:
    run = ctx.store.get_run(ctx.run_id)
    assert run is not None
    latest: dict[str, str] = {}
    for s in ctx.store.samples(ctx.run_id, None, split="heldout", checkpoint_id=run.active_checkpoint):
        latest[s.prompt_id] = s.response
    pool_by_topic: dict[tuple[str, str], list[Prompt]] = defaultdict(list)
    for p in ctx.train_pool.train:
        pool_by_topic[(p.family, str(p.meta.get("topic", "")))].append(p)
    out: list[tuple[Prompt, str, float]] = []
    for pid, response in sorted(latest.items()):
        held = ctx.taskset.get(pid)
        score = ctx.oracle(held, response)
        if score is None or score >= threshold:
            continue
        topic = str(held.meta.get("topic", ""))
        for p in pool_by_topic.get((held.family, topic), [])[:2]:
            out.append((p, f"held-out verifier {score:.2f} < {threshold} on a {held.family}/{topic} prompt", score))
    return out


def count_failures(ctx: RunContext, round_no: int) -> int:
    if "add_adversarial" not in ctx.config.controller.interventions:
        return 0
    return len(collect_failures(ctx, round_no))


def add_adversarial(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    if _done(ctx, state):
        return {}
    run_id, round_no = state["run_id"], state["round"]
    cfg = ctx.config.prompts.adversarial
    failures = collect_failures(ctx, round_no)
    earlier = sum(r.action == "add_adversarial" for r in ctx.store.rounds(run_id) if r.round < round_no)
    level = min(MAX_LEVEL, earlier + 1)
    exclude = set(_known_texts(ctx, run_id)) | set(_never_train_on(ctx))
    made = curriculum(failures, cfg.count, level, ctx.config.seed * 1000 + round_no, exclude)
    rows = [RunPrompt(run_id=run_id, id=p.id, round=round_no, source="adversarial", text=p.text, family=p.family,
                      meta=dict(p.meta)) for p in made]
    with ctx.store.transaction():
        ctx.store.add_run_prompts(rows)
        _finish(ctx, state, "curriculum_added", "curriculum_added",
                f"level-{level} adversarial curriculum: {len(rows)} prompt(s) mutated from {len(failures)} recorded "
                "failure(s); they join the next rounds",
                {"level": level, "prompts": [r.id for r in rows],
                 "failures": [{"prompt": f.prompt.id, "reason": f.reason, "harmful": f.harmful} for f in failures]})
    return {}


# -- propose_amendment -------------------------------------------------------------------------

def draft_amendment(ctx: RunContext) -> tuple[str, str] | None:
    """(amended constitution text, what it changes) the agent would propose now, or None: one of
    this run's proposals is still pending, the draft was already proposed, or nothing is left to draft."""
    if "propose_amendment" not in ctx.config.controller.interventions:
        return None
    mine = [a for a in ctx.store.approvals(run_id=ctx.run_id) if a.kind == "constitution"]
    if any(a.status == "pending" for a in mine):
        return None
    version, current = amendments.in_force(ctx.store)
    draft = amendments.draft_over_refusal(current, version.content)
    if draft is None:
        return None
    sha = hashlib.sha256(draft[0].encode()).hexdigest()
    return None if any(a.subject_sha256 == sha for a in mine) else draft


def propose_amendment(state: RoundState, runtime: Runtime[RunContext]) -> Update:
    ctx = runtime.context
    if _done(ctx, state):
        return {}
    draft = draft_amendment(ctx)
    if draft is None:
        _finish(ctx, state, "amendment_not_drafted", "amendment_not_drafted", "nothing left to draft", {})
        return {}
    text, changes = draft
    try:
        with ctx.store.transaction():
            approval = amendments.propose(ctx.store, text, "agent draft", by=f"agent:{state['run_id']}",
                                          run_id=state["run_id"], required=ctx.config.approvals.required)
            _finish(ctx, state, "amendment_proposed", "amendment_proposed",
                    f"proposed {changes} as approval {approval.id}; nothing changes until a human runs "
                    f"`tether approve {approval.id} --by NAME`, then the run uses it from its next round",
                    {"approval": approval.id, "changes": changes})
    except GateError as err:  # fail closed: a draft the gate refuses is logged, never applied
        _finish(ctx, state, "amendment_refused", "amendment_refused", f"the gate refused the draft: {err}", {})
    return {}
