"""`best_worst` (the default): the best against the worst validly judged response of each prompt.

The recipe of Self-Rewarding language models (Yuan et al. 2024, arXiv:2401.10020): sample K
responses, let the judge score them, pair the highest against the lowest score. A pair needs a
margin of pairs.min_margin and two different texts; ties go to the earlier sample as chosen and the
later as rejected.
"""

from __future__ import annotations

from tools.pairs.base import (
    PAIR_STRATEGIES,
    Choice,
    PromptGroup,
    Reference,
    best,
    chosen_nll_setting,
    keep,
    reference_setting,
    worst,
)


class BestWorst:
    needs_anchors = False
    needs_base_logp = False

    def __init__(self, reference: Reference, chosen_nll: float = 0.0) -> None:
        self.reference, self.chosen_nll = reference, chosen_nll

    def select(self, group: PromptGroup, min_margin: float) -> Choice | None:
        if len(group.candidates) < 2:
            return None
        return keep(best(group.candidates), worst(group.candidates), min_margin)


@PAIR_STRATEGIES.register("best_worst")
def best_worst(reference: str = "base", chosen_nll: float = 0.0) -> BestWorst:
    """Settings: reference (base | parent: the DPO reference its pairs train against), chosen_nll (weight
    of the chosen responses' NLL in the loss; 0 = plain DPO)."""
    return BestWorst(reference_setting("best_worst", reference), chosen_nll_setting("best_worst", chosen_nll))
