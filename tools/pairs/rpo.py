"""`rpo`: best-vs-worst pairs with the chosen responses' negative log-likelihood added to the DPO loss.

Iterative Reasoning Preference Optimization (Pang et al. 2024, arXiv:2404.19733) trains each
iteration on DPO + alpha * NLL(chosen), the NLL normalised by length, and finds the NLL term
essential: with DPO alone the chosen responses' likelihood falls with the rejected ones' (likelihood
displacement: Pal et al. 2024, "Smaug", arXiv:2402.13228; Razin et al. 2024, arXiv:2410.08847) and
accuracy drops over the iterations. Here the NLL is TRL's `sft` loss (mean token NLL of the chosen
responses) added with weight `alpha`; training.loss_type keeps the DPO part. A loss_type that already
lists `sft` is left as configured. Any strategy takes `chosen_nll` for the same term on its own pairs;
this one names the recipe.
"""

from __future__ import annotations

from tools.pairs.base import PAIR_STRATEGIES, chosen_nll_setting, reference_setting
from tools.pairs.best_worst import BestWorst
from tools.registry import PluginSettingsError


@PAIR_STRATEGIES.register("rpo")
def rpo(alpha: float = 1.0, reference: str = "base") -> BestWorst:
    """Settings: alpha (weight of the chosen NLL, (0, 10]; the paper's 1.0), reference (base | parent)."""
    weight = chosen_nll_setting("rpo", alpha)
    if weight == 0.0:
        raise PluginSettingsError(f"pair strategy 'rpo': alpha must be > 0 (alpha 0 is best_worst), got {alpha!r}")
    return BestWorst(reference_setting("rpo", reference), weight)
