"""How many CPU threads torch uses for generation and training in this process (``model.threads``).

torch's default is one intra-op thread per core it sees, whether or not other processes are using
those cores. On a shared CPU that oversubscribes: torch's worker threads wait for one another at
every operator, and a thread that loses its core stalls the rest. On 2 shared cores at a load of
about 6, torch's default thread count made generation about 9x slower than one thread; on an idle
machine two threads were 1.44x faster than one. ``auto`` therefore takes the cores this process may
run on (``os.sched_getaffinity``) minus the work already queued on them (the 1-minute
``os.getloadavg``, scaled to those cores when the process may use only some of the machine's CPUs),
rounded, at least one: an idle 2-core machine gets 2 threads, a busy one gets 1. A user who sets
``OMP_NUM_THREADS`` (the variable torch, OpenMP and MKL read) has already chosen: ``auto`` takes that
number (its first entry; a value that is not a whole number >= 1 is ignored, as OpenMP ignores it).

The trade-off: ``auto`` reads the load once, when :func:`apply_threads` is called (a run's start or
resume), and never changes it mid-run; a machine that becomes busy later keeps the threads chosen
while it was idle (and the other way round). A fixed number ignores the load altogether. Either way
the choice is returned, so a run can record the threads it ran with.

The setting is process-wide: it covers everything torch runs in this process (generation, an
in-process training job, and the build of the tiny world's model, which :func:`scoped_threads` sets
only for the build's length). A training job in another process (``training.launcher`` subprocess or
accelerate) chooses its own.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

ThreadsSetting = int | Literal["auto"]
ChosenBy = Literal["setting", "OMP_NUM_THREADS", "load"]


@dataclass(frozen=True)
class TorchThreads:
    """What :func:`apply_threads` chose and set, and what it chose from."""

    setting: ThreadsSetting  # what was asked: "auto" or a number
    chosen_by: ChosenBy  # a number asked for, the user's OMP_NUM_THREADS (auto), or cores minus load (auto)
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


def omp_num_threads() -> int | None:
    """The thread count the user set in ``OMP_NUM_THREADS`` (its first entry), or None when unset or not a
    whole number >= 1."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) >= 1 else None


def apply_threads(setting: ThreadsSetting) -> TorchThreads:
    """Set torch's intra-op threads (and inter-op threads, where torch still allows it) for this process.

    ``"auto"`` takes the user's ``OMP_NUM_THREADS`` where set, else chooses from the available cores and the
    current load (see the module docstring); a number is used as given. Returns what was chosen and set, for
    the run's log.
    """
    cores = available_cores()
    load = load_on_cores(cores)
    chosen_by: ChosenBy
    if setting == "auto":
        user = omp_num_threads()
        threads, chosen_by = (user, "OMP_NUM_THREADS") if user is not None else (auto_threads(cores, load), "load")
    elif isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        threads, chosen_by = setting, "setting"
    else:
        raise ValueError(f"threads must be 'auto' or a whole number >= 1, got {setting!r}")
    import torch  # on use: the test harness reads cores and load from this module without loading torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass  # torch refuses once inter-op work has started in this process; the value in effect is recorded
    return TorchThreads(setting=setting, chosen_by=chosen_by, threads=torch.get_num_threads(),
                        interop_threads=torch.get_num_interop_threads(), cores=cores,
                        load=None if load is None else round(load, 2))


@contextmanager
def scoped_threads(setting: ThreadsSetting) -> Iterator[TorchThreads]:
    """:func:`apply_threads` for the length of the block, then torch's intra-op threads as they were, so a
    one-off job (the tiny model's build) leaves the caller's setting alone. Inter-op threads stay: torch
    allows setting them only once."""
    import torch

    before = torch.get_num_threads()
    try:
        yield apply_threads(setting)
    finally:
        torch.set_num_threads(before)
