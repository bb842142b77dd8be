"""The meta-controller's rules, in order of precedence (agent/controller.py says why this order).

Each rule reads one decision's working state (`Policy`, agent/rules_state.py), records every check
it makes, fired or not, and returns a decision or None to let the next rule speak. The blind-spot
rule (a family whose preference signal collapsed) lives in agent/rules_blind_spot.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agent.config import ControllerConfig
from agent.rules_blind_spot import blind_spot
from agent.rules_regression import regression
from agent.rules_state import PLATEAU_INTERVENTIONS, Decision, Policy, trailing
from tether_types import Action
from tether_types import MonitorKey as K

Rule = Callable[[Policy], Decision | None]


def _budget(p: Policy) -> Decision | None:
    if p.now.round > p.inp.budget or p.now.pairs is None:
        return p.decision("stop", f"round budget spent ({p.inp.budget} of {p.inp.budget} rounds run)")
    return None


def _invariant_failures(p: Policy) -> Decision | None:
    trained = [r.outcome for r in p.inp.past if r.action == "train"]
    failed = trailing(trained, lambda o: o == "failed_invariants")
    c = p.check("candidates_failing_invariants_in_a_row", failed, ">=", p.cfg.stop.max_invariant_failures,
                "stop.max_invariant_failures")
    if c.fired:
        return p.decision("stop", f"the last {failed} candidates failed invariant checks (stop."
                                  f"max_invariant_failures={p.cfg.stop.max_invariant_failures}): "
                                  "training keeps producing unsafe adapters")
    return None


def _invalid(value: float | None, cfg: ControllerConfig) -> bool:
    """A round's invalid share is above max_invalid_share, or was not measured (fail closed)."""
    return value is None or not math.isfinite(value) or value > cfg.max_invalid_share


def _judge(p: Policy) -> Decision | None:
    sj = p.cfg.switch_judge
    corr = p.check_monitor(K.LENGTH_SCORE_CORR, ">", sj.max_length_score_corr, "switch_judge.max_length_score_corr")
    pos = p.check_monitor(K.POSITION_CONSISTENCY, "<", sj.min_position_consistency,
                          "switch_judge.min_position_consistency")
    invalid_now = p.check_monitor(K.INVALID_SHARE, ">", p.cfg.max_invalid_share, "max_invalid_share")
    same_judge = [r for r in p.inp.past if r.judge == p.now.judge]
    streak = 1 + trailing([_invalid(r.monitors.get(K.INVALID_SHARE), p.cfg) for r in same_judge],
                           bool) if invalid_now.fired else 0
    invalid_run = p.check("invalid_rounds_in_a_row", streak, ">=", sj.invalid_rounds, "switch_judge.invalid_rounds")
    fired = [c for c in (corr, pos, invalid_run) if c.fired]
    why = "; ".join(c.text() for c in fired)
    # Fired only because a required signal is missing: nothing shows the judge biased, nothing shows it fine.
    unchecked = all(c.status == "could_not_check" for c in fired)
    judged = f"judge {p.now.judge} {'cannot be shown reliable' if unchecked else 'is unreliable'} ({why})"
    cannot_switch = ""
    if fired and "switch_judge" in p.cfg.interventions:
        blocked = p.blocked("switch_judge")
        if blocked is None and p.inp.next_judge is not None:
            return p.decision("switch_judge", f"{judged}: leaving it for {p.inp.next_judge}; this round is not "
                                              "trained on",
                              switch={"from": p.now.judge, "to": p.inp.next_judge, "why": why})
        cannot_switch = f"cannot be switched ({blocked or 'no other judge left in judge.pool'})"
        if not invalid_now.fired:
            return p.decision("stop", f"{judged} and {cannot_switch}: training on it would optimise its bias; add "
                                      "judges to judge.pool to let the controller switch")
    elif fired:
        # The fixed recipe (interventions off) trains on whatever judge it has; the log still says so.
        p.signals["warnings"] = [f"{judged}; switch_judge is off"]
    if invalid_now.fired:
        # Unconditional: no other rule and no interventions setting trains on a round of invalid judgments.
        share = (f"{invalid_now.value:.0%} of round {p.now.round}'s judgments were invalid (> max_invalid_share="
                 f"{p.cfg.max_invalid_share:.0%})" if invalid_now.status == "fired" else
                 f"round {p.now.round}'s invalid share could not be checked ({invalid_now.reason})")
        also = f" ({judged}{' and ' + cannot_switch if cannot_switch else ''})" if fired else ""
        return p.decision("skip", f"{share}: the judge cannot be trusted on this round, so it is not trained on{also}")
    return None


