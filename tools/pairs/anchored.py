"""`anchored`: anchored rejection, after Temporal Self-Rewarding (Wang et al. 2025, "Temporal
Self-Rewarding Language Models: Decoupling Chosen-Rejected via Past-Future", arXiv:2508.06026).

As a self-rewarding policy improves, its own best and worst responses become alike and the pair
margin collapses. Anchored rejection fixes the rejected side to the *initial* model: here the chosen
response is the policy's best of the round, and the rejected one the worst-scoring of the base
model's samples of the same prompt. Those base samples are drawn once per prompt (K of them, the
generation settings' samples_per_prompt, with the adapter disabled), stored with the run as round 0
of the base checkpoint, and scored by the round's own judge each time they are used (the judge may
have changed since). A prompt yields no pair when the policy's best does not beat the worst anchor
by pairs.min_margin. (The paper's second half, future-guided chosen, is not implemented.)
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


class Anchored:
    needs_anchors = True
    needs_base_logp = False

    def __init__(self, reference: Reference, chosen_nll: float = 0.0) -> None:
        self.reference, self.chosen_nll = reference, chosen_nll

    def select(self, group: PromptGroup, min_margin: float) -> Choice | None:
        if not group.candidates or not group.anchors:
            return None
        return keep(best(group.candidates), worst(group.anchors), min_margin)


@PAIR_STRATEGIES.register("anchored")
def anchored(reference: str = "base", chosen_nll: float = 0.0) -> Anchored:
    """Settings: reference (base | parent: the DPO reference its pairs train against), chosen_nll (weight
    of the chosen responses' NLL in the loss; 0 = plain DPO)."""
    return Anchored(reference_setting("anchored", reference), chosen_nll_setting("anchored", chosen_nll))
