"""The `concise` judge: prefers answers that say something in few words."""

from __future__ import annotations

from collections.abc import Sequence

from tools.judges import JudgeItem, PairItem, PairVerdict, Verdict, compare_by_scores


class ConciseJudge:
    """Pointwise scores in [0, 1] from the word count alone; pairs are compared by those scores."""

    def __init__(self, max_words: int, min_words: int) -> None:
        self.max_words, self.min_words = max_words, min_words

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return [self._score_one(item.response) for item in items]

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        return compare_by_scores(self, items)

    def _score_one(self, response: str) -> Verdict:
        words = len(response.split())
        if words < self.min_words:
            score = words / self.min_words  # an empty answer scores 0
        elif words <= self.max_words:
            score = 1.0
        else:
            score = self.max_words / words
        return Verdict(score=score, valid=True, raw=response, details={"words": words})


def concise(max_words: int = 40, min_words: int = 3) -> ConciseJudge:
    """Scores 1 for an answer of min_words to max_words words, less the further outside that range it falls."""
    for setting, value in (("max_words", max_words), ("min_words", min_words)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"judge 'concise': {setting} must be a whole number >= 1, got {value!r}")
    if min_words > max_words:
        raise ValueError(f"judge 'concise': min_words {min_words} is more than max_words {max_words}")
    return ConciseJudge(max_words, min_words)
