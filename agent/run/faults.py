"""Fault injection for the kill tests: `TETHER_FAULT=<node>:<before|after>` makes the process SIGKILL
itself inside that graph node, before its first store write or after its last one (before LangGraph
records the node as done). A resumed run without it must lose nothing. `<node>:term` sends the process
SIGTERM after the node's last write from inside a weakref callback, where the handler's `Terminated`
cannot propagate (agent/run/terminate.py): the run must still end there as terminated.

Only the kill tests may kill a run: the fault is honoured only when `TETHER_TEST_FAULTS=1` is set too;
otherwise a set TETHER_FAULT is ignored with a warning. Read once, by the command that starts or resumes
the run, before it writes anything: a malformed value is bad input (CLI exit 2).
"""

from __future__ import annotations

import functools
import os
import signal
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from tether_types import EXIT_USAGE, TetherError

FAULT_ENV = "TETHER_FAULT"
SWITCH_ENV = "TETHER_TEST_FAULTS"
Point = Literal["before", "after", "term"]


class FaultSpecError(TetherError, ValueError):
    """TETHER_FAULT does not name a graph node and a point; nothing was started."""
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Fault:
    node: str
    point: Point


def from_env(nodes: Collection[str], warn: Callable[[str], None],
             environ: Mapping[str, str] | None = None) -> Fault | None:
    """The fault the environment asks for, checked against the graph's `nodes`: None when none is set, or
    when the test switch is off (then `warn` says it was ignored). Raises FaultSpecError when malformed."""
    env = os.environ if environ is None else environ
    value = env.get(FAULT_ENV, "")
    if not value:
        return None
    node, _, point = value.partition(":")
    if node not in nodes or point not in get_args(Point):
        raise FaultSpecError(f"{FAULT_ENV}={value!r}: expected <node>:before, <node>:after or <node>:term with "
                             f"a node of the graph ({', '.join(sorted(nodes))}); unset it: it is for tether's tests")
    if env.get(SWITCH_ENV) != "1":
        warn(f"warning: {FAULT_ENV}={value} ignored: fault injection kills the run, and only tether's kill tests "
             f"(which also set {SWITCH_ENV}=1) use it")
        return None
    return Fault(node, point)  # type: ignore[arg-type]


class _Collected:
    """An object dropped at once, for its weakref callback."""


def _hit(fault: Fault | None, node: str, point: Point) -> None:
    if fault is None or fault.node != node or fault.point != point:
        return
    if point != "term":
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no atexit: as if the machine went away
        return
    # As a SIGTERM landing while the collector runs a callback (seen mid-run): the handler runs inside it.
    dropped = _Collected()
    ref = weakref.ref(dropped, lambda _ref: os.kill(os.getpid(), signal.SIGTERM))
    del dropped  # `ref` outlives it, so its callback runs here
    del ref


def with_fault_points(node: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with the fault points of `node` around it (a no-op unless the run's fault names it)."""

    @functools.wraps(fn)
    def wrapped(state: Any, runtime: Any) -> Any:
        fault = runtime.context.fault
        _hit(fault, node, "before")
        update = fn(state, runtime)
        _hit(fault, node, "after")
        _hit(fault, node, "term")
        return update

    return wrapped
