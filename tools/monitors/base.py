"""The monitor plug-in protocol and registry.

A monitor reads what one round produced and returns named values. Monitors return values only;
the graph stores them and the meta-controller decides from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tools.registry import Registry


@dataclass(frozen=True)
class RoundObservation:
    prompts: Sequence[str]
    responses: Sequence[Sequence[str]]  # K responses per prompt, aligned with `prompts`
    lengths: Sequence[Sequence[int]]  # generated tokens per response
    scores: Sequence[Sequence[float | None]]  # judge score per response; None = invalid judgment
    pair_margins: Sequence[float]
    candidate_pairs: int  # prompts that could have given a pair (>= 2 valid judgments)


class Monitor(Protocol):
    def compute(self, obs: RoundObservation) -> Mapping[str, float]: ...


MONITORS: Registry[Monitor] = Registry("monitor")
