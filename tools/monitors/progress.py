"""Progress: held-out evaluation values (computed by the evaluate node) and the oracle on this round."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import ClassVar

from tether_types import MonitorKey as K
from tether_types import UnknownMonitorKeyError
from tools.monitors.base import MONITORS, RoundObservation
from tools.monitors.stats import flat

# Held-out value name (as the evaluate node writes it, without the prefix) -> its key.
HELDOUT: dict[str, K] = {k.value.removeprefix("heldout_"): k for k in K if k.value.startswith("heldout_")}


class ProgressMonitor:
    """Values:

    - heldout_<key>: each finite value of `obs.heldout` passed through, prefixed with "heldout_"
      unless the key already is: judge_active, oracle_active, judge_candidate, oracle_candidate
      (held-out judge / oracle score of the active checkpoint and the candidate, on the validation
      split: the run passes the monitors no test-split number, agent/run/splits.py). Any other held-out
      key raises (it has no MonitorKey), so the monitor's keys are recorded as could not check.
    - oracle_mean: mean oracle score of this round's training responses (valid ones), in [0, 1].
    - oracle_gap: mean judge score - mean oracle score over responses where both are valid; a gap
      that grows round on round means the policy pleases the judge more than it gets better
      (reward hacking).
    Each is omitted when its input is absent.
    """

    theme: ClassVar[str] = "progress"
    keys: ClassVar[tuple[K, ...]] = (*HELDOUT.values(), K.ORACLE_MEAN, K.ORACLE_GAP)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        out: dict[K, float] = {}
        for name, value in (obs.heldout or {}).items():
            key = HELDOUT.get(name.removeprefix("heldout_"))
            if key is None:
                raise UnknownMonitorKeyError(f"heldout_{name.removeprefix('heldout_')}", "held-out value")
            if isinstance(value, int | float) and math.isfinite(value):
                out[key] = float(value)
        if obs.oracle_scores is not None:
            oracle = flat(obs.oracle_scores)
            valid = [o for o in oracle if o is not None]
            if valid:
                out[K.ORACLE_MEAN] = statistics.fmean(valid)
            both = [(j, o) for j, o in zip(flat(obs.scores), oracle, strict=True) if j is not None and o is not None]
            if both:
                out[K.ORACLE_GAP] = statistics.fmean(j - o for j, o in both)
        return out


@MONITORS.register("progress")
def progress() -> ProgressMonitor:
    return ProgressMonitor()
