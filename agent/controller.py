"""The meta-controller policy: a pure function from what the monitors saw to an action.

No I/O here: the `decide` node gathers the inputs (this round's monitors, earlier rounds with their
actions and outcomes, the held-out curve) and writes the decision log. Every threshold the policy
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
  4. stop on a plateau that outlived the interventions meant to break it (with them off, the
     fixed recipe runs its whole budget).
  5. soft triggers: propose_amendment (over-refusal), add_adversarial then regenerate_prompts
     (held-out plateau), regenerate_prompts (prompt saturation).
  6. an optional LLM advisor may choose among the actions allowed this round (never over 1-4).
  7. train.

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agent.config import INTERVENTIONS, ControllerConfig
from agent.state import Action
from tools.monitors.keys import SAFETY_KEYS, CheckStatus
from tools.monitors.keys import MonitorKey as K

PLATEAU_INTERVENTIONS: tuple[Action, ...] = ("add_adversarial", "regenerate_prompts")


@dataclass(frozen=True)
class RoundSignals:
    """One round as the controller sees it."""

    round: int
    pairs: int | None  # None when the round was not run (budget spent)
    monitors: Mapping[K, float] = field(default_factory=dict)
    could_not_check: Mapping[K, str] = field(default_factory=dict)  # key -> why its monitor failed
    judge: str = ""  # label of the judge that judged it
    action: str | None = None  # what was decided for it (None: the round being decided)
    outcome: str | None = None  # approved | rejected | failed_invariants | failed_checks | skipped | ...


@dataclass(frozen=True)
class Advice:
    """An LLM advisor's proposal; the policy validates it."""

    action: str
    reason: str
    source: str = "advisor"


@dataclass(frozen=True)
class ControllerInput:
    now: RoundSignals
    budget: int
    past: tuple[RoundSignals, ...] = ()  # earlier rounds, oldest first
    # (round, held-out score of the active policy after that round); round 0 = before any training.
    heldout: tuple[tuple[int, float], ...] = ()
    next_judge: str | None = None  # the next judge in the pool; None = none left
    failures: int = 0  # recorded failures an adversarial curriculum could target
    amendment: str | None = None  # what propose_amendment would draft now; None = nothing to draft
    advice: Advice | None = None


Op = Literal[">", "<", ">=", "<="]


@dataclass(frozen=True)
class Check:
    signal: str
    value: float | None
    op: Op
    threshold: float
    # Whether the rule acts on it: the threshold was crossed, or a required safety signal could not
    # be checked (status could_not_check; fail closed).
    fired: bool
    setting: str = ""  # the controller config key holding the threshold
    status: CheckStatus = "ok"
    reason: str = ""  # why it could not be checked (status could_not_check only)

    def text(self) -> str:
        if self.status == "could_not_check":
            return f"{self.signal} could not be checked ({self.reason})"
        value = "n/a" if self.value is None else f"{self.value:.3g}"
        return f"{self.signal} {value} {self.op} {self.threshold:.3g}"


@dataclass(frozen=True)
class Decision:
    action: Action
    rationale: str
    signals: dict[str, Any]
    checks: tuple[Check, ...] = ()

    def log_signals(self) -> dict[str, Any]:
        """What the decision log stores: the signals plus every check against its threshold."""
        return {**self.signals, "checks": [asdict(c) for c in self.checks]}


def _check(signal: str, value: float | None, op: Op, threshold: float, setting: str, *, missing: str = "",
           required: bool = False) -> Check:
    """`signal` against its threshold. A missing (or non-finite) value is could_not_check, with the
    reason `missing`; it counts as fired only when `required`."""
    if value is None or not math.isfinite(value):
        return Check(signal, None, op, threshold, required, setting, "could_not_check", missing or "no value")
    fired = {">": value > threshold, "<": value < threshold, ">=": value >= threshold,
             "<=": value <= threshold}[op]
    return Check(signal, float(value), op, threshold, fired, setting, "fired" if fired else "ok")


