"""The monitor plug-in protocol and registry.

A monitor reads what one round produced and returns float values keyed by `MonitorKey`
(tether_types.py), and declares every key it may return in its `keys` class attribute.
Monitors return values only; the graph stores them and the meta-controller decides from them. A
monitor whose input is absent from the observation (an optional field left as None) omits its keys
rather than inventing a value, so "not measured" and "measured as 0" stay distinguishable in the
decision log. A monitor that raises does not fail the round: `run_monitors`
(tools/monitors/readings.py) records each key it declared as "could not check", with the reason.

A monitor that measures per prompt family also declares `family_keys` and implements `by_family`
(`FamilyMonitor`): its per-family values are stored under the round's `_by_family` entry, and its
round-level keys carry the worst family's value, so a failure shows as could-not-check on those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, runtime_checkable

from tether_types import FamilyKey, MonitorKey
from tools.registry import Registry

PairwiseWinner = Literal["a", "b", "tie"]


@dataclass(frozen=True)
class RoundObservation:
    prompts: Sequence[str]
    responses: Sequence[Sequence[str]]  # K responses per prompt, aligned with `prompts`
    lengths: Sequence[Sequence[int]]  # generated tokens per response
    scores: Sequence[Sequence[float | None]]  # judge score per response; None = invalid judgment
    pair_margins: Sequence[float]
    candidate_pairs: int  # prompts that could have given a pair (>= 2 valid judgments)
    # Optional inputs: None means "not available this round" and the monitors that need them stay silent.
    oracle_scores: Sequence[Sequence[float | None]] | None = None  # oracle per response, shaped like `responses`
    base_length_mean: float | None = None  # mean generated tokens of the base model (same unit as `lengths`)
    # One (order AB, order BA) verdict per pairwise comparison, both already mapped back to the original
    # labelling (so a position-consistent judge gives equal entries); None = invalid verdict.
    pairwise: Sequence[tuple[PairwiseWinner | None, PairwiseWinner | None]] | None = None
    # Judge name -> score per response, flattened row-major from `responses`; None = invalid.
    pool_scores: Mapping[str, Sequence[float | None]] | None = None
    heldout: Mapping[str, float] | None = None  # held-out (validation) values, passed through as heldout_<key>
    prompt_reused: Sequence[bool] | None = None  # per prompt: used in an earlier round of the run
    benign: Sequence[bool] | None = None  # per prompt: the constitution does not deem it harmful
    refusals: Sequence[Sequence[bool]] | None = None  # per response: a refusal by the constitution's definitions
    families: Sequence[str] | None = None  # per prompt: its family (the task set's, or its parent's for own prompts)
    pair_families: Sequence[str] | None = None  # per kept pair, aligned with `pair_margins`: its prompt's family
    # Earlier rounds of the run judged by this round's judge and built by its pair strategy (margins of another
    # judge or strategy are on another scale), oldest first: each round's kept pairs as (family, margin).
    earlier_pairs: Sequence[Sequence[tuple[str, float]]] | None = None
    # Per response, shaped like `responses`: mean log-prob per token under the base model (None: an empty response).
    base_logps: Sequence[Sequence[float | None]] | None = None


class Monitor(Protocol):
    # every key `compute` may return. Optional, so not declared here (a runtime protocol check would then
    # refuse a monitor without it): `theme`, the figure of `tether report` its keys are drawn in (diversity,
    # judge, length, progress or prompts; agent/review/report.py draws a monitor without one under "other").
    keys: ClassVar[tuple[MonitorKey, ...]]

    def compute(self, obs: RoundObservation) -> Mapping[MonitorKey, float]: ...


@runtime_checkable
class FamilyMonitor(Protocol):
    """A monitor that also measures per prompt family."""

    keys: ClassVar[tuple[MonitorKey, ...]]
    family_keys: ClassVar[tuple[FamilyKey, ...]]  # every key `by_family` may return for a family

    def compute(self, obs: RoundObservation) -> Mapping[MonitorKey, float]: ...

    def by_family(self, obs: RoundObservation) -> Mapping[str, Mapping[FamilyKey, float]]: ...


MONITORS: Registry[Monitor] = Registry("monitor")
