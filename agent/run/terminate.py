"""SIGTERM (a scheduler's stop, `kill`) while a run is driven becomes an exception, so the run records why it
ended and stays resumable, instead of the process ending without a word.

The handler raises in whatever frame the main thread is running, and some frames cannot pass an exception
on: a weakref callback or a `__del__` run by the garbage collector (Python prints "Exception ignored in"
and carries on), or a library's `except BaseException` that cleans up and continues. A stop raised there
was lost and the run went on to its gate. So the handler also records the stop, and the runner checks the
record at every node boundary and before it reports an outcome (`Stop.check`): a SIGTERM is honoured at
the latest when the node it arrived in ends.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(BaseException):
    """SIGTERM (a scheduler's stop, `kill`) while a run is driven: raised so the run records why it ended
    (a BaseException like KeyboardInterrupt, so nothing on the way catches it as an ordinary error)."""


class Stop:
    """The SIGTERM a run received, kept so a raise swallowed on the way (see the module) is raised again."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def check(self) -> None:
        """Raise `Terminated` if a SIGTERM arrived, whether or not its first raise got through."""
        if self.reason is not None:
            raise Terminated(self.reason)


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[Stop]:
    """While a run is driven from the main thread, SIGTERM raises `Terminated` instead of ending the process
    silently: the run is then recorded failed with the reason and stays resumable. Yields the `Stop` the
    caller checks at its boundaries."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach the main thread only (the desk drives runs from threads)
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        stop.reason = f"terminated by {signal.Signals(signum).name} (resumable: `tether resume`)"
        raise Terminated(stop.reason)

    def quiet_when_swallowed(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Terminated):  # a swallowed stop is re-raised: no traceback
            previous_hook(unraisable)

    previous_hook = sys.unraisablehook
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    sys.unraisablehook = quiet_when_swallowed
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook
