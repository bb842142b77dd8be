"""The regression trigger: a policy getting worse while it learns what its judge rewards (its rule is
order 60, after the blind-spot rule).

Over-optimising a proxy reward raises the proxy while the true objective falls (Gao et al. 2023,
"Scaling Laws for Reward Model Overoptimization", arXiv:2210.10760). In a self-improvement loop it
shows two ways, each checked here:

- drift: the base model finds the policy's samples less and less natural (`base_logp_mean`, the
  drift monitor, fallen `regression.max_base_logp_drop` nats per token below the run's first round,
  whose samples the base model wrote). It needs no verifier and shows before the held-out score falls:
  on the tiny world the `rules` judge scores fluent-looking fragments like good answers, DPO on them
  raises their likelihood, and the base model's log-prob of the samples falls from -0.7 to -1.5 by
  round 4;
- regression: the held-out score of the active policy (controller.heldout_metric, on the validation
  split: the test split is only reported, agent/run/splits.py) fell at least `regression.max_drop` below
  the run's best.

Either one, once the pair strategy in use has trained for `regression.patience` evaluated rounds, moves
the run to the next strategy of pairs.pool (`switch_pairs`): e.g. `regularized`, which lets the base
model's likelihood settle the judge's ties, or `rpo`, which adds the chosen responses' NLL to the
loss. This round is not trained on. With nothing to switch to, the log warns.
"""

from __future__ import annotations

from pydantic import Field

from agent.controller.vocabulary import Check, Decision, Policy, Rule
from agent.interventions.registry import TRIGGERS
from agent.interventions.spec import Trigger
from agent.sections.base import MAX_ROUNDS, _Section
from tether_types import MonitorKey as K


class RegressionConfig(_Section):
    """Over-optimisation: the policy's samples drifted from what the base model finds natural, or its
    held-out score fell below the run's best, while it trained on its judge's pairs. The controller moves
    to the next pair strategy of pairs.pool (switch_pairs; e.g. regularized)."""

    max_base_logp_drop: float = Field(
        0.5, gt=0.0, le=100.0,
        description="The base model's mean log-prob per token of the round's samples at least this far (nats) "
        "below the run's first round (drift monitor; silent with the vllm backend).",
    )
    max_drop: float = Field(
        0.04, gt=0.0, le=1.0,
        description="The held-out score of the active policy at least this far below the run's best.",
    )
    patience: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Evaluated rounds a pair strategy trains before a regression may move the run past it.",
    )


def _evaluated_since_switch(p: Policy) -> int:
    """Held-out evaluations since the pair strategy in use came in (the whole run when it never switched)."""
    last = max((r.round for r in p.inp.past if r.action == "switch_pairs"), default=0)
    return sum(1 for round_no, _ in p.inp.heldout if round_no > last)


def _drift(p: Policy) -> tuple[Check, str] | None:
    """base_logp_mean now against the run's first round that has it."""
    first = next(((r.round, r.monitors[K.BASE_LOGP_MEAN]) for r in p.inp.past if K.BASE_LOGP_MEAN in r.monitors),
                 None)
    now = p.monitor(K.BASE_LOGP_MEAN)
    if first is None or now is None:
        return None
    c = p.check("base_logp_drop", first[1] - now, ">=", REGRESSION.settings(p.cfg).max_base_logp_drop,
                "regression.max_base_logp_drop")
    return c, (f"the base model's log-prob of the policy's samples fell to {now:.2f} per token, {first[1] - now:.2f} "
               f"below round {first[0]}'s {first[1]:.2f}")


def _heldout(p: Policy) -> tuple[Check, str] | None:
    if len(p.inp.heldout) < 2:
        return None
    best_round, best = max(p.inp.heldout, key=lambda rs: (rs[1], -rs[0]))
    last_round, last = p.inp.heldout[-1]
    c = p.check("heldout_drop_from_best", best - last, ">=", REGRESSION.settings(p.cfg).max_drop, "regression.max_drop")
    return c, (f"held-out {p.cfg.heldout_metric} of the active policy fell to {last:.3f} after round {last_round}, "
               f"{best - last:.3f} below the run's best {best:.3f} (round {best_round})")


def _regression(p: Policy) -> Decision | None:
    found = [(c, why) for c, why in filter(None, (_drift(p), _heldout(p))) if c.fired]
    if not found:
        return None
    trained = _evaluated_since_switch(p)
    if not p.check("evaluated_rounds_on_pair_strategy", trained, ">=", REGRESSION.settings(p.cfg).patience,
                   "regression.patience").fired:
        return None
    fell = "; ".join(why for _, why in found)
    blocked = p.blocked("switch_pairs")
    if blocked is None and p.inp.next_pairs is not None:
        now = p.now.pairs_strategy or "the current strategy"
        return p.decision("switch_pairs", f"{fell}: the policy is over-optimising its judge; building pairs with "
                                          f"{p.inp.next_pairs} instead of {now}; this round is not trained on",
                          pairs_switch={"from": p.now.pairs_strategy, "to": p.inp.next_pairs, "why": fell,
                                        "family": None})
    cannot = blocked or "no other strategy left in pairs.pool"
    p.signals.setdefault("warnings", []).append(
        f"{fell}; nothing to switch to ({cannot}; to let tether react, list switch_pairs in "
        "controller.interventions and a strategy such as {name: regularized} in pairs.pool)")
    return None


REGRESSION: Trigger[RegressionConfig] = Trigger(name="regression", order=70, section=RegressionConfig,
                                                rules=(Rule(60, _regression),))


@TRIGGERS.register("regression")
def spec() -> Trigger[RegressionConfig]:
    """A policy that drifted from the base model or fell below its best moves to the next pair strategy."""
    return REGRESSION
