"""Response diversity: mode collapse shows up as repeated n-grams and near-identical embeddings."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import ClassVar

from tether_types import MonitorKey as K
from tools.monitors import embedding
from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.ngrams import distinct_n, self_bleu
from tools.monitors.stats import flat


class DiversityMonitor:
    """Values:

    - distinct_1, distinct_2: unique / total word uni- and bigrams (whitespace-separated words) over
      all responses of the round; higher = more diverse. 0.0 when there are no n-grams.
    - self_bleu: Texygen self-BLEU-4 computed with NLTK (see tools/monitors/ngrams.py) over the
      responses to the same prompt, averaged over prompts with >= 2 responses; 1.0 = responses to a
      prompt are identical, near 0 = no shared n-grams. Omitted when no prompt has 2 responses.
    - embedding_available: 1.0 when the MiniLM embedder loaded, 0.0 when it did not (the embedding
      values below are then omitted and only the n-gram measures remain).
    - embedding_dispersion: mean pairwise cosine distance (1 - cos) of MiniLM sentence embeddings of
      the responses to the same prompt, averaged over prompts with >= 2 responses; ~0 = collapsed.
    - embedding_dispersion_round: the same over all responses of the round pooled (mixes in prompt
      variety; compare it with prompt_embedding_dispersion).
    """

    theme: ClassVar[str] = "diversity"
    keys: ClassVar[tuple[K, ...]] = (K.DISTINCT_1, K.DISTINCT_2, K.SELF_BLEU, K.EMBEDDING_AVAILABLE,
                                     K.EMBEDDING_DISPERSION, K.EMBEDDING_DISPERSION_ROUND)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        texts = flat(obs.responses)
        out = {K.DISTINCT_1: distinct_n(texts, 1), K.DISTINCT_2: distinct_n(texts, 2)}
        groups = [row for row in obs.responses if len(row) >= 2]
        if groups:
            out[K.SELF_BLEU] = statistics.fmean(self_bleu(row) or 0.0 for row in groups)
        out.update(self._embedding(obs, texts))
        return out

    @staticmethod
    def _embedding(obs: RoundObservation, texts: list[str]) -> dict[K, float]:
        if not texts:
            return {}
        vectors = embedding.embed(texts)
        if vectors is None:
            return {K.EMBEDDING_AVAILABLE: 0.0}
        out = {K.EMBEDDING_AVAILABLE: 1.0}
        within, start = [], 0
        for row in obs.responses:
            if len(row) >= 2:
                within.append(embedding.mean_cosine_distance(vectors[start : start + len(row)]) or 0.0)
            start += len(row)
        if within:
            out[K.EMBEDDING_DISPERSION] = statistics.fmean(within)
        pooled = embedding.mean_cosine_distance(vectors)
        if pooled is not None:
            out[K.EMBEDDING_DISPERSION_ROUND] = pooled
        return out


@MONITORS.register("diversity")
def diversity() -> DiversityMonitor:
    return DiversityMonitor()
