"""Fault injection for the kill tests: `TETHER_FAULT=<node>:<before|after>` makes the process SIGKILL
itself inside that graph node, before its first store write or after its last one (before LangGraph
records the node as done). Read once by the runner; a resumed run without it must lose nothing.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

FAULT_ENV = "TETHER_FAULT"
Point = Literal["before", "after"]


@dataclass(frozen=True)
class Fault:
    node: str
    point: Point

    @staticmethod
    def from_env(environ: dict[str, str] | None = None) -> Fault | None:
        value = (environ if environ is not None else dict(os.environ)).get(FAULT_ENV, "")
        node, _, point = value.partition(":")
        if not node:
            return None
        if point not in ("before", "after"):
            raise ValueError(f"{FAULT_ENV}={value!r}: expected <node>:before or <node>:after")
        return Fault(node, point)  # type: ignore[arg-type]


def _hit(fault: Fault | None, node: str, point: Point) -> None:
    if fault is not None and fault.node == node and fault.point == point:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no atexit: as if the machine went away


def with_fault_points(node: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with the two kill points of `node` around it (a no-op unless the run's fault names it)."""

    @functools.wraps(fn)
    def wrapped(state: Any, runtime: Any) -> Any:
        fault = runtime.context.fault
        _hit(fault, node, "before")
        update = fn(state, runtime)
        _hit(fault, node, "after")
        return update

    return wrapped
