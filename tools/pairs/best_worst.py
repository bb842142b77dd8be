"""`best_worst` (the default): the best against the worst validly judged response of each prompt.

The recipe of Self-Rewarding language models (Yuan et al. 2024, arXiv:2401.10020): sample K
responses, let the judge score them, pair the highest against the lowest score. A pair needs a
margin of pairs.min_margin and two different texts; ties go to the earlier sample as chosen and the
later as rejected.
"""

from __future__ import annotations

from tools.pairs.base import PAIR_STRATEGIES, Choice, PromptGroup, Reference, best, keep, reference_setting, worst


class BestWorst:
    needs_anchors = False

    def __init__(self, reference: Reference) -> None:
        self.reference = reference

    def select(self, group: PromptGroup, min_margin: float) -> Choice | None:
        if len(group.candidates) < 2:
            return None
        return keep(best(group.candidates), worst(group.candidates), min_margin)


@PAIR_STRATEGIES.register("best_worst")
def best_worst(reference: str = "base") -> BestWorst:
    """Settings: reference (base | parent: the DPO reference its pairs train against)."""
    return BestWorst(reference_setting("best_worst", reference))
