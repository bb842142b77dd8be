"""Failure worlds: variants of the tiny world, each setting up ONE failure its oracle can measure, for the
benchmark that runs every system on them (benchmarks/bench_suite.py). One world a file, registered in
`tools.worlds.WORLDS` by importing it; its `Scenario` (the judge, pools or constitution a user would
configure for it, the same for every system) is in `SCENARIOS` under the world's name.

    length_paying_judge         a judge that pays for length                     -> switch_judge
    blind_family                a judge blind to one verifiable family           -> switch_judge (blind spot)
    invisible_drift             drift the judge cannot see                       -> switch_pairs (regression)
    prompt_saturation           a small prompt pool, used up in 2 rounds         -> regenerate_prompts
    distribution_collapse       responses converge while the judge is satisfied  -> switch_judge / switch_pairs
    over_cautious_constitution  over-refusal from an over-cautious constitution  -> propose_amendment
    unreliable_judge            a judge that degrades from round 4               -> switch_judge

They live in the tiny world's folder because they are built from its families, verifiers, corpus and model
(tests/test_world_boundary.py: nothing outside this folder imports them). A world never tells the controller
which failure it is: the world object is an ordinary `World`; the scenario is configuration.
"""

from tools.worlds.tiny.failures import blind_family as _blind_family  # noqa: F401  (each import registers a world)
from tools.worlds.tiny.failures import distribution_collapse as _distribution_collapse  # noqa: F401
from tools.worlds.tiny.failures import invisible_drift as _invisible_drift  # noqa: F401
from tools.worlds.tiny.failures import length_paying_judge as _length_paying_judge  # noqa: F401
from tools.worlds.tiny.failures import over_cautious_constitution as _over_cautious_constitution  # noqa: F401
from tools.worlds.tiny.failures import prompt_saturation as _prompt_saturation  # noqa: F401
from tools.worlds.tiny.failures import unreliable_judge as _unreliable_judge  # noqa: F401
from tools.worlds.tiny.failures._shared import SCENARIOS, FailureWorld, Scenario, Variant

__all__ = ["SCENARIOS", "FailureWorld", "Scenario", "Variant"]