class _Policy:
    """One decision's working state: the input, the checks made so far, and the verdict helpers."""

    def __init__(self, inp: ControllerInput, cfg: ControllerConfig) -> None:
        self.inp, self.cfg, self.now = inp, cfg, inp.now
        self.checks: list[Check] = []
        self.signals: dict[str, Any] = {
            "round": inp.now.round, "budget": inp.budget, "pairs": inp.now.pairs, "judge": inp.now.judge,
            **{f"monitor.{k}": v for k, v in inp.now.monitors.items()},
        }
        if inp.now.could_not_check:
            self.signals["could_not_check"] = {str(k): why for k, why in inp.now.could_not_check.items()}
        self.past_actions = [r.action for r in inp.past]
        # A round that would be trained on unless a rule stops it: the safety signals are required.
        self.trainable = inp.now.pairs is not None and inp.now.pairs >= cfg.min_pairs

    def check(self, signal: str, value: float | None, op: Op, threshold: float, setting: str,
              missing: str = "") -> Check:
        """A derived value (not a monitor key) against its threshold; never required."""
        c = _check(signal, value, op, threshold, setting, missing=missing)
        self.checks.append(c)
        return c

    def check_monitor(self, key: K, op: Op, threshold: float, setting: str) -> Check:
        """This round's monitor value against its threshold; a missing safety key on a trainable round fires."""
        missing = self.missing(key)
        if key in SAFETY_KEYS and not self.trainable:
            missing += (f"; not required: {self.now.pairs} pair(s) < min_pairs={self.cfg.min_pairs}, the round is "
                        "not trained on")
        c = _check(key.value, self.monitor(key), op, threshold, setting, missing=missing,
                   required=key in SAFETY_KEYS and self.trainable)
        self.checks.append(c)
        return c

    def decision(self, action: Action, rationale: str, **extra: Any) -> Decision:
        return Decision(action, rationale, {**self.signals, **extra}, tuple(self.checks))

    def monitor(self, key: K) -> float | None:
        value = self.now.monitors.get(key)
        return None if value is None else float(value)

    def missing(self, key: K) -> str:
        """Why this round has no value for `key`."""
        return self.now.could_not_check.get(key) or f"{key.value} is not in round {self.now.round}'s monitors"

    # -- hysteresis ------------------------------------------------------------------------

    def blocked(self, action: Action) -> str | None:
        """Why an intervention may not be chosen this round, or None when it may."""
        if action not in self.cfg.interventions:
            return f"{action} is not in controller.interventions"
        if action == "switch_judge":
            return None  # moves forward through a finite pool: it cannot thrash
        trailing_any = _trailing(self.past_actions, lambda a: a in INTERVENTIONS)
        if trailing_any >= self.cfg.max_interventions_in_a_row:
            return (f"{trailing_any} intervention rounds in a row (max_interventions_in_a_row="
                    f"{self.cfg.max_interventions_in_a_row})")
        streak = _trailing(self.past_actions, lambda a: a == action)
        if streak >= self.cfg.max_repeats:
            return f"{action} chosen {streak} rounds in a row (max_repeats={self.cfg.max_repeats})"
        rest = _rounds_since_long_streak(self.past_actions, action, self.cfg.max_repeats)
        if rest is not None and rest <= self.cfg.cooldown:
            return f"{action} is cooling down ({rest} of cooldown={self.cfg.cooldown} rounds since its streak)"
        return None

    # -- held-out curve --------------------------------------------------------------------

    def stall(self) -> tuple[int, int]:
        """(trained rounds since the best held-out score last rose by min_gain, round of that gain)."""
        gain = self.cfg.add_adversarial.min_gain
        best: float | None = None
        best_round, since = 0, 0
        for round_no, score in self.inp.heldout:
            if best is None or score >= best + gain:
                best, best_round, since = score, round_no, 0
            else:
                since += 1
        return since, best_round

    def tried_since(self, action: Action, round_no: int) -> bool:
        return any(r.action == action and r.round > round_no for r in self.inp.past)

    def trained_since(self, action: Action) -> bool:
        """A round trained and was evaluated since `action` was last taken (its effect is visible)."""
        last = max((r.round for r in self.inp.past if r.action == action), default=None)
        return last is None or any(rnd > last for rnd, _ in self.inp.heldout)


