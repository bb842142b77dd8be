"""regenerate_prompts: self-prompting. The policy (or prompts.regenerate.writer_model) writes new prompts
from few-shot examples; they are deduplicated and diversity-filtered and join the next rounds.

What calls for it: the prompt pool is saturated (proposed in the soft rule, order 30: most of a round's
prompts were used before, they are bunched together, or the pair margin fell from its peak while they
were reused); a held-out plateau once the adversarial curriculum was tried or has nothing to target (its
plateau order 20, after add_adversarial); and a round with too few pairs (agent/controller/rules.py)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agent.controller.vocabulary import Policy, Proposal, Proposer
from agent.interventions.record import done, finish
from agent.interventions.registry import INTERVENTIONS
from agent.interventions.run_prompts import known_texts, never_train_on, used_prompts
from agent.interventions.spec import Intervention, Marker, Plateau
from agent.sections.base import MAX_ROUNDS, _Section
from memory import RunPrompt
from tether_types import MonitorKey as K
from tether_types import SamplingSpec, prompt_id
from tools.prompts.writer import parse_written, writer_prompt, writing_tasks

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from agent.run.context import RunContext
    from agent.run.state import RoundState


class RegenerateTriggerConfig(_Section):
    max_prompt_reuse: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Prompt saturation: more than this share of a round's prompts was used before.",
    )
    min_prompt_dispersion: float = Field(
        0.2, ge=0.0, le=2.0,
        description="Prompt saturation: the round's prompts are less spread out than this (mean "
        "pairwise MiniLM cosine distance).",
    )
    margin_drop: float = Field(
        0.5, gt=0.0, le=1.0,
        description="Prompt saturation: the pair margin fell by this share of its peak over `window` "
        "rounds while more than half of the round's prompts were reused.",
    )
    window: int = Field(3, ge=2, le=MAX_ROUNDS, description="Rounds the margin trend is read over.")


def _margin_drop(p: Policy, window: int) -> float | None:
    """Fall of the pair margin from its peak over the last `window` rounds, as a share of the peak."""
    margins = [r.monitors.get(K.MARGIN_MEAN) for r in (*p.inp.past, p.now)][-window:]
    values = [m for m in margins if m is not None]
    if len(values) < window or max(values) <= 0:
        return None
    return (max(values) - values[-1]) / max(values)


def _saturated(p: Policy) -> Proposal | None:
    rt = REGENERATE_PROMPTS.settings(p.cfg)
    reuse = p.check_monitor(K.PROMPT_REUSE, ">", rt.max_prompt_reuse, "regenerate_prompts.max_prompt_reuse")
    spread = p.check_monitor(K.PROMPT_EMBEDDING_DISPERSION, "<", rt.min_prompt_dispersion,
                             "regenerate_prompts.min_prompt_dispersion")
    drop = p.check("margin_drop", _margin_drop(p, rt.window), ">=", rt.margin_drop, "regenerate_prompts.margin_drop",
                   missing=f"needs {K.MARGIN_MEAN.value} on the last regenerate_prompts.window={rt.window} rounds "
                           "with a positive peak")
    if not (reuse.fired or spread.fired or (drop.fired and (p.monitor(K.PROMPT_REUSE) or 0.0) > 0.5)):
        return None
    why = "; ".join(c.text() for c in (reuse, spread, drop) if c.fired)
    return "regenerate_prompts", f"the prompt pool is saturated ({why}): writing new prompts", {}


def _on_plateau(p: Policy, plateau: str) -> str:
    return f"{plateau} and the adversarial curriculum was tried or has no failures to target: writing fresh prompts"


def _write(ctx: RunContext, prompts: list[str], spec: SamplingSpec) -> list[str]:
    """Sample the writer: the policy with its active adapter, or a separate configured model."""
    writer_model = ctx.config.prompts.regenerate.writer_model
    if writer_model is None:
        outputs = ctx.backend.generate(prompts, ctx.adapter(ctx.run.active_checkpoint), spec)
    else:
        from policies.generation import make_backend  # loads torch: only when a writer model is configured

        gen = ctx.config.generation
        # A writer model is local: a completions server serves the policy, not it.
        backend = make_backend("transformers" if gen.backend == "server" else gen.backend,
                               writer_model, device=ctx.config.model.device,
                               dtype=ctx.config.model.dtype, batch_size=gen.batch_size, progress=ctx.progress)
        try:
            outputs = backend.generate(prompts, None, spec)
        finally:
            backend.close()
    return [o.text for o in sorted(outputs, key=lambda o: o.prompt_index)]


def regenerate_prompts(state: RoundState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    if done(ctx, state):
        return {}
    run_id, round_no = state["run_id"], state["round"]
    cfg = ctx.config.prompts.regenerate
    rng = random.Random(f"tether-regenerate/{ctx.config.seed}/{round_no}")
    # Few-shot examples from prompts with a verifier (the task set, the curriculum): self-written
    # ones would compound the writer's own mistakes.
    seeds = [p for p in used_prompts(ctx, run_id) if not p.meta.get("unverified")] or list(ctx.train_pool.train)
    tasks = writing_tasks(seeds, cfg.candidates, cfg.shots, rng)
    spec = SamplingSpec(n=1, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=0.95,
                        do_sample=True, seed=ctx.config.seed * 1000 + round_no)
    # Imported here: dedup loads numpy, and the config (through this registry) must not, for `--help`.
    from tools.prompts.dedup import select_new

    with ctx.timed("regenerate"):
        written = _write(ctx, [writer_prompt(t.examples) for t in tasks], spec)
        parsed = [(t, parse_written(text)) for t, text in zip(tasks, written, strict=True)]
        candidates = {text: t for t, text in parsed if text is not None}
        selection = select_new(list(candidates), known_texts(ctx, run_id), never_train_on(ctx), cfg.count,
                               cfg.max_similarity)
    rows = [
        RunPrompt(run_id=run_id, id=prompt_id(candidates[text].family, text), round=round_no, source="regenerated",
                  text=text, family=candidates[text].family,
                  meta={"source": "regenerated", "unverified": True, "examples": list(candidates[text].examples)})
        for text in selection.kept
    ]
    with ctx.store.transaction():
        ctx.store.add_run_prompts(rows)
        finish(ctx, state, "prompts_regenerated",
               f"wrote {len(written)} prompt(s), {len(candidates)} parseable and distinct, kept {len(rows)} new "
               f"diverse one(s); they join the next rounds (at most prompts.new_share="
               f"{ctx.config.prompts.new_share:.0%} of a round)",
               {"written": len(written), "parseable": len(candidates), "kept": len(rows),
                "dropped": selection.dropped, "writer": cfg.writer_model or "policy",
                "prompts": [r.id for r in rows]})
    return {}


REGENERATE_PROMPTS: Intervention[RegenerateTriggerConfig] = Intervention(
    name="regenerate_prompts", order=20, node=regenerate_prompts, marker=Marker("tab:green"),
    section=RegenerateTriggerConfig, proposers=(Proposer(30, _saturated),), advisable=True,
    plateau=Plateau(20, _on_plateau),
)


@INTERVENTIONS.register("regenerate_prompts")
def spec() -> Intervention[RegenerateTriggerConfig]:
    """Self-prompting: the policy writes new prompts from few-shot examples, deduplicated and diversity-filtered."""
    return REGENERATE_PROMPTS
