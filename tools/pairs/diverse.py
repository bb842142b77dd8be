"""`diverse`: diversity-aware selection, after DivPO (Lanchantin et al. 2025, "Diverse Preference
Optimization", arXiv:2501.18101).

Preference training on best-vs-worst pairs concentrates probability on a few responses. DivPO keeps
quality and diversity apart: among the responses that meet a quality threshold the chosen one is the
*most diverse* (rarest), among those below it the rejected one is the *least diverse* (most common).
Here the threshold splits each prompt's score range: a response is high-scoring when its score is at
least `min + (1 - quality_band) * (max - min)` (quality_band 0.5: the upper half). A response's rarity
is its mean word-set Jaccard distance to the prompt's other responses (a word-overlap stand-in for
DivPO's word-frequency criterion). The pair still needs pairs.min_margin and two different texts;
among the low-scoring responses only those at least min_margin below the chosen one are considered.
"""

from __future__ import annotations

import re
import statistics

from tools.pairs.base import (
    PAIR_STRATEGIES,
    Candidate,
    Choice,
    PromptGroup,
    Reference,
    chosen_nll_setting,
    keep,
    reference_setting,
)
from tools.registry import PluginSettingsError

_WORD = re.compile(r"\w+")


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def _distance(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return 1.0 - len(a & b) / len(union) if union else 0.0


def rarity(candidates: tuple[Candidate, ...]) -> dict[int, float]:
    """sample id -> mean Jaccard distance of its words to every other response of the prompt."""
    words = {c.sample_id: _words(c.response) for c in candidates}
    return {c.sample_id: statistics.fmean(_distance(words[c.sample_id], words[o.sample_id])
                                          for o in candidates if o.sample_id != c.sample_id)
            for c in candidates}


class Diverse:
    needs_anchors = False
    needs_base_logp = False

    def __init__(self, quality_band: float, reference: Reference, chosen_nll: float = 0.0) -> None:
        self.quality_band, self.reference, self.chosen_nll = quality_band, reference, chosen_nll

    def select(self, group: PromptGroup, min_margin: float) -> Choice | None:
        cands = group.candidates
        if len(cands) < 2:
            return None
        hi, lo = max(c.score for c in cands), min(c.score for c in cands)
        if hi - lo < min_margin:
            return None
        cut = lo + (1.0 - self.quality_band) * (hi - lo)
        rare = rarity(cands)
        chosen = max((c for c in cands if c.score >= cut), key=lambda c: (rare[c.sample_id], c.score, -c.index))
        low = [c for c in cands if c.score < cut and chosen.score - c.score >= min_margin]
        if not low:
            return None
        rejected = min(low, key=lambda c: (rare[c.sample_id], -c.score, c.index))
        return keep(chosen, rejected, min_margin)


@PAIR_STRATEGIES.register("diverse")
def diverse(quality_band: float = 0.5, reference: str = "base", chosen_nll: float = 0.0) -> Diverse:
    """Settings: quality_band (share of a prompt's score range, from the top, whose responses count as
    high-scoring; (0, 1)), reference (base | parent), chosen_nll (weight of the chosen NLL; 0 = plain DPO)."""
    if isinstance(quality_band, bool) or not isinstance(quality_band, int | float) or not 0.0 < quality_band < 1.0:
        raise PluginSettingsError(f"pair strategy 'diverse': quality_band must be a number in (0, 1), "
                                  f"got {quality_band!r}")
    return Diverse(float(quality_band), reference_setting("diverse", reference),
                   chosen_nll_setting("diverse", chosen_nll))
