"""Monitors: one plug-in a file, registered by name in `MONITORS` (importing a module registers it).

Keys are `MonitorKey` members (tools/monitors/keys.py); `run_monitors` runs them all on a round and
records a failing monitor's keys as could-not-check (tools/monitors/readings.py)."""

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
from tools.monitors.keys import SAFETY_KEYS, MonitorKey
from tools.monitors.readings import Readings, run_monitors

__all__ = ["MONITORS", "SAFETY_KEYS", "Monitor", "MonitorKey", "Readings", "RoundObservation", "run_monitors"]
