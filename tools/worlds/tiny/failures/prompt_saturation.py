"""Failure world `prompt_saturation`: a small prompt pool, exhausted within a few rounds.

What fails: the world gives only TRAIN_PROMPTS training prompts (arithmetic and harmful, taken in turn), so
at the default prompts.per_round of 64 the pool is used up after 2 rounds and from round 3 on every prompt
is one the policy was trained on before: pairs repeat, margins shrink, and the held-out score stops rising.
The held-out prompts are the tiny world's, as many as ever. The judge (`calculator`) is sound on both
families, so the pool is the only thing that fails.
Which monitor shows it: `prompt_diversity` (prompt_reuse: the share of a round's prompts used before, above
regenerate_prompts.max_prompt_reuse from round 3), with the pair margin (`pairs`: margin_mean) falling.
Which reaction should fix it: `regenerate_prompts` (self-prompting: the policy writes new prompts from
few-shot examples, deduplicated and kept away from the held-out prompts; the calculator checks new sums).
"""

from __future__ import annotations

from tools.worlds.base import WORLDS
from tools.worlds.tiny.failures._shared import FailureWorld, Scenario, Variant, register_scenario
from tools.worlds.tiny.world import DEFAULT_STEPS

NAME = "prompt_saturation"
PER_ROUND = 64  # prompts.per_round's default
ROUNDS_OF_PROMPTS = 2  # rounds of fresh prompts the pool holds at that rate
TRAIN_PROMPTS = PER_ROUND * ROUNDS_OF_PROMPTS
VARIANT = Variant(families=("arithmetic", "harmful"), train_prompts=TRAIN_PROMPTS)
SCENARIO = Scenario(
    config={"judge": {"name": "calculator", "settings": {}, "pool": []}},
    failure=f"only {TRAIN_PROMPTS} training prompts: used up after {ROUNDS_OF_PROMPTS} rounds of {PER_ROUND}",
    monitor="prompt_diversity: prompt_reuse above regenerate_prompts.max_prompt_reuse; pairs: margin_mean falls",
    reaction="regenerate_prompts (self-prompting)",
)
register_scenario(NAME, SCENARIO)


@WORLDS.register(NAME)
def prompt_saturation(seed: int = 0, steps: int = DEFAULT_STEPS) -> FailureWorld:
    """Failure world: a pool of 128 training prompts (arithmetic, harmful), used up in 2 rounds of 64."""
    return FailureWorld(NAME, seed, steps, VARIANT)
