"""What the interventions that write training prompts (regenerate_prompts, add_adversarial) share: the
run's used prompts, and the texts a new prompt must differ from or may never be."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.run.context import RunContext
    from tether_types import Prompt


def used_prompts(ctx: RunContext, run_id: str) -> list[Prompt]:
    return [ctx.prompt(pid) for pid in ctx.store.used_prompt_ids(run_id)]


def never_train_on(ctx: RunContext) -> list[str]:
    """Texts no new training prompt may be: the held-out prompts and every invariant's own probes."""
    probes = [p for s in ctx.probe_sets().values() if s.source != "heldout" for p in s.prompts]
    return [p.text for p in ctx.taskset.heldout] + probes


def known_texts(ctx: RunContext, run_id: str) -> list[str]:
    """Everything a new prompt must differ from: used prompts, the pool, the run's own prompts."""
    texts = {p.text for p in used_prompts(ctx, run_id)}
    texts |= {p.text for p in ctx.train_pool.train}
    texts |= {p.text for p in ctx.store.run_prompts(run_id)}
    return sorted(texts)
