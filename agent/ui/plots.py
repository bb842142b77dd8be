"""A run's plots for the run page: `agent.review.report.write_report` into a cache folder of the server.

The folder is keyed by what the plots are drawn from (the run's row, its decisions and the audit head),
so a page shows fresh plots after every round and the same files otherwise. Drawing (matplotlib, on
the first request for a state) is serialised: matplotlib is not thread-safe.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.review.report import write_report
from memory import Run, Store

WARM_RUNS = 3  # the newest runs drawn at start-up
PNG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,80}\.png$")


@dataclass(frozen=True)
class Plots:
    key: str  # the state the plots were drawn from; part of every image URL
    names: tuple[str, ...]  # scores.png first, then monitors-<theme>.png
    error: str | None = None


class PlotCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def warm(self, db_path: Path, runs: int = WARM_RUNS) -> threading.Thread:
        """Draw the newest runs' plots in the background (a few seconds each), so that the first run
        page a reviewer opens is quick; a run that changes since is drawn again when its page is opened."""

        def work() -> None:
            try:
                with Store(db_path, readonly=True) as store:
                    for run in sorted(store.list_runs(), key=lambda r: r.created_at, reverse=True)[:runs]:
                        self.plots(store, run)
            except Exception:  # warming is an optimisation: a page draws (and reports) for itself
                return

        thread = threading.Thread(target=work, name="tether-ui-plots", daemon=True)
        thread.start()
        return thread

    def _folder(self, run_id: str, key: str) -> Path:
        return self.root / hashlib.sha256(run_id.encode()).hexdigest()[:16] / key

    def plots(self, store: Store, run: Run) -> Plots:
        state = [run.id, run.updated_at, run.state, run.round, run.active_checkpoint,
                 len(store.decisions(run.id)), store.audit_head()[0]]
        key = hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest()[:16]
        folder = self._folder(run.id, key)
        with self._lock:
            if not (folder / ".done").is_file():
                shutil.rmtree(folder.parent, ignore_errors=True)  # older states of this run
                tmp = folder.with_name(f"{key}.tmp")
                try:
                    write_report(store, run.id, tmp)
                except Exception as err:  # a plot that cannot be drawn must not take the run page with it
                    shutil.rmtree(tmp, ignore_errors=True)
                    return Plots(key, (), f"the plots could not be drawn: {err}")
                (tmp / ".done").touch()
                tmp.rename(folder)
        names = sorted((p.name for p in folder.glob("*.png")), key=lambda n: (n != "scores.png", n))
        return Plots(key, tuple(names))

    def file(self, run_id: str, key: str, name: str) -> Path | None:
        """The PNG of a drawn state, or None (an unknown or stale key, a name that is not a plot)."""
        if not PNG_NAME.match(name) or not re.fullmatch(r"[0-9a-f]{16}", key):
            return None
        path = self._folder(run_id, key) / name
        return path if path.is_file() else None
