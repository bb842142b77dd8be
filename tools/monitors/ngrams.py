"""Token n-gram measures: distinct-n, and BLEU / self-BLEU from NLTK, the implementation published
self-BLEU numbers come from.

- BLEU is NLTK's `sentence_bleu` (Papineni et al., 2002): clipped n-gram precisions for n = 1..4 with
  uniform weights, geometric mean, brevity penalty against the closest reference length, and
  `SmoothingFunction().method1` (Chen & Cherry, 2014: a zero match count becomes 0.1). An order the
  hypothesis is too short to have (a 2-word text has no trigrams) is smoothed like any other, as in
  NLTK; nothing is re-weighted.
- Self-BLEU is Texygen's definition (Zhu et al., 2018, "Texygen: A Benchmarking Platform for Text
  Generation Models"): the mean, over the texts of a set, of the BLEU-4 of each text against all the
  other texts as references, with the smoothing above. 1.0 = the texts are identical.
- Tokens for BLEU are NLTK's `word_tokenize(text, preserve_line=True)` (Treebank rules: punctuation
  split off); `preserve_line` skips sentence splitting, which needs the punkt data files that NLTK
  would download. distinct-n counts whitespace-separated words (Li et al., 2016).

NLTK (`nltk` on PyPI) is imported on first use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique n-grams over all n-grams across texts (Li et al., 2016)."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@cache
def _nltk() -> tuple[Any, Any, Any]:
    from nltk.tokenize import word_tokenize
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return sentence_bleu, SmoothingFunction().method1, word_tokenize


def tokenize(text: str) -> list[str]:
    """NLTK's Treebank word tokens of `text`, as BLEU counts them."""
    return list(_nltk()[2](text, preserve_line=True))


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """NLTK sentence BLEU of a token list against reference token lists, in [0, 1] (0.0 for an empty
    hypothesis or no references)."""
    if not hypothesis or not references:
        return 0.0
    sentence_bleu, smoothing, _ = _nltk()
    weights = tuple(1.0 / max_n for _ in range(max_n))
    return float(sentence_bleu([list(r) for r in references], list(hypothesis), weights=weights,
                               smoothing_function=smoothing))


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float | None:
    """Texygen self-BLEU: mean BLEU of each text against all the others; None for fewer than 2 texts."""
    if len(texts) < 2:
        return None
    tokens = [tokenize(t) for t in texts]
    total = 0.0
    for i, hypothesis in enumerate(tokens):
        total += bleu(hypothesis, [t for j, t in enumerate(tokens) if j != i], max_n)
    return total / len(texts)
