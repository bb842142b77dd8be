"""SIGTERM (a scheduler's stop, `kill`) while a run is driven becomes an exception, so the run records why it
ended and stays resumable, instead of the process ending without a word."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(BaseException):
    """SIGTERM (a scheduler's stop, `kill`) while a run is driven: raised so the run records why it ended
    (a BaseException like KeyboardInterrupt, so nothing on the way catches it as an ordinary error)."""


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While a run is driven from the main thread, SIGTERM raises `Terminated` instead of ending the process
    silently: the run is then recorded failed with the reason and stays resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (the desk drives runs from threads)
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        raise Terminated(f"terminated by {signal.Signals(signum).name} (resumable: `tether resume`)")

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
