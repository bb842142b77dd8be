"""Drift from the base model: how natural the base model finds what the policy now samples.

Per token, log pi(y) - log pi_ref(y) averaged over the policy's own samples estimates the KL from the
reference that RLHF bounds (Ziegler et al. 2019, arXiv:1909.08593); its second half, the base model's
log-probability of the samples, falls when the policy drifts into text the base model would not write.
A judge blind to that text cannot see it: on the tiny world the `rules` judge scores fluent-looking
fragments like good answers, DPO on them raises their likelihood, and the mean per token of the
policy's samples under the base model falls from -0.7 (the base model's own samples) to -1.5 by the
fourth round and -3 by the twelfth, while the held-out verifiers fall with it. The controller reads
it against the run's first round (agent/interventions/regression.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import ClassVar

from tether_types import MonitorKey as K
from tools.monitors.base import MONITORS, RoundObservation


class BaseLikelihoodMonitor:
    """Values (needs `base_logps`: a backend that scores under the base model, i.e. transformers):

    - base_logp_mean: mean over the round's non-empty responses of their mean log-prob per token under
      the base model (the adapter disabled). Omitted without base_logps or without a non-empty response.
    """

    theme: ClassVar[str] = "length"
    keys: ClassVar[tuple[K, ...]] = (K.BASE_LOGP_MEAN,)

    def compute(self, obs: RoundObservation) -> Mapping[K, float]:
        if obs.base_logps is None:
            return {}
        values = [v for row in obs.base_logps for v in row if v is not None]
        return {K.BASE_LOGP_MEAN: statistics.fmean(values)} if values else {}


@MONITORS.register("drift")
def drift() -> BaseLikelihoodMonitor:
    return BaseLikelihoodMonitor()
