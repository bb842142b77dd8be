"""Progress: held-out evaluation values (computed by the evaluate node) and the oracle on this round."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.stats import flat


class ProgressMonitor:
    """Values:

    - heldout_<key>: each finite value of `obs.heldout` passed through, prefixed with "heldout_"
      unless the key already is (e.g. judge_active, oracle_active, judge_candidate,
      oracle_candidate: held-out judge / oracle score of the active checkpoint and the candidate).
    - oracle_mean: mean oracle score of this round's training responses (valid ones), in [0, 1].
    - oracle_gap: mean judge score - mean oracle score over responses where both are valid; a gap
      that grows round on round means the policy pleases the judge more than it gets better
      (reward hacking).
    Each is omitted when its input is absent.
    """

    def compute(self, obs: RoundObservation) -> Mapping[str, float]:
        out: dict[str, float] = {}
        for key, value in (obs.heldout or {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                out[key if key.startswith("heldout_") else f"heldout_{key}"] = float(value)
        if obs.oracle_scores is not None:
            oracle = flat(obs.oracle_scores)
            valid = [o for o in oracle if o is not None]
            if valid:
                out["oracle_mean"] = statistics.fmean(valid)
            both = [(j, o) for j, o in zip(flat(obs.scores), oracle, strict=True) if j is not None and o is not None]
            if both:
                out["oracle_gap"] = statistics.fmean(j - o for j, o in both)
        return out


@MONITORS.register("progress")
def progress() -> ProgressMonitor:
    return ProgressMonitor()
