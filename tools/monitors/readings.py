"""One round's monitor readings: the values, and the keys that could not be checked and why.

`run_monitors` runs every monitor on the round's observation. A monitor that raises, or returns a
key it did not declare or a value that is not a finite number, does not fail the round and does not
vanish: each key it declared (or the offending key) is recorded as "could not check" with the reason,
and the other monitors go on. The controller then treats a missing safety signal as fired
(agent/controller/policy.py). The stored shape is documented in tether_types.py.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tether_types import BY_FAMILY, COULD_NOT_CHECK, FamilyKey, MonitorKey, family_key, monitor_key
from tools.monitors.base import FamilyMonitor, Monitor, RoundObservation
from tools.registry import Built

log = logging.getLogger(__name__)


ByFamily = Mapping[str, Mapping[FamilyKey, float]]


@dataclass(frozen=True)
class Readings:
    values: Mapping[MonitorKey, float] = field(default_factory=dict)
    could_not_check: Mapping[MonitorKey, str] = field(default_factory=dict)  # key -> why
    by_family: ByFamily = field(default_factory=dict)  # family -> {family key: value}

    def to_json(self) -> dict[str, Any]:
        """The round's monitors column: values by key, plus `_could_not_check` and `_by_family` when non-empty."""
        out: dict[str, Any] = dict(self.values)
        if self.could_not_check:
            out[COULD_NOT_CHECK] = dict(self.could_not_check)
        if self.by_family:
            out[BY_FAMILY] = {family: dict(values) for family, values in self.by_family.items()}
        return out

    @classmethod
    def from_json(cls, stored: Mapping[str, Any] | None) -> Readings:
        """Parse a stored monitors column (None: the round has none). Unknown keys raise; a stored
        per-family value that is not a finite number is left out (not measured)."""
        values: dict[MonitorKey, float] = {}
        missing: dict[MonitorKey, str] = {}
        by_family: dict[str, dict[FamilyKey, float]] = {}
        for name, value in (stored or {}).items():
            if name == COULD_NOT_CHECK:
                missing.update({monitor_key(k): str(why) for k, why in dict(value).items()})
            elif name == BY_FAMILY:
                by_family = {str(family): {family_key(k): float(v) for k, v in dict(group).items() if _finite(v)}
                             for family, group in dict(value).items()}
            elif _finite(value):
                values[monitor_key(name)] = float(value)
            else:
                missing[monitor_key(name)] = f"stored value {value!r} is not a finite number"
        return cls(values, missing, by_family)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def declared_keys(built: Built[Monitor]) -> tuple[MonitorKey, ...]:
    """The keys a monitor declares; raises TypeError for a plug-in that declares none."""
    keys = getattr(built.plugin, "keys", None)
    if not keys or not all(isinstance(k, MonitorKey) for k in keys):
        raise TypeError(f"monitor '{built.name}' must declare the keys it emits as a class attribute "
                        "`keys: tuple[MonitorKey, ...]` (tether_types)")
    return tuple(keys)


def _family_values(plugin: FamilyMonitor, obs: RoundObservation) -> dict[str, dict[FamilyKey, float]]:
    """A family monitor's per-family values; raises on an undeclared key or a value that is not a
    finite number (the whole monitor then counts as failed: its round-level keys rest on them)."""
    out: dict[str, dict[FamilyKey, float]] = {}
    for family, group in plugin.by_family(obs).items():
        for key, value in group.items():
            if key not in plugin.family_keys:
                raise ValueError(f"returned undeclared family key {key} (declared: {', '.join(plugin.family_keys)})")
            if not _finite(value):
                raise ValueError(f"gave {value!r} for {key} of family {family!r}, not a finite number")
        out[str(family)] = {FamilyKey(k): float(v) for k, v in group.items()}
    return out


def run_monitors(monitors: Iterable[Built[Monitor]], obs: RoundObservation,
                 done: Callable[[], None] = lambda: None) -> Readings:
    """Every monitor on `obs`; one that fails records its keys as could-not-check and the rest go on.
    A family monitor's per-family values are merged into `by_family`; if it fails it adds none. `done` is
    called after each monitor (a progress bar's step)."""
    values: dict[MonitorKey, float] = {}
    missing: dict[MonitorKey, str] = {}
    by_family: dict[str, dict[FamilyKey, float]] = {}
    for built in monitors:
        declared = declared_keys(built)
        _run_one(built, obs, declared, values, missing, by_family)
        done()
    # A key two monitors emit (embedding_available) is could-not-check only if neither gave it.
    return Readings(values, {k: why for k, why in missing.items() if k not in values}, by_family)


def _run_one(built: Built[Monitor], obs: RoundObservation, declared: tuple[MonitorKey, ...],
             values: dict[MonitorKey, float], missing: dict[MonitorKey, str],
             by_family: dict[str, dict[FamilyKey, float]]) -> None:
    """One monitor's values into `values` / `missing` / `by_family`."""
    try:
        out = dict(built.plugin.compute(obs))
        undeclared = sorted(str(k) for k in out if k not in declared)
        if undeclared:
            raise ValueError(f"returned undeclared key(s) {', '.join(undeclared)} (declared: "
                             f"{', '.join(declared)})")
        groups = _family_values(built.plugin, obs) if isinstance(built.plugin, FamilyMonitor) else {}
    except Exception as err:  # a plug-in's failure: recorded per key below, the round goes on
        reason = f"monitor {built.name} failed: {type(err).__name__}: {err}"
        log.warning("%s; its keys are recorded as could not check", reason)
        missing.update(dict.fromkeys(declared, reason))
        return
    for name, value in out.items():
        key = MonitorKey(name)
        if _finite(value):
            values[key] = float(value)
        else:
            missing[key] = f"monitor {built.name} gave {value!r}, not a finite number"
    for family, group in groups.items():
        by_family.setdefault(family, {}).update(group)
