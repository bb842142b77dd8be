"""What the benchmark scripts share: a fresh workspace, and a reviewer thread at the gate."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from agent.config import default_config_yaml
from agent.workspace import Workspace
from guardrails import gate
from guardrails.constitution import default_constitution_yaml
from memory import Store


def fresh_workspace(home: Path | None) -> Workspace:
    ws = Workspace(home or Path(tempfile.mkdtemp(prefix="tether-bench-")))
    ws.home.mkdir(parents=True, exist_ok=True)
    ws.config_path.write_text(default_config_yaml())
    ws.constitution_path.write_text(default_constitution_yaml())
    return ws


def _approve_checkpoints(store: Store, stop: threading.Event) -> None:
    while not stop.is_set():
        for approval in store.approvals(status="pending"):
            if approval.kind == "checkpoint":  # constitution changes are left to a human
                gate.decide(store, approval.id, "approve", "bench", "benchmark approver")
        time.sleep(0.05)


def start_reviewer(ws: Workspace) -> threading.Event:
    """Approve every candidate as it reaches the gate, as a human would from another shell; set the
    returned event to stop."""
    stop = threading.Event()
    threading.Thread(target=_approve_checkpoints, args=(Store(ws.db_path), stop), daemon=True).start()
    return stop
