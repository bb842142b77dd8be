"""The regression rule: a policy getting worse on held-out prompts while it learns what its judge rewards.

Over-optimising a proxy reward raises the proxy while the true objective falls (Gao et al. 2023,
"Scaling Laws for Reward Model Overoptimization", arXiv:2210.10760). In a self-improvement loop it
shows as the held-out score of the active policy (controller.heldout_metric) falling below the run's
best after a few rounds, while the judge keeps finding pairs. On the tiny world the policy's answers
drift into fluent-looking fragments the `rules` judge scores like good ones; DPO alone lets the chosen
answers' likelihood fall with the rejected ones' (Pal et al. 2024, arXiv:2402.13228).

When the active policy is at least `regression.max_drop` below the run's best, and the pair strategy in
use has trained for `regression.patience` evaluated rounds, the controller moves to the next strategy
of pairs.pool (`switch_pairs`): e.g. `rpo`, which adds the chosen responses' NLL to the DPO loss (Pang
et al. 2024). This round is not trained on. With nothing to switch to, it trains and warns.
"""

from __future__ import annotations

from agent.rules_state import Decision, Policy


def _evaluated_since_switch(p: Policy) -> int:
    """Held-out evaluations since the pair strategy in use came in (the whole run when it never switched)."""
    last = max((r.round for r in p.inp.past if r.action == "switch_pairs"), default=0)
    return sum(1 for round_no, _ in p.inp.heldout if round_no > last)


def regression(p: Policy) -> Decision | None:
    cfg = p.cfg.regression
    if len(p.inp.heldout) < 2:
        return None
    best_round, best = max(p.inp.heldout, key=lambda rs: (rs[1], -rs[0]))
    last_round, last = p.inp.heldout[-1]
    if not p.check("heldout_drop_from_best", best - last, ">=", cfg.max_drop, "regression.max_drop").fired:
        return None
    trained = _evaluated_since_switch(p)
    if not p.check("evaluated_rounds_on_pair_strategy", trained, ">=", cfg.patience, "regression.patience").fired:
        return None
    fell = (f"held-out {p.cfg.heldout_metric} of the active policy fell to {last:.3f} after round {last_round}, "
            f"{best - last:.3f} below the run's best {best:.3f} (round {best_round})")
    blocked = p.blocked("switch_pairs")
    if blocked is None and p.inp.next_pairs is not None:
        now = p.now.pairs_strategy or "the current strategy"
        return p.decision("switch_pairs", f"{fell}: the policy is over-optimising its judge; building pairs with "
                                          f"{p.inp.next_pairs} instead of {now}; this round is not trained on",
                          pairs_switch={"from": p.now.pairs_strategy, "to": p.inp.next_pairs, "why": fell,
                                        "family": None})
    cannot = blocked or "no other strategy left in pairs.pool"
    p.signals.setdefault("warnings", []).append(f"{fell}; nothing to switch to ({cannot})")
    return None