def _trailing(actions: Sequence[str | None], pred: Any) -> int:
    n = 0
    for a in reversed(actions):
        if a is None or not pred(a):
            break
        n += 1
    return n


def _rounds_since_long_streak(actions: Sequence[str | None], action: str, length: int) -> int | None:
    """Rounds between now and the end of the latest streak of `action` at least `length` long."""
    run = 0
    for i in range(len(actions) - 1, -1, -1):
        if actions[i] == action:
            run += 1
            if run >= length:
                end = i + run - 1
                return len(actions) - end
        else:
            run = 0
    return None


def decide(inp: ControllerInput, cfg: ControllerConfig) -> Decision:
    p = _Policy(inp, cfg)
    for rule in (_budget, _invariant_failures, _judge, _starved, _plateau_stop, _soft):
        decision = rule(p)
        if decision is not None:
            return decision
    why = "no intervention is called for" if cfg.interventions else "interventions are off (the fixed recipe)"
    return p.decision("train", f"round {p.now.round} yielded {p.now.pairs} pair(s) >= min_pairs={cfg.min_pairs} "
                               f"and {why}")


def _budget(p: _Policy) -> Decision | None:
    if p.now.round > p.inp.budget or p.now.pairs is None:
        return p.decision("stop", f"round budget spent ({p.inp.budget} of {p.inp.budget} rounds run)")
    return None


def _invariant_failures(p: _Policy) -> Decision | None:
    trained = [r.outcome for r in p.inp.past if r.action == "train"]
    failed = _trailing(trained, lambda o: o == "failed_invariants")
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


def _judge(p: _Policy) -> Decision | None:
    sj = p.cfg.switch_judge
    corr = p.check_monitor(K.LENGTH_SCORE_CORR, ">", sj.max_length_score_corr, "switch_judge.max_length_score_corr")
    pos = p.check_monitor(K.POSITION_CONSISTENCY, "<", sj.min_position_consistency,
                          "switch_judge.min_position_consistency")
    invalid_now = p.check_monitor(K.INVALID_SHARE, ">", p.cfg.max_invalid_share, "max_invalid_share")
    same_judge = [r for r in p.inp.past if r.judge == p.now.judge]
    streak = 1 + _trailing([_invalid(r.monitors.get(K.INVALID_SHARE), p.cfg) for r in same_judge],
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


def _starved(p: _Policy) -> Decision | None:
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


def _plateau_stop(p: _Policy) -> Decision | None:
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


def _soft(p: _Policy) -> Decision | None:
    """Interventions the monitors call for, in order; the advisor may pick among the allowed ones."""
    proposals: list[tuple[Action, str, dict[str, Any]]] = []
    amend = p.cfg.propose_amendment
    over = [r.monitors.get(K.OVER_REFUSAL) for r in (*p.inp.past, p.now)]
    streak = _trailing([v is not None and v > amend.max_over_refusal for v in over], bool)
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


def _margin_drop(p: _Policy, window: int) -> float | None:
    """Fall of the pair margin from its peak over the last `window` rounds, as a share of the peak."""
    margins = [r.monitors.get(K.MARGIN_MEAN) for r in (*p.inp.past, p.now)][-window:]
    values = [m for m in margins if m is not None]
    if len(values) < window or max(values) <= 0:
        return None
    return (max(values) - values[-1]) / max(values)


def _advice(p: _Policy, allowed: list[tuple[Action, str, dict[str, Any]]]) -> Decision | None:
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


def _precondition(p: _Policy, action: Action) -> bool:
    """Whether an intervention the monitors did not call for would have anything to work on."""
    if action == "add_adversarial":
        return p.inp.failures > 0 and p.trained_since("add_adversarial")
    if action == "propose_amendment":
        return p.inp.amendment is not None
    return True
