"""Runs the desk drives: `tether run` and `tether resume RUN` started as detached processes of their own, exactly
the commands a person types (the same checks, the same audit entries, the same lock), with their output in the
run's log file (`logs/RUN.log` in the workspace; a new run logs to `logs/start-*.log` until it has an id, and
the file is then renamed to its run's).

Detached: a process of its own session, so stopping the console (Ctrl-C) leaves a run going; the console only
keeps the handle to know when it ended and to stop, on a reviewer's request, the processes it started itself.
The run process holds no key: the reviewer's passphrase is not passed on.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.run.workspace import Workspace
from guardrails.keys import PASSPHRASE_ENV

RUN_LINE = re.compile(r"^run (run-[A-Za-z0-9-]+)$", re.MULTILINE)  # the contract: `tether run` prints "run <ID>"
TAIL_BYTES = 6000
STOP_WAIT_S = 60.0  # how long a stop waits for a run process to record its end after SIGTERM


def log_dir(ws: Workspace) -> Path:
    return ws.home / "logs"


def run_log(ws: Workspace, run_id: str) -> Path:
    return log_dir(ws) / f"{run_id}.log"


def tail(path: Path, size: int = TAIL_BYTES) -> str:
    """The end of a log (whole lines), or "" when there is none yet."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return text if len(text) < size else text.split("\n", 1)[-1]


@dataclass
class Launch:
    """One process this console started."""

    id: str
    command: str  # as a person would type it
    log: Path
    proc: subprocess.Popen[bytes]
    run_id: str | None
    started: float = field(default_factory=time.time)

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll()  # also reaps it: no zombie is left once it ended

    @property
    def alive(self) -> bool:
        return self.exit_code is None


class Launches:
    """The processes this console started, newest first; a new run's id is read from its output."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._items: list[Launch] = []
        self._lock = threading.Lock()

    def _spawn(self, args: list[str], log: Path, run_id: str | None) -> Launch:
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
        env["PYTHONUNBUFFERED"] = "1"  # "run <ID>" reaches the log as it is printed, not at exit
        command = [sys.executable, "-m", "agent.cli", "--home", str(self.ws.home), *args]
        with log.open("ab") as out:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
        launch = Launch(secrets.token_hex(4), "tether " + " ".join(args), log, proc, run_id)
        with self._lock:
            self._items.insert(0, launch)
        return launch

    def resume(self, run_id: str) -> Launch:
        return self._spawn(["resume", run_id], run_log(self.ws, run_id), run_id)

    def start(self, options: list[str]) -> Launch:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return self._spawn(["run", *options], log_dir(self.ws) / f"start-{stamp}-{secrets.token_hex(2)}.log", None)

    def all(self) -> list[Launch]:
        """Every launch, with a new run's id filled in (and its log renamed) once it has printed it."""
        with self._lock:
            for launch in self._items:
                if launch.run_id is None:
                    self._find_run(launch)
            return list(self._items)

    def _find_run(self, launch: Launch) -> None:
        found = RUN_LINE.search(tail(launch.log, 64_000))
        if found is None:
            return
        launch.run_id = found.group(1)
        target = run_log(self.ws, launch.run_id)
        if not target.exists():  # the process keeps writing to the same file under its new name
            launch.log.rename(target)
            launch.log = target

    def driving(self, run_id: str) -> Launch | None:
        """The live process this console started for `run_id`, if any."""
        return next((launch for launch in self.all() if launch.run_id == run_id and launch.alive), None)

    def terminate(self, run_id: str, wait: float = STOP_WAIT_S) -> bool:
        """SIGTERM this console's own process of `run_id` (a run records why it ended and stays resumable:
        agent/run/terminate.py), and wait until it has ended. False if it is still running after `wait`."""
        launch = self.driving(run_id)
        if launch is None:
            return True
        launch.proc.send_signal(signal.SIGTERM)
        try:
            launch.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return False
        return True

