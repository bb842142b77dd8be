"""One process drives a run at a time: an advisory file lock per run (no heavy imports, so `status`
and `stop` can ask without loading a model)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from agent.run.workspace import Workspace
from tether_types import EXIT_USAGE, TetherError


class RunBusyError(TetherError, RuntimeError):
    """Another process drives this run now (it holds the run's lock); nothing was changed."""

    exit_code = EXIT_USAGE
    hint = "wait until it pauses or ends (`tether status` shows its state), or interrupt that process (Ctrl-C)"


@contextmanager
def run_lock(ws: Workspace, run_id: str) -> Iterator[None]:
    path = ws.lock_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(f"run {run_id} is being driven by another process") from None
        fh.truncate(0)
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_driven(ws: Workspace, run_id: str) -> bool:
    """True while some process holds the run's lock. Opens the lock file read-only, so `status` works
    on a read-only workspace."""
    try:
        fh = ws.lock_path(run_id).open("rb")
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False
