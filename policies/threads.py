"""How many CPU threads torch uses for generation and training in this process (``model.threads``).

torch's default is one intra-op thread per core it sees, whether or not other processes are using
those cores. On a shared CPU that oversubscribes: torch's worker threads wait for one another at
every operator, and a thread that loses its core stalls the rest. On 2 shared cores at a load of
about 6, torch's default thread count made generation about 9x slower than one thread; on an idle
machine two threads were 1.44x faster than one. ``auto`` therefore takes the cores this process may
run on (``os.sched_getaffinity``) minus the work already queued on them (the 1-minute
``os.getloadavg``, scaled to those cores when the process may use only some of the machine's CPUs),
rounded, at least one: an idle 2-core machine gets 2 threads, a busy one gets 1.

The trade-off: ``auto`` reads the load once, when :func:`apply_threads` is called (a run's start or
resume), and never changes it mid-run; a machine that becomes busy later keeps the threads chosen
while it was idle (and the other way round). A fixed number ignores the load altogether. Either way
the choice is returned, so a run can record the threads it ran with.

The setting is process-wide: it covers everything torch runs in this process (generation and an
in-process training job). A training job in another process (``training.launcher`` subprocess or
accelerate) chooses its own.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

ThreadsSetting = int | Literal["auto"]


@dataclass(frozen=True)
class TorchThreads:
    """What :func:`apply_threads` chose and set, and what it chose from."""

    setting: ThreadsSetting  # what was asked: "auto" or a number
    threads: int  # torch intra-op threads now in effect
    interop_threads: int  # torch inter-op threads now in effect (settable only before torch's first parallel work)
    cores: int  # CPUs this process may run on
    load: float | None  # the 1-minute load average on those cores when chosen (None: the platform has none)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_on_cores(cores: int) -> float | None:
    """The 1-minute load average, as the share of it that falls on `cores` of the machine's CPUs."""
    if not hasattr(os, "getloadavg"):
        return None
    total = os.cpu_count() or cores
    return os.getloadavg()[0] * min(cores, total) / total


def auto_threads(cores: int, load: float | None) -> int:
    """Idle cores, rounded: ``cores - load``, at least 1 and at most ``cores``."""
    if load is None:
        return cores
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def apply_threads(setting: ThreadsSetting) -> TorchThreads:
    """Set torch's intra-op threads (and inter-op threads, where torch still allows it) for this process.

    ``"auto"`` chooses from the available cores and the current load (see the module docstring); a
    number is used as given. Returns what was chosen and set, for the run's log.
    """
    cores = available_cores()
    load = load_on_cores(cores)
    if setting == "auto":
        threads = auto_threads(cores, load)
    elif isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        threads = setting
    else:
        raise ValueError(f"threads must be 'auto' or a whole number >= 1, got {setting!r}")
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass  # torch refuses once inter-op work has started in this process; the value in effect is recorded
    return TorchThreads(setting=setting, threads=torch.get_num_threads(),
                        interop_threads=torch.get_num_interop_threads(), cores=cores,
                        load=None if load is None else round(load, 2))
