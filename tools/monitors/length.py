"""Response length: judges that reward length get gamed by padding (length is the classic reward hack)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import ClassVar

from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.stats import pearson


class LengthMonitor:
    """Values (lengths are generated tokens):

    - length_mean: mean response length (0.0 for an empty round).
    - length_drift: length_mean / base model mean length - 1 (e.g. 0.5 = 50 % longer than the base
      model). Omitted when the observation carries no positive base_length_mean.
    - length_score_corr: the correlation between response length and judge score *among responses
      to the same prompt* (lengths and scores centred on their prompt's means, then Pearson's r over
      all valid judgments of prompts with at least two), in [-1, 1]; near 1 = the judge pays for
      length. Within prompts, because pooled over prompts it measures the mix of prompts instead: a
      judge that gives a wrong short sum 0 and a right long how-to 1 correlates with length pooled,
      without ever preferring the longer of two answers to one question (a calculator judge on the
      tiny world was 0.66 pooled). Defined as 0.0 when undefined (too few judgments, or constant
      lengths or scores within every prompt).
    """

    theme: ClassVar[str] = "length"
    keys: ClassVar[tuple[K, ...]] = (K.LENGTH_MEAN, K.LENGTH_DRIFT, K.LENGTH_SCORE_CORR)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        lengths = [n for row in obs.lengths for n in row]
        mean = statistics.fmean(lengths) if lengths else 0.0
        out = {K.LENGTH_MEAN: mean}
        if obs.base_length_mean is not None and obs.base_length_mean > 0:
            out[K.LENGTH_DRIFT] = mean / obs.base_length_mean - 1.0
        out[K.LENGTH_SCORE_CORR] = within_prompt_corr(obs.lengths, obs.scores)
        return out


def within_prompt_corr(lengths: Sequence[Sequence[int]], scores: Sequence[Sequence[float | None]]) -> float:
    """Pearson's r of length and score after removing each prompt's mean from both (the "within"
    estimator): only differences between answers to one prompt count."""
    xs: list[float] = []
    ys: list[float] = []
    for lrow, srow in zip(lengths, scores, strict=True):
        judged = [(float(n), s) for n, s in zip(lrow, srow, strict=True) if s is not None]
        if len(judged) < 2:
            continue
        mx, my = statistics.fmean(n for n, _ in judged), statistics.fmean(s for _, s in judged)
        xs += [n - mx for n, _ in judged]
        ys += [s - my for _, s in judged]
    return pearson(xs, ys)


@MONITORS.register("length")
def length() -> LengthMonitor:
    return LengthMonitor()
