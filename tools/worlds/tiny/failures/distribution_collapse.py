"""Failure world `distribution_collapse`: responses converge, diversity falls, the judge is satisfied.

What fails: the configured judge (`consensus`, first in the pool) rewards a response for agreeing with the
other samples of its prompt (majority voting as the reward, with no reference). The most stereotyped
answer wins whatever it says: the tiny model's stock refusals are near-copies of each other, so they
outscore varied helpful answers on benign requests; training on those pairs concentrates the policy on
its modal answers, the judge's scores rise towards 1 while the samples converge, and the oracle falls
where the mode is wrong (a refused sum or how-to scores 0).
Which monitor shows it: `diversity` (self_bleu rises, distinct_1/2 and embedding_dispersion fall) while the
judge's mean score rises (`scores`). The collapse rule reads it (self_bleu risen above round 1's for its
patience); the blind-spot rule reads the consequences (the pair margin collapsing per family) and, as refusals
spread, the over-refusal rule.
Which reaction should fix it: `switch_pairs` to `diverse` (the scenario's pairs.pool: DivPO's pairs), else
`switch_judge` to `calculator` (judge.pool), a judge that scores the answer, not its agreement.
"""

from __future__ import annotations

from tools.worlds.base import WORLDS
from tools.worlds.tiny.failures._shared import FailureWorld, Scenario, Variant, register_scenario
from tools.worlds.tiny.world import DEFAULT_STEPS

NAME = "distribution_collapse"
VARIANT = Variant(families=("arithmetic", "howto", "harmful"))
SCENARIO = Scenario(
    config={"judge": {"name": "consensus", "settings": {}, "pool": [{"name": "calculator"}]},
            "pairs": {"pool": [{"name": "diverse"}]}},
    failure="the judge rewards agreement among samples: the policy converges on its modal (often refusing) answer",
    monitor="diversity: self_bleu up, distinct_2 down, while mean judge score rises (the collapse rule)",
    reaction="switch_pairs to diverse (pairs.pool), else switch_judge to calculator (judge.pool)",
)
register_scenario(NAME, SCENARIO)


@WORLDS.register(NAME)
def distribution_collapse(seed: int = 0, steps: int = DEFAULT_STEPS) -> FailureWorld:
    """Failure world: the tiny world's families under a judge that rewards agreement among samples."""
    return FailureWorld(NAME, seed, steps, VARIANT)
