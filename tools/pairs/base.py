"""The pair-strategy plug-in protocol and registry.

A pair strategy decides, per prompt, which of the judged responses become a DPO preference pair
(chosen, rejected), which reference the pairs train against, and whether the chosen responses'
negative log-likelihood joins the DPO loss (`chosen_nll`, every strategy's setting). `pairs.strategy` in the config
names the first; `pairs.pool` lists those the controller's `switch_pairs` may move to, in order.
A strategy sees judge scores only: never the world's oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from tools.registry import PluginSettingsError, Registry

Reference = Literal["base", "parent"]
"""The DPO reference: `base` = the base model (the adapter disabled); `parent` = the adapter the
candidate warm-starts from, i.e. the last approved checkpoint (the base model in the first round)."""


@dataclass(frozen=True)
class Candidate:
    """A validly judged response: a sample of the store with its judge score."""

    sample_id: int
    response: str
    score: float
    index: int = 0  # sample_index within its prompt: among equal scores the earlier is preferred as chosen
    base_logp: float | None = None  # mean log-prob per token under the base model (needs_base_logp only)


@dataclass(frozen=True)
class PromptGroup:
    prompt_id: str
    prompt: str
    family: str
    candidates: tuple[Candidate, ...]  # this round's policy samples of the prompt with a valid judgment
    anchors: tuple[Candidate, ...] = ()  # the initial model's samples of the prompt (needs_anchors only)


@dataclass(frozen=True)
class Choice:
    chosen: Candidate
    rejected: Candidate
    kept_by: float | None = None  # the margin the strategy kept the pair by, when not the judge's (regularized)

    @property
    def margin(self) -> float:
        """The pair's margin as stored and monitored: the judge's chosen-minus-rejected score, or the
        strategy's own (``kept_by``) where it ranks by more than the judge."""
        return self.kept_by if self.kept_by is not None else self.chosen.score - self.rejected.score


class PairStrategy(Protocol):
    needs_anchors: bool  # it reads PromptGroup.anchors: the base model's samples of each prompt, drawn once
    needs_base_logp: bool  # it reads Candidate.base_logp of the policy's samples
    reference: Reference  # what its pairs train against
    chosen_nll: float  # weight of the chosen responses' NLL added to the DPO loss (0 = plain DPO; see rpo)

    def select(self, group: PromptGroup, min_margin: float) -> Choice | None:
        """The prompt's pair, or None when it yields none."""
        ...


PAIR_STRATEGIES: Registry[PairStrategy] = Registry("pair strategy")


def keep(chosen: Candidate, rejected: Candidate, min_margin: float) -> Choice | None:
    """A pair, unless its margin is under `min_margin` or both texts are the same."""
    if chosen.score - rejected.score < min_margin or chosen.response.strip() == rejected.response.strip():
        return None
    return Choice(chosen, rejected)


def best(candidates: tuple[Candidate, ...] | list[Candidate]) -> Candidate:
    """The highest score; among equals the earliest sample."""
    return max(candidates, key=lambda c: (c.score, -c.index))


def worst(candidates: tuple[Candidate, ...] | list[Candidate]) -> Candidate:
    """The lowest score; among equals the latest sample."""
    return min(candidates, key=lambda c: (c.score, -c.index))


def chosen_nll_setting(name: str, weight: object) -> float:
    """The `chosen_nll` setting: a finite weight in [0, 10]."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 <= float(weight) <= 10.0:
        raise PluginSettingsError(f"pair strategy '{name}': chosen_nll must be a number in [0, 10], got {weight!r}")
    return float(weight)


def reference_setting(name: str, reference: str) -> Reference:
    if reference not in get_args(Reference):
        raise PluginSettingsError(f"pair strategy '{name}': reference must be one of "
                                  f"{', '.join(get_args(Reference))}, got {reference!r}")
    return reference  # type: ignore[return-value]