def _starved(p: Policy) -> Decision | None:
    if p.now.pairs is None:  # _budget stops a round that was not run
        raise RuntimeError(f"round {p.now.round} has no pair count: the budget rule must stop it first")
    c = p.check("pairs", p.now.pairs, "<", p.cfg.min_pairs, "min_pairs")
    if not c.fired:
        return None
    blocked = p.blocked("regenerate_prompts")
    if blocked is None:
        return p.decision("regenerate_prompts", f"round {p.now.round} yielded {p.now.pairs} pair(s) < min_pairs="
                                                f"{p.cfg.min_pairs}: the prompts no longer separate responses, "
                                                "so new ones are written")
    return p.decision("stop", f"round {p.now.round} yielded {p.now.pairs} preference pair(s), fewer than "
                              f"min_pairs={p.cfg.min_pairs}: nothing to train on ({blocked})")


def _plateau_stop(p: Policy) -> Decision | None:
    since, gain_round = p.stall()
    c = p.check("trained_rounds_without_heldout_gain", since, ">=", p.cfg.stop.patience, "stop.patience")
    if not c.fired:
        return None
    tried = [a for a in PLATEAU_INTERVENTIONS if a in p.cfg.interventions]
    if not tried or any(not p.tried_since(a, gain_round) or not p.trained_since(a) for a in tried):
        return None  # interventions off (the fixed recipe runs its budget), or one untried or not yet trained on
    return p.decision("stop", f"held-out {p.cfg.heldout_metric} has not improved by min_gain="
                              f"{p.cfg.add_adversarial.min_gain} for {since} trained rounds (stop.patience="
                              f"{p.cfg.stop.patience}) although {' and '.join(tried)} were tried")


