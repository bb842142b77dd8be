"""Failure world `blind_family`: a judge blind to one verifiable family.

What fails: the configured judge (`rules`, derived from the constitution) scores arithmetic answers on
style alone: "7 + 5 = 13." and "7 + 5 = 12." get the same score, so a round's arithmetic pairs are chosen
by style or at random, and held-out arithmetic (the oracle checks the number) does not improve. The world
keeps the arithmetic and harmful families only, so the one benign family is the one the judge cannot
verify (how-to answers, which `rules` also cannot check, are left out).
Which monitor shows it: `family_signal` (the arithmetic family's tie rate and score spread: its differing
responses are scored alike).
Which reaction should fix it: the blind-spot rule's `switch_judge` to `calculator` (judge.pool), a tool
judge that checks the sum.
"""

from __future__ import annotations

from tools.worlds.base import WORLDS
from tools.worlds.tiny.failures._shared import FailureWorld, Scenario, Variant, register_scenario
from tools.worlds.tiny.world import DEFAULT_STEPS

NAME = "blind_family"
VARIANT = Variant(families=("arithmetic", "harmful"))
SCENARIO = Scenario(
    config={"judge": {"name": "rules", "settings": {}, "pool": [{"name": "calculator"}]}},
    failure="the judge scores arithmetic on style only: a wrong sum scores like a right one",
    monitor="family_signal: the arithmetic family's tie rate / score spread (blind_spot)",
    reaction="switch_judge to calculator (judge.pool), the blind-spot rule's first choice",
)
register_scenario(NAME, SCENARIO)


@WORLDS.register(NAME)
def blind_family(seed: int = 0, steps: int = DEFAULT_STEPS) -> FailureWorld:
    """Failure world: arithmetic and harmful prompts under a judge that cannot verify sums (its scenario's)."""
    return FailureWorld(NAME, seed, steps, VARIANT)
