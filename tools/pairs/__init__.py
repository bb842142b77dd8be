"""Pair strategies: one plug-in a file, registered by name in `PAIR_STRATEGIES`.

    best_worst     the default: best vs worst response of each prompt (Self-Rewarding's recipe)
    anchored       rejected drawn from the initial model's samples (Temporal Self-Rewarding)
    diverse        chosen high-scoring and rare, rejected low-scoring and common (DivPO)
    iterative_dpo  best vs worst, trained against the last approved checkpoint (iterative DPO, sDPO)
    rpo            best vs worst, with the chosen responses' NLL added to the loss (Iterative RPO)
    regularized    ranked by judge score + the base model's log-likelihood (the KL-regularised optimum)
"""

from tools.pairs import anchored as _anchored  # noqa: F401  (each import registers its plug-in)
from tools.pairs import best_worst as _best_worst  # noqa: F401
from tools.pairs import diverse as _diverse  # noqa: F401
from tools.pairs import iterative_dpo as _iterative_dpo  # noqa: F401
from tools.pairs import regularized as _regularized  # noqa: F401
from tools.pairs import rpo as _rpo  # noqa: F401
from tools.pairs.base import PAIR_STRATEGIES, Candidate, Choice, PairStrategy, PromptGroup, Reference

__all__ = ["PAIR_STRATEGIES", "Candidate", "Choice", "PairStrategy", "PromptGroup", "Reference"]
