"""Monitors: one plug-in a file, registered by name in `MONITORS` (every module of this folder is imported
here, and importing a module registers it).

Keys are `MonitorKey` members (tether_types.py); `run_monitors` runs them all on a round and
records a failing monitor's keys as could-not-check (tools/monitors/readings.py).

Installed packages add monitors through the `tether.monitors` entry-point group (tools/registry.py).
Such a monitor runs every round like the built-ins, so it is admitted only if it can be built without
settings and declares `keys` that are `MonitorKey` members no other monitor declares: it cannot emit a
key the type checker and the controller do not know, nor overwrite a built-in's reading (a safety
signal least of all). A new signal therefore starts as a `MonitorKey` member; a monitor that fails at
run time has its keys recorded as could-not-check, as a built-in's are."""

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from tether_types import SAFETY_KEYS, FamilyKey, MonitorKey
from tools.monitors.base import MONITORS, FamilyMonitor, Monitor, RoundObservation
from tools.monitors.readings import Readings, run_monitors

for _module in pkgutil.iter_modules(__path__):  # importing a module registers its monitor: a new one is one file
    importlib.import_module(f"{__name__}.{_module.name}")


def _installed_monitor_problem(name: str, factory: Callable[..., Any]) -> str | None:
    """Why an installed monitor is refused (see above), or None."""
    try:
        monitor = factory()
    except Exception as err:  # an installed package's failure is a problem, not a crash
        return f"cannot be built without settings: {type(err).__name__}: {err}"
    keys = getattr(monitor, "keys", None)
    if not keys or not all(isinstance(k, MonitorKey) for k in keys):
        return (f"must declare the keys it emits as `keys: tuple[MonitorKey, ...]` (tether_types), got "
                f"{keys!r}: an installed monitor emits only keys MonitorKey declares")
    for other in MONITORS.names():
        built = MONITORS.build(other).plugin
        shared = sorted({*(set(keys) & set(getattr(built, "keys", ()))),
                         *(set(getattr(monitor, "family_keys", ())) & set(getattr(built, "family_keys", ())))})
        if shared:
            return (f"declares {', '.join(shared)}, which monitor '{other}' ({MONITORS.origin(other)}) emits "
                    "already: an installed monitor may not overwrite another monitor's reading (a new signal needs "
                    "a MonitorKey member of its own)")
    return None


MONITORS.use_entry_points("tether.monitors", admit=_installed_monitor_problem)

__all__ = ["MONITORS", "SAFETY_KEYS", "FamilyKey", "FamilyMonitor", "Monitor", "MonitorKey", "Readings",
           "RoundObservation", "run_monitors"]
