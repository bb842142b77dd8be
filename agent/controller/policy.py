"""The meta-controller policy: a pure function from what the monitors saw to an action.

No I/O here: the `decide` node gathers the inputs (this round's monitors, earlier rounds with their
actions and outcomes, the held-out curve of the validation split: never the test split, which is only
reported, agent/run/splits.py) and writes the decision log. Every threshold the policy
reads is evaluated as a `Check`, fired or not, so the log shows the signals against their thresholds.

Order of precedence, safety first:
  1. stop: the round budget is spent, or candidates keep failing invariants.
  2. the judge is unreliable (pays for length, flips with the order, keeps emitting invalid
     verdicts): switch_judge to the next judge of the pool; skip a round of invalid verdicts; stop
     when no judge is left (training on a judge known to be biased is what tether prevents).
     With switch_judge off (the fixed recipe) the round trains and the log carries a warning, except
     that a round whose invalid share is above max_invalid_share is skipped whatever else fires and
     whatever interventions are configured.
  3. too few pairs: regenerate_prompts if allowed, else stop.
  4. a blind spot: a prompt family whose preference signal collapsed (its judge scores tie, spread
     too little, its jury contradicts itself, or its pair margin collapsed) for blind_spot.patience
     rounds: switch_judge to the next judge of the pool (one that may verify the family), else
     switch_pairs to the next pair strategy, instead of training on noise; with neither left the
     round trains with a warning (agent/interventions/blind_spot.py).
  5. stop on a plateau that outlived the interventions meant to break it (with them off, the
     fixed recipe runs its whole budget).
  6. soft triggers: propose_amendment (over-refusal), add_adversarial then regenerate_prompts
     (held-out plateau), regenerate_prompts (prompt saturation).
  7. an optional LLM advisor may choose among the actions allowed this round (never over 1-5).
  8. train.

The controller's own rules are in agent/controller/rules.py, which puts every rule in this order (`rules()`); each
intervention's and trigger's own are in its module (agent/interventions/); the vocabulary (RoundSignals,
ControllerInput, Check, Decision) and one decision's working state in agent/controller/vocabulary.py.

Missing signals fail closed. A monitor value that is absent (its monitor failed, or it could not be
computed this round) is checked as status "could_not_check", never as "ok". The judge-reliability
signals (`SAFETY_KEYS`: length_score_corr, position_consistency, invalid_share) are *required* on a
round that would otherwise be trained on, i.e. one with pairs >= min_pairs: there a missing one
counts as fired (switch_judge / skip / stop as above; a missing invalid_share always skips). On a
round with pairs < min_pairs nothing is trained anyway (rule 3 applies), so a missing safety signal
is logged as could-not-check without firing: position_consistency, for one, is undefined without
pairs. A missing non-safety signal never fires, but is still logged as could-not-check. A past round
whose invalid_share is missing counts as an invalid round for the switch_judge streak.
"""

from __future__ import annotations

from agent.controller.rules import rules
from agent.controller.vocabulary import (
    Advice,
    Check,
    ControllerInput,
    Decision,
    Op,
    Policy,
    RoundSignals,
)
from agent.interventions import roster
from agent.sections.controller import ControllerSettings

__all__ = ["Advice", "Check", "ControllerInput", "Decision", "Op", "RoundSignals", "decide"]


def decide(inp: ControllerInput, cfg: ControllerSettings) -> Decision:
    """The action for `inp.now`: the first rule that decides, else train. Pure: no I/O."""
    p = Policy(inp, cfg, roster())
    for rule in rules():
        decision = rule.decide(p)
        if decision is not None:
            return decision
    if not cfg.interventions:
        why = "interventions are off (the fixed recipe)"
    elif p.notes:
        why = "no intervention acts: " + "; ".join(p.notes)
    else:
        why = "no intervention is called for"
    return p.decision("train", f"round {p.now.round} yielded {p.now.pairs} pair(s) >= min_pairs={cfg.min_pairs} "
                               f"and {why}")
