"""Token n-gram measures: distinct-n and (self-)BLEU over whitespace tokens.

sacrebleu and nltk are not dependencies, so BLEU is implemented here (Papineni et al., 2002):
clipped n-gram precisions for n = 1..4, geometric mean, brevity penalty against the closest
reference length, and Chen & Cherry (2014) method-1 smoothing (a zero match count becomes 0.1).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

_EPSILON = 0.1  # smoothing numerator for an order with no matches


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique n-grams over all n-grams across texts (Li et al., 2016)."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _bleu(hyp_len: int, hyp: list[Counter[tuple[str, ...]]], refs: list[list[Counter]], ref_lens: list[int]) -> float:
    # Orders longer than the hypothesis have no n-grams at all; they are dropped (uniform weights over
    # the rest) so that a short text repeated verbatim still scores 1.0.
    order = min(len(hyp), hyp_len)
    if order == 0 or not refs:
        return 0.0
    log_p = 0.0
    for n in range(order):
        max_ref: Counter[tuple[str, ...]] = Counter()
        for ref in refs:
            max_ref |= ref[n]
        matches = sum(min(count, max_ref[gram]) for gram, count in hyp[n].items())
        log_p += math.log((matches or _EPSILON) / (hyp_len - n))
    closest = min(ref_lens, key=lambda r: (abs(r - hyp_len), r))
    brevity = 1.0 if hyp_len > closest else math.exp(1 - closest / hyp_len)
    return brevity * math.exp(log_p / order)


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Sentence BLEU of a token list against reference token lists, in [0, 1]."""
    hyp = [ngrams(hypothesis, n) for n in range(1, max_n + 1)]
    refs = [[ngrams(r, n) for n in range(1, max_n + 1)] for r in references]
    return _bleu(len(hypothesis), hyp, refs, [len(r) for r in references])


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float | None:
    """Mean BLEU of each text against all the others (Zhu et al., 2018); None for fewer than 2 texts."""
    if len(texts) < 2:
        return None
    tokens = [t.split() for t in texts]
    grams = [[ngrams(t, n) for n in range(1, max_n + 1)] for t in tokens]
    lens = [len(t) for t in tokens]
    total = 0.0
    for i in range(len(texts)):
        others = [j for j in range(len(texts)) if j != i]
        total += _bleu(lens[i], grams[i], [grams[j] for j in others], [lens[j] for j in others])
    return total / len(texts)
