"""The shared core of every LLM judge (`self`, `hf`, `openai`): rubric prompts in, parsed verdicts out.

A judge kind only supplies `ask`: prompts -> one answer text (or the exception it raised) per
prompt. Everything else — prompts, parsing, both-orders pairwise, turning failures into invalid
verdicts — lives here so the kinds cannot drift apart.

A round is judged in one `ask` of all its prompts. The `openai` kind sends them as concurrent requests
(tools/judges/fanout.py: bounded, in order, with a per-round budget); `hf` and `self` hand them to one
local model's `generate`, which batches them (`batch_size` sequences at a time), so their concurrency is
that batch size and no threads are put around a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tools.endpoints import describe_error
from tools.judges.base import (
    JudgeItem,
    PairItem,
    PairVerdict,
    PolicyHandle,
    Verdict,
    combine_orders,
    compare_by_scores,
)
from tools.judges.fanout import BudgetSpent
from tools.judges.parsing import parse_score, parse_winner
from tools.judges.prompts import pairwise_prompt, pointwise_prompt, rubric_text
from tools.registry import PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution
    from policies.generation import GenerationBackend
    from tether_types import AdapterRef

Answer = str | BaseException
Ask = Callable[[list[str]], list[Answer]]
PairwiseMode = Literal["prompt", "scores"]


def failure_reason(err: BaseException) -> str:
    """An invalid verdict's reason for a failed call, with its causes (`Connection refused`), so a round of
    them says what to fix; the same text for every verdict of one failure, so the decision log counts them."""
    if isinstance(err, BudgetSpent):  # not a failure of the judge: the round chose not to wait or ask
        return str(err)
    return f"judge call failed: {describe_error(err)}"[:500]


class LLMJudge:
    """Pointwise: one rubric prompt per item, 'Score: N' parsed. Pairwise: `pairwise="prompt"`
    asks 'Winner: A|B|tie' in both orders; `"scores"` compares pointwise scores instead (for
    models that only learned the pointwise format, like the tiny world's)."""

    def __init__(self, ask: Ask, rubric: str, pairwise: PairwiseMode = "prompt") -> None:
        if pairwise not in ("prompt", "scores"):
            raise PluginSettingsError(f"pairwise must be 'prompt' or 'scores', got {pairwise!r}")
        self._ask = ask
        self.rubric = rubric
        self.pairwise = pairwise

    def ask(self, prompts: Sequence[str]) -> list[Answer]:
        """Never raises: a failed call becomes that exception in place of every answer."""
        prompts = list(prompts)
        if not prompts:
            return []
        try:
            answers = list(self._ask(prompts))
        except Exception as err:  # a judge failure must not end the round
            return [err] * len(prompts)
        if len(answers) != len(prompts):
            err = RuntimeError(f"judge returned {len(answers)} answers for {len(prompts)} prompts")
            return [err] * len(prompts)
        return answers

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        answers = self.ask([pointwise_prompt(it.prompt, it.response, self.rubric) for it in items])
        return [Verdict.invalid("", failure_reason(a)) if isinstance(a, BaseException)
                else parse_score(a) for a in answers]

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        if self.pairwise == "scores":
            return compare_by_scores(self, items)
        prompts = [pairwise_prompt(it.prompt, x, y, self.rubric)
                   for it in items for x, y in ((it.a, it.b), (it.b, it.a))]
        answers = self.ask(prompts)
        return [combine_answers(answers[2 * i], answers[2 * i + 1]) for i in range(len(items))]


def combine_answers(first: Answer, second: Answer) -> PairVerdict:
    """Parse the a-first and b-first answers and combine them (see `combine_orders`)."""
    parsed = []
    for answer in (first, second):
        if isinstance(answer, BaseException):
            parsed.append(("", None, failure_reason(answer)))
        else:
            winner, reason = parse_winner(answer)
            parsed.append((answer, winner, reason))
    (raw1, w1, r1), (raw2, w2, r2) = parsed
    return combine_orders(w1, w2, (raw1, raw2), (r1, r2))


def greedy_spec(max_new_tokens: int) -> Any:
    from tether_types import SamplingSpec

    return SamplingSpec(n=1, max_new_tokens=max_new_tokens, do_sample=False, temperature=0.0)


def policy_ask(policy: PolicyHandle, max_new_tokens: int) -> Ask:
    """Greedy, short generations from a policy handle."""
    spec = greedy_spec(max_new_tokens)

    def ask(prompts: list[str]) -> list[Answer]:
        return list(policy.generate(prompts, spec))

    return ask


@dataclass
class BackendPolicy:
    """A `PolicyHandle` over a generation backend and (optionally) an adapter."""

    backend: GenerationBackend
    adapter: AdapterRef | None = None

    def generate(self, prompts: Sequence[str], spec: Any) -> list[str]:
        return [g.text for g in self.backend.generate(list(prompts), self.adapter, spec)]


def make_rubric(rubric: str, constitution: Constitution | None) -> str:
    try:
        return rubric_text(rubric, constitution)
    except ValueError as err:
        raise PluginSettingsError(str(err)) from None
