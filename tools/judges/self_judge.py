"""The `self` judge: the run's current policy judges its own responses (Self-Rewarding LMs,
Yuan et al. 2024). Beware self-enhancement bias: the monitors should watch it against `rules`.

A round's prompts go to the run's backend in one `generate` call, batched there (`generation.batch_size`
sequences at a time): its concurrency is that batch, with no threads around the run's model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.judges.base import JUDGES, PolicyHandle
from tools.judges.llm import LLMJudge, PairwiseMode, make_rubric, policy_ask
from tools.registry import PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution


@JUDGES.register("self")
def self_judge(
    rubric: str = "additive",
    max_new_tokens: int = 16,
    pairwise: PairwiseMode = "scores",
    policy: PolicyHandle | None = None,
    constitution: Constitution | None = None,
) -> LLMJudge:
    """Settings: rubric ("additive" | "constitution"), max_new_tokens (greedy), pairwise ("scores":
    compare pointwise scores, the default since the tiny world only learns 'Score: N'; "prompt":
    ask 'Winner: A|B|tie' in both orders). Context: policy (required), constitution."""
    if policy is None:
        raise PluginSettingsError("judge 'self' needs the run's policy (build context policy=...)")
    return LLMJudge(policy_ask(policy, max_new_tokens), make_rubric(rubric, constitution), pairwise)
