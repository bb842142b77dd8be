"""Decision outcomes in the store: the decide node opens one for each decision it logs and measures every open one
of the run again (agent/controller/outcomes.py says what and over which rounds). Runs in the decide node's
transaction, so a decision and its outcome row are written together."""

from __future__ import annotations

import os
import uuid

from agent.controller.outcomes import Decided, WindowRound, measure
from memory import Decision, Store
from tether_types import MonitorKey as K
from tools.monitors.readings import Readings

# This process, for CPU accounting: two CPU marks compare only within one process.
PROCESS = uuid.uuid4().hex


def cpu_seconds() -> float:
    """This process's CPU seconds so far, its own and its finished children's (a training job launched as a
    subprocess counts)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def record(store: Store, decision: Decision, curve: tuple[tuple[int, float], ...], k: int, metric: str) -> None:
    """Open `decision`'s outcome and measure every open outcome of its run with what the store now holds."""
    store.add_outcome(decision, PROCESS, cpu_seconds(), {"k": k, "status": "pending"})
    rows = {o.decision_id: o for o in store.outcomes(decision.run_id)}
    decided = [Decided(d.id, int(d.signals.get("round", d.round)), d.action, rows[d.id].process, rows[d.id].cpu_mark)
               for d in store.decisions(decision.run_id) if d.actor == "controller" and d.id in rows]
    rounds = {r.round: WindowRound(r.n_samples, r.outcome, Readings.from_json(r.monitors).values.get(K.BASE_LOGP_MEAN))
              for r in store.rounds(decision.run_id)}
    ended = decision.action == "stop"
    run = store.get_run(decision.run_id)
    if run is None:
        raise RuntimeError(f"decision {decision.id} names run {decision.run_id!r}, which the store does not hold")
    for i, d in enumerate(decided):
        if rows[d.id].status != "pending":
            continue
        status, outcome = measure(d, decided[i + 1:], rounds, curve, k, metric, run.rounds_budget, ended)
        if status != "pending" or outcome != rows[d.id].outcome:
            store.update_outcome(d.id, status, outcome)
