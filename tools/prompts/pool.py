"""The `pool` generator: draws training prompts from the task set's train split.

Each round takes the next slice of one seeded permutation, so consecutive rounds see different
prompts until the pool is used up, then it wraps around.
"""

from __future__ import annotations

import random

from tether_types import Prompt
from tools.prompts.base import PROMPT_GENERATORS
from tools.worlds.base import TaskSet


class PoolGenerator:
    def draw(self, taskset: TaskSet, round_no: int, n: int, seed: int) -> list[Prompt]:
        pool = list(taskset.train)
        if not pool:
            raise ValueError("the task set has no training prompts")
        random.Random(seed).shuffle(pool)
        start = (round_no - 1) * n
        return [pool[(start + i) % len(pool)] for i in range(min(n, len(pool)))]


@PROMPT_GENERATORS.register("pool")
def pool() -> PoolGenerator:
    """Slices of a seeded permutation of the train split; no settings."""
    return PoolGenerator()
