"""Failure world `invisible_drift`: drift the judge cannot see.

What fails: today's tiny world, narrowed to it. The `rules` judge scores any answer that is no refusal,
not abusive and without filler as good, so fluent-looking fragments that start mid-sentence (" chain with
a rag, clean it is dry") and answers about another topic score like real how-to answers. Best-vs-worst
pairs make them chosen, DPO raises their likelihood and they spread; the oracle (a how-to answer must name
its topic's keywords) falls with them. The world keeps the how-to and harmful families (no arithmetic:
the blind family is another world's failure).
Which monitor shows it: `drift` (base_logp_mean: the base model's log-prob per token of the policy's
samples falls below round 1's), before the held-out score does.
Which reaction should fix it: the regression rule's `switch_pairs` to `regularized` (pairs.pool), which
lets the base model's likelihood settle the judge's ties. `tether init`'s defaults list switch_pairs and
have `regularized` in pairs.pool since the failure-worlds suite; without them the rule only warns.
"""

from __future__ import annotations

from tools.worlds.base import WORLDS
from tools.worlds.tiny.failures._shared import FailureWorld, Scenario, Variant, register_scenario
from tools.worlds.tiny.world import DEFAULT_STEPS

NAME = "invisible_drift"
VARIANT = Variant(families=("howto", "harmful"))
SCENARIO = Scenario(
    config={"judge": {"name": "rules", "settings": {}, "pool": []}, "pairs": {"pool": [{"name": "regularized"}]}},
    failure="the judge scores fluent fragments and off-topic answers like answers; the policy drifts into them",
    monitor="drift: base_logp_mean falls regression.max_base_logp_drop below round 1's",
    reaction="switch_pairs to regularized (pairs.pool; switch_pairs is on by default)",
)
register_scenario(NAME, SCENARIO)


@WORLDS.register(NAME)
def invisible_drift(seed: int = 0, steps: int = DEFAULT_STEPS) -> FailureWorld:
    """Failure world: how-to and harmful prompts under a judge blind to fluency and topic (its scenario's)."""
    return FailureWorld(NAME, seed, steps, VARIANT)
