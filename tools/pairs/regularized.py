"""`regularized`: responses ranked by judge score plus the base model's log-likelihood, KL-regularised.

The KL-regularised objective that RLHF and DPO optimise, max E[r] - beta * KL(pi || pi_ref), has the
optimal policy pi*(y) proportional to pi_ref(y) * exp(r(y) / beta) (Ziegler et al. 2019,
arXiv:1909.08593; Rafailov et al. 2023, "Direct Preference Optimization", arXiv:2305.18290). Among
sampled responses, pi* ranks them by r(y) + beta * log pi_ref(y): a judge's preference, with ties and
near-ties settled by how natural the reference finds each response. Here r is the judge's score and
log pi_ref(y) the base model's mean log-probability per token (normalised by length, as SimPO does:
Meng et al. 2024, arXiv:2405.14734, so the bonus does not pay for brevity).

It is the strategy for a judge with a blind spot the base model has not: on the tiny world the `rules`
judge scores a fluent-looking fragment (" chain with a rag, clean it is dry") like a good answer,
DPO on such chosen answers raises their likelihood, and the policy drifts into them round after round.
The base model finds them far less likely (about -2.4 against -1.0 nats per token after four rounds),
so they lose the tie. The chosen response maximises score + weight * base_logp, the rejected one
minimises it among responses the judge scores no higher; a pair is kept when that regularised margin
is at least pairs.min_margin (and stored with it). Needs the transformers generation backend, which
scores the responses under the base model with the adapter disabled.
"""

from __future__ import annotations

import math

from tools.pairs.base import (
    PAIR_STRATEGIES,
    Candidate,
    Choice,
    PromptGroup,
    Reference,
    chosen_nll_setting,
    reference_setting,
)
from tools.registry import PluginSettingsError


class Regularized:
    needs_anchors = False
    needs_base_logp = True

    def __init__(self, weight: float, reference: Reference, chosen_nll: float = 0.0) -> None:
        self.weight, self.reference, self.chosen_nll = weight, reference, chosen_nll

    def value(self, c: Candidate) -> float:
        assert c.base_logp is not None
        return c.score + self.weight * c.base_logp

    def select(self, group: PromptGroup, min_margin: float) -> Choice | None:
        cands = [c for c in group.candidates if c.base_logp is not None and math.isfinite(c.base_logp)]
        if len(cands) < 2:
            return None
        chosen = max(cands, key=lambda c: (self.value(c), -c.index))
        below = [c for c in cands if c.score <= chosen.score and c.sample_id != chosen.sample_id]
        if not below:
            return None
        rejected = min(below, key=lambda c: (self.value(c), -c.index))
        kept_by = self.value(chosen) - self.value(rejected)
        if kept_by < min_margin or chosen.response.strip() == rejected.response.strip():
            return None
        return Choice(chosen, rejected, kept_by=kept_by)


@PAIR_STRATEGIES.register("regularized")
def regularized(weight: float = 0.2, reference: str = "base", chosen_nll: float = 0.0) -> Regularized:
    """Settings: weight (of the base model's mean log-prob per token, (0, 10]; the beta of the ranking),
    reference (base | parent), chosen_nll (weight of the chosen NLL; 0 = plain DPO)."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 < float(weight) <= 10.0:
        raise PluginSettingsError(f"pair strategy 'regularized': weight must be a number in (0, 10], got {weight!r}")
    return Regularized(float(weight), reference_setting("regularized", reference),
                       chosen_nll_setting("regularized", chosen_nll))
