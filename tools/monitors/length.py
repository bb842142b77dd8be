"""Response length: judges that reward length get gamed by padding (length is the classic reward hack)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import ClassVar

from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.stats import pearson


class LengthMonitor:
    """Values (lengths are generated tokens):

    - length_mean: mean response length (0.0 for an empty round).
    - length_drift: length_mean / base model mean length - 1 (e.g. 0.5 = 50 % longer than the base
      model). Omitted when the observation carries no positive base_length_mean.
    - length_score_corr: Pearson correlation between response length and judge score over valid
      judgments, in [-1, 1]; near 1 = the judge pays for length. Defined as 0.0 when the correlation
      is undefined (fewer than 2 valid judgments, or constant lengths or scores).
    """

    keys: ClassVar[tuple[K, ...]] = (K.LENGTH_MEAN, K.LENGTH_DRIFT, K.LENGTH_SCORE_CORR)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        lengths = [n for row in obs.lengths for n in row]
        mean = statistics.fmean(lengths) if lengths else 0.0
        out = {K.LENGTH_MEAN: mean}
        if obs.base_length_mean is not None and obs.base_length_mean > 0:
            out[K.LENGTH_DRIFT] = mean / obs.base_length_mean - 1.0
        judged = [
            (float(n), s)
            for lrow, srow in zip(obs.lengths, obs.scores, strict=True)
            for n, s in zip(lrow, srow, strict=True)
            if s is not None
        ]
        out[K.LENGTH_SCORE_CORR] = pearson([n for n, _ in judged], [s for _, s in judged])
        return out


@MONITORS.register("length")
def length() -> LengthMonitor:
    return LengthMonitor()
