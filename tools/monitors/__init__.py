"""Monitors: one plug-in a file, registered by name in `MONITORS` (importing a module registers it)."""

from tools.monitors import (  # noqa: F401  (registers the plug-ins)
    diversity,
    judge_reliability,
    length,
    pairs,
    progress,
    prompt_diversity,
    refusals,
    scores,
)
from tools.monitors.base import MONITORS, Monitor, RoundObservation

__all__ = ["MONITORS", "Monitor", "RoundObservation"]
