"""Monitors: one plug-in family a file, registered by name in `MONITORS`."""

from tools.monitors import basic as _basic  # noqa: F401  (registers the plug-ins)
from tools.monitors.base import MONITORS, Monitor, RoundObservation

__all__ = ["MONITORS", "Monitor", "RoundObservation"]
