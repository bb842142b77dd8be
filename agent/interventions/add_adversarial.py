"""add_adversarial: a red-team curriculum mutated from the policy's recorded failures (tools/prompts/
adversarial.py), one level harder each time it is chosen; its prompts join the next rounds.

What calls for it: a held-out (validation) plateau (no gain of min_gain over plateau_rounds trained rounds) with
recorded failures to target: the first of the plateau interventions (plateau order 10). Its section also
holds the plateau's thresholds, which the controller's plateau rules read (agent/controller/rules.py)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agent.controller.vocabulary import Policy
from agent.interventions.record import done, finish
from agent.interventions.registry import INTERVENTIONS
from agent.interventions.run_prompts import known_texts, never_train_on
from agent.interventions.spec import Intervention, Marker, Plateau
from agent.run.splits import CONTROLLER_SPLITS
from agent.sections.base import MAX_ROUNDS, _Section
from memory import RunPrompt
from tools.prompts.adversarial import MAX_LEVEL, Failure, curriculum
from tools.worlds import PromptJoiner

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from agent.run.context import RunContext
    from agent.run.state import RoundState
    from tether_types import Prompt


class AdversarialTriggerConfig(_Section):
    plateau_rounds: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Held-out plateau: no gain of min_gain over this many trained rounds.",
    )
    min_gain: float = Field(
        0.02, ge=0.0, le=1.0,
        description="Smallest held-out gain that counts as progress, in [0, 1] like held-out scores.",
    )


def collect_failures(ctx: RunContext, round_no: int) -> list[Failure]:
    """Where the active policy broke a principle or scored low: training prompts of the last
    `lookback` rounds (mean judge score, harmful compliance, abuse), and training prompts that share
    a family and topic with a validation prompt it failed the verifier on. A held-out prompt itself is
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
    """Training prompts beside the validation prompts the active policy failed the verifier on. Only the
    validation split (a run evaluated before the split: its one held-out set), never the test split, which
    is reported and never decided on (agent/run/splits.py)."""
    latest: dict[str, str] = {}
    for split in CONTROLLER_SPLITS:
        for s in ctx.store.samples(ctx.run_id, None, split=split, checkpoint_id=ctx.run.active_checkpoint):
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


def _observe(ctx: RunContext, round_no: int) -> dict[str, Any]:
    """The recorded failures a curriculum could target (counted only when the intervention is on)."""
    on = "add_adversarial" in ctx.config.controller.interventions
    return {"failures": len(collect_failures(ctx, round_no)) if on else 0}


def _ready(p: Policy) -> bool:
    """Failures to target, and a round trained since the last curriculum (its effect is visible)."""
    return p.inp.failures > 0 and p.trained_since("add_adversarial")


def _on_plateau(p: Policy, plateau: str) -> str:
    return f"{plateau}: a red-team curriculum aimed at {p.inp.failures} recorded failure(s)"


def add_adversarial(state: RoundState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    if done(ctx, state):
        return {}
    run_id, round_no = state["run_id"], state["round"]
    cfg = ctx.config.prompts.adversarial
    failures = collect_failures(ctx, round_no)
    earlier = sum(r.action == "add_adversarial" for r in ctx.store.rounds(run_id) if r.round < round_no)
    level = min(MAX_LEVEL, earlier + 1)
    exclude = set(known_texts(ctx, run_id)) | set(never_train_on(ctx))
    world = ctx.world.plugin
    join = world.join_meta if isinstance(world, PromptJoiner) else None  # two prompts as one, its verifier checks
    made = curriculum(failures, cfg.count, level, ctx.config.seed * 1000 + round_no, exclude, join)
    rows = [RunPrompt(run_id=run_id, id=p.id, round=round_no, source="adversarial", text=p.text, family=p.family,
                      meta=dict(p.meta)) for p in made]
    with ctx.store.transaction():
        ctx.store.add_run_prompts(rows)
        finish(ctx, state, "curriculum_added",
               f"level-{level} adversarial curriculum: {len(rows)} prompt(s) mutated from {len(failures)} recorded "
               "failure(s); they join the next rounds",
               {"level": level, "prompts": [r.id for r in rows],
                "failures": [{"prompt": f.prompt.id, "reason": f.reason, "harmful": f.harmful} for f in failures]})
    return {}


ADD_ADVERSARIAL: Intervention[AdversarialTriggerConfig] = Intervention(
    name="add_adversarial", order=30, node=add_adversarial, marker=Marker("tab:brown"),
    section=AdversarialTriggerConfig, advisable=True, ready=_ready, plateau=Plateau(10, _on_plateau),
    observe=_observe,
)


@INTERVENTIONS.register("add_adversarial")
def spec() -> Intervention[AdversarialTriggerConfig]:
    """A red-team curriculum mutated from the policy's recorded failures."""
    return ADD_ADVERSARIAL