def _soft(p: Policy) -> Decision | None:
    """Interventions the monitors call for, in order; the advisor may pick among the allowed ones."""
    proposals: list[tuple[Action, str, dict[str, Any]]] = []
    amend = p.cfg.propose_amendment
    over = [r.monitors.get(K.OVER_REFUSAL) for r in (*p.inp.past, p.now)]
    streak = trailing([v is not None and v > amend.max_over_refusal for v in over], bool)
    if p.check_monitor(K.OVER_REFUSAL, ">", amend.max_over_refusal, "propose_amendment.max_over_refusal").fired and \
            p.check("over_refusal_rounds_in_a_row", streak, ">=", amend.patience,
                    "propose_amendment.patience").fired and p.inp.amendment:
        proposals.append(("propose_amendment", f"the policy refused {p.monitor(K.OVER_REFUSAL) or 0.0:.0%} of "
                          f"requests the constitution deems benign for {streak} rounds: proposing {p.inp.amendment}",
                          {}))
    since, gain_round = p.stall()
    plateau = p.check("trained_rounds_without_heldout_gain", since, ">=", p.cfg.add_adversarial.plateau_rounds,
                      "add_adversarial.plateau_rounds")
    # One plateau intervention at a time: the next waits until a round has trained on the last one.
    if plateau.fired and all(p.trained_since(a) for a in PLATEAU_INTERVENTIONS):
        why = (f"held-out {p.cfg.heldout_metric} has not improved by {p.cfg.add_adversarial.min_gain} "
               f"for {since} trained rounds")
        if p.inp.failures > 0 and not p.tried_since("add_adversarial", gain_round):
            proposals.append(("add_adversarial", f"{why}: a red-team curriculum aimed at {p.inp.failures} "
                              "recorded failure(s)", {}))
        elif not p.tried_since("regenerate_prompts", gain_round):
            proposals.append(("regenerate_prompts", f"{why} and the adversarial curriculum was tried or has "
                              "no failures to target: writing fresh prompts", {}))
    rt = p.cfg.regenerate_prompts
    reuse = p.check_monitor(K.PROMPT_REUSE, ">", rt.max_prompt_reuse, "regenerate_prompts.max_prompt_reuse")
    spread = p.check_monitor(K.PROMPT_EMBEDDING_DISPERSION, "<", rt.min_prompt_dispersion,
                             "regenerate_prompts.min_prompt_dispersion")
    drop = p.check("margin_drop", _margin_drop(p, rt.window), ">=", rt.margin_drop, "regenerate_prompts.margin_drop",
                   missing=f"needs {K.MARGIN_MEAN.value} on the last regenerate_prompts.window={rt.window} rounds "
                           "with a positive peak")
    saturated = reuse.fired or spread.fired or (drop.fired and (p.monitor(K.PROMPT_REUSE) or 0.0) > 0.5)
    if saturated:
        why = "; ".join(c.text() for c in (reuse, spread, drop) if c.fired)
        proposals.append(("regenerate_prompts", f"the prompt pool is saturated ({why}): writing new prompts", {}))
    blocked = {a: p.blocked(a) for a, _, _ in proposals}
    allowed = [(a, why, extra) for a, why, extra in proposals if blocked[a] is None]
    held_back = {a: why for a, why in blocked.items() if why is not None}
    if held_back:
        p.signals["held_back"] = held_back
    advised = _advice(p, allowed)
    if advised is not None:
        return advised
    if allowed:
        action, why, extra = allowed[0]
        return p.decision(action, why, **extra)
    return None


def _margin_drop(p: Policy, window: int) -> float | None:
    """Fall of the pair margin from its peak over the last `window` rounds, as a share of the peak."""
    margins = [r.monitors.get(K.MARGIN_MEAN) for r in (*p.inp.past, p.now)][-window:]
    values = [m for m in margins if m is not None]
    if len(values) < window or max(values) <= 0:
        return None
    return (max(values) - values[-1]) / max(values)


def _advice(p: Policy, allowed: list[tuple[Action, str, dict[str, Any]]]) -> Decision | None:
    """Take the advisor's action when the rules allow it this round; otherwise log the overrule."""
    advice = p.inp.advice
    if advice is None:
        return None
    permitted: list[Action] = ["train", *[a for a, _, _ in allowed]]
    for a in ("add_adversarial", "regenerate_prompts", "propose_amendment"):
        if a not in permitted and p.blocked(a) is None and _precondition(p, a):
            permitted.append(a)
    p.signals["advice"] = {"action": advice.action, "reason": advice.reason, "source": advice.source,
                           "permitted": permitted}
    if advice.action in permitted:
        return p.decision(advice.action, f"{advice.source} advised {advice.action}: {advice.reason} "  # type: ignore[arg-type]
                                         f"(permitted this round: {', '.join(permitted)})")
    p.signals["advice"]["overruled"] = (f"{advice.action} is not permitted this round" if advice.action
                                        else advice.reason)
    return None


def _precondition(p: Policy, action: Action) -> bool:
    """Whether an intervention the monitors did not call for would have anything to work on."""
    if action == "add_adversarial":
        return p.inp.failures > 0 and p.trained_since("add_adversarial")
    if action == "propose_amendment":
        return p.inp.amendment is not None
    return True


# Safety first: the budget, failing invariants, an unreliable judge, too few pairs, a family whose
# preference signal collapsed, a held-out regression, a plateau that outlived its interventions, then the soft triggers.
RULES: tuple[Rule, ...] = (_budget, _invariant_failures, _judge, _starved, blind_spot, regression, _plateau_stop,
                           _soft)
