"""`iterative_dpo`: best-vs-worst pairs trained against the last approved checkpoint, not the base.

Iterative DPO moves the reference with the policy: round t+1 is trained from the model of round t
*and* regularised towards it, so each round is a small step from the last accepted policy rather
than an ever longer leash from the base. Self-Rewarding language models (Yuan et al. 2024,
arXiv:2401.10020) train M_{t+1} from M_t with DPO; sDPO (Kim et al. 2024, "sDPO: Don't Use Your Data
All at Once", arXiv:2403.19270) uses the previous step's aligned model as the reference of the next.
Here the reference is the parent adapter the candidate warm-starts from (the run's active checkpoint,
i.e. its last approved one), loaded as a second, frozen adapter (policies/training.py); in the first
round, with no adapter yet, it is the base model. Any strategy takes `reference: parent` for the same
effect on its own pairs; this one names the recipe.
"""

from __future__ import annotations

from tools.pairs.base import PAIR_STRATEGIES, chosen_nll_setting
from tools.pairs.best_worst import BestWorst


@PAIR_STRATEGIES.register("iterative_dpo")
def iterative_dpo(chosen_nll: float = 0.0) -> BestWorst:
    """Settings: chosen_nll (weight of the chosen NLL; 0 = plain DPO). Best_worst pairs with reference: parent."""
    return BestWorst("parent", chosen_nll_setting("iterative_dpo", chosen_nll))
