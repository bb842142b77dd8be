"""What a controller decision led to: its measured outcome over a window of k rounds (`controller.outcome_rounds`).
Pure: no I/O (agent/run/outcomes.py reads the store and writes the rows).

A decision on round r owns the rounds r .. r+k-1, cut at the round budget B: near the end of a run a window holds the
rounds left (r .. B), because what an action is worth there is what it does before the run ends (an intervention
on the last round changes nothing a later round trains on). The window is done once the controller has decided a
round past it (the next round, or the stop after the budget), because every node of its rounds (training,
evaluation, the gate) ran before that decision. Over the window:

- heldout_change: the validation split's held-out score (`controller.heldout_metric`) of the policy active after
  round r+k-1, minus the one active before round r: the curve the rules read (agent/run/nodes/decide.py
  `heldout_curve`), never the test split and never a judge score the run trained on;
- invariant_failures: candidates of the window that failed an invariant check;
- drift: base_logp_mean (the base model's log-prob per token of the policy's samples) of the round after the
  window minus round r's: negative = the policy moved away from what the base model finds natural;
- samples: responses sampled in the window's rounds; cpu_seconds: the deciding process's CPU seconds (its own and
  its children's) from this decision to the one after the window, when one process made both.

Nothing unmeasured reads as zero: a measure that cannot be taken is null with its reason in `why`, and the
outcome's status is `pending` (the window is open, or no validation evaluation exists yet), `measured` (the
held-out change is known) or `unmeasured` (a stop, or the run ended first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memory.common import OutcomeStatus

MEASURES = ("heldout_change", "invariant_failures", "drift", "samples", "cpu_seconds")


@dataclass(frozen=True)
class Decided:
    """A controller decision as its outcome needs it."""

    id: int
    round: int  # the round it decided on (the stop after the budget: budget + 1)
    action: str
    process: str
    cpu_mark: float


@dataclass(frozen=True)
class WindowRound:
    """One round of a run as an outcome reads it."""

    n_samples: int | None
    outcome: str | None
    base_logp_mean: float | None


def measure(d: Decided, later: Sequence[Decided], rounds: Mapping[int, WindowRound],
            curve: Sequence[tuple[int, float]], k: int, metric: str, budget: int,
            ended: bool) -> tuple[OutcomeStatus, dict[str, Any]]:
    """(status, outcome) of `d`; `later` are the run's decisions after it, `curve` the validation held-out curve,
    `budget` the run's round budget (the window's last round at most), `ended` whether the run has stopped (an open
    window then never closes)."""
    last = max(d.round, min(d.round + k - 1, budget))
    values: dict[str, Any] = dict.fromkeys(MEASURES)
    why: dict[str, str] = {}
    out = {"k": k, "rounds": [d.round, last], "split": "validation", "metric": metric, **values, "why": why}
    if d.action == "stop":
        why.update(dict.fromkeys(MEASURES, "a stop: no round follows it"))
        return "unmeasured", out
    closer = next((x for x in later if x.round > last), None)
    if closer is None:
        reason = (f"the run ended before round {last} was done" if ended
                  else f"waiting for round {last} to be done")
        why.update(dict.fromkeys(MEASURES, reason))
        return ("unmeasured" if ended else "pending"), out
    window = [rounds.get(n) for n in range(d.round, last + 1)]
    out["invariant_failures"] = sum(1 for w in window if w is not None and w.outcome == "failed_invariants")
    counts = [w.n_samples if w is not None else None for w in window]
    if any(c is None for c in counts):
        why["samples"] = "a round of the window has no sample count"
    else:
        out["samples"] = sum(c for c in counts if c is not None)
    start, after = rounds.get(d.round), rounds.get(last + 1)
    if start is None or after is None or start.base_logp_mean is None or after.base_logp_mean is None:
        why["drift"] = (f"base_logp_mean is not measured on round {d.round} or {last + 1} (no drift monitor, or "
                        "no round after the window)")
    else:
        out["drift"] = after.base_logp_mean - start.base_logp_mean
    if closer.process == d.process:
        out["cpu_seconds"] = round(closer.cpu_mark - d.cpu_mark, 3)
    else:
        why["cpu_seconds"] = "the window spans two processes (the run was resumed), whose CPU clocks differ"
    before = [s for r, s in curve if r < d.round]
    upto = [s for r, s in curve if r <= last]
    if not before or not upto:
        reason = "no validation evaluation in this run" + ("" if ended else " yet")
        why["heldout_change"] = reason
        return ("unmeasured" if ended else "pending"), out
    out["heldout_change"] = upto[-1] - before[-1]
    return "measured", out
