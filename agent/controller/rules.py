"""The meta-controller's own rules, and the order of every rule (agent/controller/policy.py says why this order).

Each rule reads one decision's working state (`Policy`, agent/controller/vocabulary.py), records every check
it makes, fired or not, and returns a decision or None to let the next rule speak. The interventions and
triggers bring their rules with their place in the order (agent/interventions/); `rules()` merges them:

    10 budget                 the round budget is spent: stop
    20 invariant failures     candidates keep failing invariant checks: stop
    30 judge                  an unreliable judge: switch_judge, skip or stop (switch_judge.py)
    40 too few pairs          regenerate_prompts, else stop
    50 blind spot             a family's preference signal collapsed (blind_spot.py)
    60 regression             the policy over-optimises its judge (regression.py)
    70 plateau stop           a held-out plateau outlived the interventions meant to break it
    80 soft triggers          the proposals of the interventions, in their order (10 propose_amendment,
                              20 the plateau's, 30 regenerate_prompts), and the advisor's pick among them

Every held-out score a rule reads is the validation split's (the decide node gives the policy no other,
agent/run/splits.py): the test split is only reported. The held-out plateau's thresholds are under
controller.add_adversarial (where they have always been);
which interventions break a plateau, in which order, each says for itself (`Plateau`).
"""

from __future__ import annotations

import functools
from typing import Any

from agent.controller.vocabulary import Decision, Policy, Proposal, Proposer, Rule, trailing
from agent.interventions import intervention, interventions, plugin_proposers, plugin_rules
from agent.interventions.add_adversarial import ADD_ADVERSARIAL


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


def _plateaus() -> list[str]:
    """The interventions that break a held-out plateau, in the order they are tried."""
    found = [s for s in interventions() if s.plateau is not None]
    return [s.name for s in sorted(found, key=lambda s: (s.plateau.order if s.plateau else 0, s.order))]


def _plateau_stop(p: Policy) -> Decision | None:
    gain = ADD_ADVERSARIAL.settings(p.cfg).min_gain
    since, gain_round = p.stall(gain)
    c = p.check("trained_rounds_without_heldout_gain", since, ">=", p.cfg.stop.patience, "stop.patience")
    if not c.fired:
        return None
    tried = [a for a in _plateaus() if a in p.cfg.interventions]
    if not tried or any(not p.tried_since(a, gain_round) or not p.trained_since(a) for a in tried):
        return None  # interventions off (the fixed recipe runs its budget), or one untried or not yet trained on
    return p.decision("stop", f"held-out {p.cfg.heldout_metric} has not improved by min_gain={gain} for {since} "
                              f"trained rounds (stop.patience={p.cfg.stop.patience}) although "
                              f"{' and '.join(tried)} were tried")


def _plateau(p: Policy) -> Proposal | None:
    """A held-out plateau: the first plateau intervention that is ready and untried since the last gain.
    One at a time: the next waits until a round has trained on the last one."""
    settings = ADD_ADVERSARIAL.settings(p.cfg)
    since, gain_round = p.stall(settings.min_gain)
    plateau = p.check("trained_rounds_without_heldout_gain", since, ">=", settings.plateau_rounds,
                      "add_adversarial.plateau_rounds")
    names = _plateaus()
    if not plateau.fired or not all(p.trained_since(a) for a in names):
        return None
    why = f"held-out {p.cfg.heldout_metric} has not improved by {settings.min_gain} for {since} trained rounds"
    for name in names:
        spec = intervention(name)
        if spec.plateau is not None and spec.is_ready(p) and not p.tried_since(name, gain_round):
            return name, spec.plateau.why(p, why), {}
    return None


def _soft(p: Policy) -> Decision | None:
    """Interventions the monitors call for, in order; the advisor may pick among the allowed ones."""
    proposals = [found for proposer in proposers() if (found := proposer.propose(p)) is not None]
    blocked = {a: p.blocked(a) for a, _, _ in proposals}
    allowed = [(a, why, extra) for a, why, extra in proposals if blocked[a] is None]
    held_back = {a: why for a, why in blocked.items() if why is not None}
    if held_back:
        p.signals["held_back"] = held_back
    advised = _advice(p, allowed) or _learned(p, allowed)
    if advised is not None:
        return advised
    if allowed:
        action, why, extra = allowed[0]
        return p.decision(action, why, **extra)
    return None


