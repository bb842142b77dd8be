"""Keep only new, diverse prompts out of a batch a model wrote.

Three filters, then a diversity pick:
1. exact duplicates (after `normalize`) of prompts already used for training, of held-out prompts,
   or of an earlier candidate of the batch;
2. near-duplicates: similarity >= `max_similarity` to a held-out prompt, a used prompt, or a
   candidate already kept from this batch;
3. of the survivors, up to `n` chosen by greedy farthest-point selection, so the kept set spreads
   out instead of piling onto what the model writes most often.

Similarity is the cosine of MiniLM sentence embeddings (tools.monitors.embedding). When the
embedder is unavailable it falls back to the Jaccard similarity of word-bigram sets, under the SAME
`max_similarity` threshold: the fallback then only catches rewordings that share almost all of their
bigrams (it is stricter than the cosine, so it drops less), but the run keeps going and the
Selection records which measure was used.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tools.monitors.embedding import embed

# "none": there was nothing left to compare after the exact filter.
Similarity = Literal["embedding", "bigram_jaccard", "none"]

# Every reason is always present (0 when unused), so decision logs have one stable schema.
DROP_REASONS: tuple[str, ...] = (
    "duplicate_of_used", "near_duplicate_of_used", "near_heldout",
    "duplicate_in_batch", "near_duplicate_in_batch", "over_count",
)
_END_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019"


@dataclass(frozen=True)
class Selection:
    kept: list[str]
    dropped: dict[str, int]  # reason (DROP_REASONS) -> number of candidates dropped for it
    similarity: Similarity = "embedding"  # the measure the near-duplicate filters used


def normalize(text: str) -> str:
    """Lowercase, whitespace collapsed, punctuation stripped at both ends: the key of exact dedup."""
    return " ".join(text.lower().split()).strip(_END_PUNCT).strip()


def _bigrams(text: str) -> frozenset[tuple[str, ...]]:
    words = normalize(text).split()
    if len(words) < 2:  # a one-word text is its own shingle, so it can still match itself
        return frozenset({tuple(words)})
    return frozenset(zip(words, words[1:], strict=False))


def _jaccard_matrix(rows: Sequence[str], cols: Sequence[str]) -> np.ndarray:
    """Word-bigram Jaccard similarity, the fallback when no embedder is available."""
    a, b = [_bigrams(t) for t in rows], [_bigrams(t) for t in cols]
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            union = len(x | y)
            out[i, j] = len(x & y) / union if union else 1.0
    return out


def _similarities(
    candidates: Sequence[str], references: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, Similarity]:
    """(candidates x references, candidates x candidates) similarity matrices and the measure."""
    if not candidates:
        return np.zeros((0, len(references))), np.zeros((0, 0)), "none"
    vectors = embed([*candidates, *references])
    if vectors is None:
        both = _jaccard_matrix(candidates, [*references, *candidates])
        measure: Similarity = "bigram_jaccard"
    else:
        unit = vectors.astype(np.float64)
        count = len(candidates)
        both = unit[:count] @ np.concatenate([unit[count:], unit[:count]]).T
        measure = "embedding"
    return both[:, : len(references)], both[:, len(references):], measure


def _exact_filter(
    candidates: Sequence[str], used: Sequence[str], heldout: Sequence[str], dropped: dict[str, int]
) -> list[str]:
    used_keys, held_keys = {normalize(t) for t in used}, {normalize(t) for t in heldout}
    seen: set[str] = set()
    survivors: list[str] = []
    for text in candidates:
        key = normalize(text)
        # A verbatim held-out prompt counts as near_heldout: the leak the filter exists to stop.
        reason = ("near_heldout" if key in held_keys else "duplicate_of_used" if key in used_keys
                  else "duplicate_in_batch" if key in seen else None)
        if reason is not None:
            dropped[reason] += 1
            continue
        seen.add(key)
        survivors.append(text)
    return survivors


def _farthest_points(reference_sim: np.ndarray, mutual_sim: np.ndarray, n: int) -> list[int]:
    """Greedy max-min selection: each step takes the candidate whose nearest neighbour among the
    references and the candidates picked so far is farthest (1 - similarity); ties go to the
    earlier candidate, so the result is deterministic for the input order."""
    count = mutual_sim.shape[0]
    nearest = (1.0 - reference_sim).min(axis=1) if reference_sim.shape[1] else np.full(count, np.inf)
    picked: list[int] = []
    available = np.ones(count, dtype=bool)
    while len(picked) < min(n, count):
        score = np.where(available, nearest, -np.inf)
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        nearest = np.minimum(nearest, 1.0 - mutual_sim[:, best])
    return sorted(picked)


def select_new(
    candidates: Sequence[str],
    used: Sequence[str],
    heldout: Sequence[str],
    n: int,
    max_similarity: float = 0.9,
) -> Selection:
    """Up to `n` candidates that are new (not a duplicate or near-duplicate of `used`, `heldout` or
    each other) and spread out, in their input order, with the count of each drop reason."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    dropped = dict.fromkeys(DROP_REASONS, 0)
    survivors = _exact_filter(candidates, used, heldout, dropped)
    references = [*used, *heldout]
    ref_sim, mutual, measure = _similarities(survivors, references)
    near_held = (ref_sim[:, len(used):] >= max_similarity).any(axis=1)
    near_used = (ref_sim[:, : len(used)] >= max_similarity).any(axis=1)
    kept: list[int] = []
    for i in range(len(survivors)):
        # Held-out prompts must never leak into training, not even reworded: checked first, so a
        # candidate close to both is counted as the leak it would be.
        if near_held[i]:
            dropped["near_heldout"] += 1
        elif near_used[i]:
            dropped["near_duplicate_of_used"] += 1
        elif any(mutual[i, j] >= max_similarity for j in kept):
            dropped["near_duplicate_in_batch"] += 1
        else:
            kept.append(i)
    # Diversity is measured against what training already has (used), not against held-out.
    chosen = _farthest_points(ref_sim[kept][:, : len(used)], mutual[np.ix_(kept, kept)], n)
    dropped["over_count"] += len(kept) - len(chosen)
    return Selection([survivors[kept[i]] for i in chosen], dropped, measure)
