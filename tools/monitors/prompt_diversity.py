"""Prompt diversity: a prompt generator that keeps drawing near-duplicates narrows what a round teaches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from tether_types import MonitorKey as K
from tools.monitors import embedding
from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.ngrams import distinct_n


class PromptDiversityMonitor:
    """Values (over the round's prompts, one per prompt slot; whitespace tokens):

    - prompt_distinct_1, prompt_distinct_2: unique / total word uni- and bigrams over the prompts.
    - embedding_available: 1.0 / 0.0 as in the diversity monitor.
    - prompt_embedding_dispersion: mean pairwise cosine distance of the prompts' MiniLM embeddings;
      ~0 = the same prompt over and over. Omitted with fewer than 2 prompts or no embedder.
    - prompt_reuse: share of the round's prompts the run used in an earlier round (pool saturation).
      Omitted when the observation carries no `prompt_reused`.
    """

    theme: ClassVar[str] = "prompts"
    keys: ClassVar[tuple[K, ...]] = (K.PROMPT_DISTINCT_1, K.PROMPT_DISTINCT_2, K.EMBEDDING_AVAILABLE,
                                     K.PROMPT_EMBEDDING_DISPERSION, K.PROMPT_REUSE)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        prompts = list(obs.prompts)
        out = {K.PROMPT_DISTINCT_1: distinct_n(prompts, 1), K.PROMPT_DISTINCT_2: distinct_n(prompts, 2)}
        if obs.prompt_reused is not None and len(obs.prompt_reused) > 0:
            out[K.PROMPT_REUSE] = sum(obs.prompt_reused) / len(obs.prompt_reused)
        if len(prompts) < 2:
            return out
        vectors = embedding.embed(prompts)
        out[K.EMBEDDING_AVAILABLE] = 0.0 if vectors is None else 1.0
        if vectors is not None:
            out[K.PROMPT_EMBEDDING_DISPERSION] = embedding.mean_cosine_distance(vectors) or 0.0
        return out


@MONITORS.register("prompt_diversity")
def prompt_diversity() -> PromptDiversityMonitor:
    return PromptDiversityMonitor()