def _permitted(p: Policy, allowed: list[Proposal]) -> list[str]:
    """What a chooser (the advisor, a learned policy) may pick this round: train, the allowed proposals, and the
    advisable interventions that are not held back and have something to work on (the plateau's first)."""
    permitted: list[str] = ["train", *[a for a, _, _ in allowed]]
    extra = sorted((s for s in interventions() if s.advisable),
                   key=lambda s: (s.plateau is None, s.plateau.order if s.plateau else 0, s.order))
    for s in extra:
        if s.name not in permitted and p.blocked(s.name) is None and s.is_ready(p):
            permitted.append(s.name)
    return permitted


def _advice(p: Policy, allowed: list[Proposal]) -> Decision | None:
    """Take the advisor's action when the rules allow it this round; otherwise log the overrule."""
    advice = p.inp.advice
    if advice is None:
        return None
    permitted = _permitted(p, allowed)
    p.signals["advice"] = {"action": advice.action, "reason": advice.reason, "source": advice.source,
                           "permitted": permitted}
    if advice.action in permitted:
        return p.decision(advice.action, f"{advice.source} advised {advice.action}: {advice.reason} "
                                         f"(permitted this round: {', '.join(permitted)})")
    p.signals["advice"]["overruled"] = (f"{advice.action} is not permitted this round" if advice.action
                                        else advice.reason)
    return None


def _learned(p: Policy, allowed: list[Proposal]) -> Decision | None:
    """A learned policy's pick among the permitted actions, logged with its version, the value it predicted per
    permitted action and whether it explored. A pick outside them is never taken (fail closed)."""
    learner = p.inp.learner
    if learner is None:
        return None
    permitted = _permitted(p, allowed)
    rules_choice = allowed[0][0] if allowed else "train"
    choice = learner.choose(p.signals, p.inp.heldout, permitted, p.now.round, rules_choice)
    p.signals["learned"] = {"version": choice.version, "predicted": dict(choice.predicted), "sd": dict(choice.sd),
                            "explored": choice.explored, "permitted": permitted, "rules_choice": rules_choice,
                            "action": choice.action}
    if choice.action is None or choice.action not in permitted:
        p.signals["learned"]["overruled"] = ("no permitted action has a value fitted on controller.learned."
                                             "min_decisions decisions" if choice.action is None
                                             else f"{choice.action} is not permitted this round")
        return None
    how = ("explored: a uniform pick" if choice.explored
           else "the rules' pick, kept: no trusted action is predicted above it with confidence"
           if choice.action == rules_choice else "the surest predicted gain in validation held-out change")
    value = choice.predicted.get(choice.action)
    said = f" ({value:+.4f})" if value is not None else ""
    why = (f"learned policy {choice.version[:12]} chose {choice.action}{said}, {how} among the permitted "
           f"{', '.join(permitted)}; the rules would have chosen {rules_choice}")
    extra = next((e for a, _, e in allowed if a == choice.action), {})
    return p.decision(choice.action, why, **extra)


CORE_RULES = (Rule(10, _budget), Rule(20, _invariant_failures), Rule(40, _starved), Rule(70, _plateau_stop),
              Rule(80, _soft))
CORE_PROPOSERS = (Proposer(20, _plateau),)


def _in_order(items: tuple[Any, ...], what: str) -> tuple[Any, ...]:
    orders = [i.order for i in items]
    twice = sorted({o for o in orders if orders.count(o) > 1})
    if twice:
        raise ValueError(f"two {what} share the place(s) {twice} in the controller's order: give each its own")
    return tuple(sorted(items, key=lambda i: i.order))


@functools.cache
def rules() -> tuple[Rule, ...]:
    """Every rule, in order: the controller's own and the plug-ins' (built once: the registries are frozen)."""
    return _in_order((*CORE_RULES, *plugin_rules()), "rules")


@functools.cache
def proposers() -> tuple[Proposer, ...]:
    """Every soft trigger, in order."""
    return _in_order((*CORE_PROPOSERS, *plugin_proposers()), "soft triggers")
