"""The `consensus` judge: a reward with no reference and no rubric, the agreement of a response with the
other responses sampled for the same prompt (majority voting as the reward, as in test-time RL and
self-consistency training). It never knows whether the majority is right.

A response's score is its mean word-set Jaccard similarity to the other responses to the same prompt in
the same `score` call (the agent scores a round's samples in one call); a response with no sibling in
the call scores 1.0 (nothing disagrees with it). So the most stereotyped answer wins, whatever it says:
training on it makes the samples converge (the diversity monitor's self-BLEU rises, distinct-n falls)
while this judge's scores rise, the distributional-collapse failure world's judge
(tools/worlds/tiny/failures/collapse.py). It reads neither the constitution nor any world.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Sequence

from tools.judges.base import JUDGES, JudgeItem, ScoresCompare, Verdict

_WORD = re.compile(r"\w+")


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two word sets; two empty responses agree."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


class ConsensusJudge(ScoresCompare):
    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        siblings: defaultdict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            siblings[item.prompt].append(i)
        bags = [words(item.response) for item in items]
        out = []
        for i, item in enumerate(items):
            others = [j for j in siblings[item.prompt] if j != i]
            agreement = statistics.fmean(similarity(bags[i], bags[j]) for j in others) if others else 1.0
            out.append(Verdict(agreement, True, item.response, {"agreement": agreement, "others": len(others)}))
        return out


@JUDGES.register("consensus")
def consensus() -> ConsensusJudge:
    """Agreement with the other responses to the same prompt (majority voting as the reward); no settings."""
    return ConsensusJudge()
