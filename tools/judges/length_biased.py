"""The `length_biased` judge: deliberately prefers longer responses whatever they say.

Only for the tiny world's bias experiments: length-bias monitors and length control must catch it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tools.judges.base import JUDGES, JudgeItem, ScoresCompare, Verdict
from tools.registry import PluginSettingsError


class LengthBiasedJudge(ScoresCompare):
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        out = []
        for it in items:
            words = len(it.response.split())
            # tanh squashes into [0, 1) and keeps rising with length: longer always wins.
            out.append(Verdict(score=math.tanh(words / self.scale), valid=True, raw=it.response,
                               details={"words": words}))
        return out


@JUDGES.register("length_biased")
def length_biased(scale: float = 20.0) -> LengthBiasedJudge:
    """Settings: scale (words at which the score reaches tanh(1) ~ 0.76)."""
    if not math.isfinite(scale) or scale <= 0:
        raise PluginSettingsError(f"length_biased: scale must be > 0, got {scale}")
    return LengthBiasedJudge(scale)
