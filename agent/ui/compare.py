"""The compare page: two runs side by side. Their held-out scores per round overlaid (agent/ui/charts.py), their
rounds in one table, and every setting in which their configs differ, as `tether resume --config` lists a
change (agent.run.lifecycle `config_changes`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.config import TetherConfig
from agent.review.plots import heldout_points
from agent.review.report import gather
from agent.run.lifecycle import config_changes
from agent.ui.charts import compare_chart
from memory import Run, Store
from tether_types import TetherError

METRICS = ("oracle", "judge")


@dataclass
class CompareError(TetherError):
    """A compare page that cannot be drawn: its HTTP status (400 or 404) and what to pick instead."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def _run(store: Store, run_id: str, which: str) -> Run:
    if not run_id:
        raise CompareError(400, f"name the {which} run: /compare?a=RUN_ID&b=RUN_ID (pick two on the Runs page)")
    run = store.get_run(run_id)
    if run is None:
        raise CompareError(404, f"no run '{run_id}' ({which} run; see Runs)")
    return run


def _settings(run: Run) -> dict[str, Any]:
    # Through the model: a run stored before a section existed compares with that section's defaults.
    return TetherConfig.model_validate(run.config).model_dump(mode="json")


def compare(store: Store, first_id: str, second_id: str) -> dict[str, Any]:
    first, second = _run(store, first_id, "first"), _run(store, second_id, "second")
    changes, _ = config_changes(_settings(first), _settings(second))
    differences = []
    for change in changes:  # "key: old -> new"
        key, values = change.split(": ", 1)
        old, new = values.split(" -> ", 1)
        differences.append((key, old, new))
    rounds = {run.id: {r.round: r for r in store.rounds(run.id)} for run in (first, second)}
    numbers = sorted(set(rounds[first.id]) | set(rounds[second.id]))
    data = [gather(store, first.id), gather(store, second.id)]
    unscored = [d.run.id for d in data if not any(heldout_points(d.rows, d.round0, m) != ([], []) for m in METRICS)]
    return {"first": first, "second": second, "differences": differences, "chart": compare_chart(*data),
            "unscored": unscored,
            "rounds": [(n, rounds[first.id].get(n), rounds[second.id].get(n)) for n in numbers]}
