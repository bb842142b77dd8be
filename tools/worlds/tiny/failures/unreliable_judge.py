"""Failure world `unreliable_judge`: a judge that turns unreliable mid-run.

What fails: the configured judge (`degrading`, a test fixture of tools/judges/degrading.py, wrapping
`calculator`) is sound until round FROM_ROUND; from then on 10 % of its verdicts are invalid, half of the
rest are random scores, and half of its pairwise verdicts follow the position. A system that keeps it
trains on pairs that are half noise and its held-out score stops rising or falls. The world keeps the
arithmetic and harmful families, on which the wrapped calculator is sound.
Which monitor shows it: `judge_reliability` (position_consistency drops below
switch_judge.min_position_consistency from round FROM_ROUND) and `scores` (invalid_share rises).
Which reaction should fix it: `switch_judge` to the next judge of judge.pool (`calculator` itself).
"""

from __future__ import annotations

from tools.worlds.base import WORLDS
from tools.worlds.tiny.failures._shared import FailureWorld, Scenario, Variant, register_scenario
from tools.worlds.tiny.world import DEFAULT_STEPS

NAME = "unreliable_judge"
FROM_ROUND = 4
VARIANT = Variant(families=("arithmetic", "harmful"))
SCENARIO = Scenario(
    config={"judge": {"name": "degrading",
                      "settings": {"judge": {"name": "calculator"}, "from_round": FROM_ROUND, "invalid_share": 0.1,
                                   "noise_share": 0.5, "flip_share": 0.5},
                      "pool": [{"name": "calculator"}]}},
    failure=f"the judge degrades from round {FROM_ROUND}: invalid, random and position-following verdicts",
    monitor="judge_reliability: position_consistency below switch_judge.min_position_consistency",
    reaction="switch_judge to calculator (judge.pool)",
)
register_scenario(NAME, SCENARIO)


@WORLDS.register(NAME)
def unreliable_judge(seed: int = 0, steps: int = DEFAULT_STEPS) -> FailureWorld:
    """Failure world: arithmetic and harmful prompts under a judge that degrades from round 4 (its scenario's)."""
    return FailureWorld(NAME, seed, steps, VARIANT)
