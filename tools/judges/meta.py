"""The `meta` judge: a Meta-Rewarding-style (Wu et al. 2024) judge of judgments.

Given a prompt, a response and two judgments of it, it says which judgment is more reliable,
asking in both orders like any pairwise judgment. Used to pick between judges (or judge samples)
and to measure a judge's quality; as a plain judge, `score`/`compare` delegate to the inner judge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tools.judges.base import (
    JUDGES,
    Judge,
    JudgeItem,
    PairItem,
    PairVerdict,
    PolicyHandle,
    Verdict,
    compare,
)
from tools.judges.jury import build_member
from tools.judges.llm import LLMJudge, combine_answers
from tools.judges.prompts import meta_prompt
from tools.registry import Built, PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution


@dataclass(frozen=True)
class Judgment:
    text: str
    score: float | None = None

    @staticmethod
    def of(value: Judgment | Verdict | str) -> Judgment:
        if isinstance(value, Judgment):
            return value
        if isinstance(value, Verdict):
            return Judgment(value.raw, value.score)
        return Judgment(str(value))

    def render(self) -> str:
        return self.text if self.score is None else f"{self.text} (normalised score {self.score:.2f})"


@dataclass(frozen=True)
class MetaItem:
    prompt: str
    response: str
    a: Judgment
    b: Judgment


class MetaJudge:
    def __init__(self, inner: Built[Judge], meta: Built[Judge]) -> None:
        if not isinstance(meta.plugin, LLMJudge):
            raise PluginSettingsError(f"meta: the meta judge must be an LLM judge, not '{meta.name}'")
        self.inner, self.meta = inner, meta
        self._llm: LLMJudge = meta.plugin

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return self.inner.plugin.score(items)

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        return compare(self.inner.plugin, items)

    def prefer(self, prompt: str, response: str, judgment_a: Judgment | Verdict | str,
               judgment_b: Judgment | Verdict | str) -> PairVerdict:
        """Which judgment of `response` is more reliable: "a", "b", "tie" or None (invalid)."""
        item = MetaItem(prompt, response, Judgment.of(judgment_a), Judgment.of(judgment_b))
        return self.prefer_many([item])[0]

    def prefer_many(self, items: Sequence[MetaItem]) -> list[PairVerdict]:
        prompts = [meta_prompt(it.prompt, it.response, x.render(), y.render())
                   for it in items for x, y in ((it.a, it.b), (it.b, it.a))]
        answers = self._llm.ask(prompts)
        return [combine_answers(answers[2 * i], answers[2 * i + 1]) for i in range(len(items))]


def preference_summary(verdicts: Sequence[PairVerdict]) -> dict[str, float]:
    """Shares of a/b/tie/invalid and position inconsistency: a's win rate measures judge a's quality."""
    n = max(1, len(verdicts))
    count = {k: sum(v.winner == k for v in verdicts) / n for k in ("a", "b", "tie")}
    return {**count, "invalid": sum(not v.valid for v in verdicts) / n,
            "position_inconsistent": sum(v.valid and not v.position_consistent
                                         for v in verdicts) / n}


@JUDGES.register("meta")
def meta(
    judge: Mapping[str, Any],
    meta_judge: Mapping[str, Any] | None = None,
    constitution: Constitution | None = None,
    policy: PolicyHandle | None = None,
) -> MetaJudge:
    """Settings: judge ({name, settings}: the judge whose verdicts `score`/`compare` return),
    meta_judge ({name, settings} of an LLM judge (self | hf | openai) answering the meta
    question; default: `judge` itself)."""
    context = {k: v for k, v in {"constitution": constitution, "policy": policy}.items()
               if v is not None}
    inner = build_member(judge, **context)
    return MetaJudge(inner, inner if meta_judge is None else build_member(meta_judge, **context))
