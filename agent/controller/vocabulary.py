"""The controller's vocabulary and one decision's working state, shared by the rules (agent/controller/rules.py
and each intervention's and trigger's own, agent/interventions/) and the policy (agent/controller/policy.py).
Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from agent.sections.controller import ControllerSettings
from tether_types import SAFETY_KEYS, Action, CheckStatus
from tether_types import FamilyKey as F
from tether_types import MonitorKey as K

KEPT_REASONS = 5


@dataclass(frozen=True)
class InvalidJudgments:
    """Why a round's judgments were invalid: how many of how many, and the commonest reasons with their
    counts, so a skipped round says "150 of 150 judgments invalid: judge call failed: ... (150×)" rather
    than only that they were."""

    count: int
    of: int
    # (reason, how many), commonest first; at most KEPT_REASONS of them (a parser's reasons quote the answer,
    # so a model that ignores the format could give each judgment its own)
    reasons: tuple[tuple[str, int], ...] = ()

    def text(self, reasons: int = 3) -> str:
        shown = self.reasons[:reasons]
        why = "; ".join(f"{r} ({n}×)" for r, n in shown)
        rest = self.count - sum(n for _, n in shown)
        why += f"; {rest} for other reasons" if why and rest > 0 else ""
        return f"{self.count} of {self.of} judgments invalid" + (f": {why}" if why else "")

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "of": self.of, "reasons": [[r, n] for r, n in self.reasons]}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> InvalidJudgments:
        return InvalidJudgments(int(data["count"]), int(data["of"]),
                                tuple((str(r), int(n)) for r, n in data.get("reasons") or ()))


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
    # Per prompt family: {family: {family key: value}} (the round's `_by_family` monitors; absent: not measured).
    by_family: Mapping[str, Mapping[F, float]] = field(default_factory=dict)
    pairs_strategy: str = ""  # label of the pair strategy that built its pairs
    invalid: InvalidJudgments | None = None  # its invalid judgments and why (the round being decided only)


@dataclass(frozen=True)
class Advice:
    """An LLM advisor's proposal; the policy validates it."""

    action: str
    reason: str
    source: str = "advisor"


@dataclass(frozen=True)
class LearnedChoice:
    """A learned policy's pick among the permitted actions (agent/controller/learned.py): the action (None: it
    predicts no value for any of them, so the rules' choice stands), the value it predicted for each permitted
    action (None: no fitted model for it), whether it explored, its version (the policy file's sha256) and the
    standard deviation of each predicted value."""

    action: str | None
    predicted: Mapping[str, float | None]
    explored: bool
    version: str
    sd: Mapping[str, float | None]


class Chooser(Protocol):
    """What the soft rule asks a learned policy: pick one of `permitted` for this round, from the decision's
    signals and the validation held-out curve."""

    def choose(self, signals: Mapping[str, Any], heldout: Sequence[tuple[int, float]], permitted: Sequence[str],
               round_no: int, baseline: str) -> LearnedChoice: ...


@dataclass(frozen=True)
class ControllerInput:
    now: RoundSignals
    budget: int
    past: tuple[RoundSignals, ...] = ()  # earlier rounds, oldest first
    # (round, held-out score of the active policy after that round); round 0 = before any training. The
    # validation split's (agent/run/splits.py): the test split is reported, never decided on.
    heldout: tuple[tuple[int, float], ...] = ()
    next_judge: str | None = None  # the next judge in the pool; None = none left
    next_pairs: str | None = None  # the next pair strategy of pairs.pool; None = none left
    failures: int = 0  # recorded failures an adversarial curriculum could target
    amendment: str | None = None  # what propose_amendment would draft now; None = nothing to draft
    amendment_held: str = ""  # why there is nothing to draft (a proposal pending, already proposed, ...)
    # The round from which the run's constitution in force applies: 1 = since the run began, later = the round
    # that adopted an approved amendment (agent/run/nodes/round.py).
    constitution_from: int = 1
    advice: Advice | None = None
    learner: Chooser | None = None  # controller.policy: learned: the adopted policy, chooser within the rules


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


def make_check(signal: str, value: float | None, op: Op, threshold: float, setting: str, *, missing: str = "",
           required: bool = False) -> Check:
    """`signal` against its threshold. A missing (or non-finite) value is could_not_check, with the
    reason `missing`; it counts as fired only when `required`."""
    if value is None or not math.isfinite(value):
        return Check(signal, None, op, threshold, required, setting, "could_not_check", missing or "no value")
    fired = {">": value > threshold, "<": value < threshold, ">=": value >= threshold,
             "<=": value <= threshold}[op]
    return Check(signal, float(value), op, threshold, fired, setting, "fired" if fired else "ok")


@dataclass(frozen=True)
class Roster:
    """What the rules know of the registered interventions (agent/interventions builds it from the registry)."""

    interventions: frozenset[str]  # every registered intervention
    # Those that move forward through a finite pool (judge.pool, pairs.pool): no repeat limit or cooldown.
    forward_only: frozenset[str] = frozenset()


class Policy:
    """One decision's working state: the input, the checks made so far, and the verdict helpers."""

    def __init__(self, inp: ControllerInput, cfg: ControllerSettings, roster: Roster) -> None:
        self.inp, self.cfg, self.now, self.roster = inp, cfg, inp.now, roster
        self.checks: list[Check] = []
        # Why a rule whose checks fired did not act (e.g. its proposal is already pending): said in the
        # rationale, so a FIRED check never stands beside "no intervention is called for" unexplained.
        self.notes: list[str] = []
        self.signals: dict[str, Any] = {
            "round": inp.now.round, "budget": inp.budget, "pairs": inp.now.pairs, "judge": inp.now.judge,
            **{f"monitor.{k}": v for k, v in inp.now.monitors.items()},
        }
        if inp.now.pairs_strategy:
            self.signals["pairs_strategy"] = inp.now.pairs_strategy
        if inp.now.could_not_check:
            self.signals["could_not_check"] = {str(k): why for k, why in inp.now.could_not_check.items()}
        if inp.now.invalid is not None and inp.now.invalid.count:
            self.signals["invalid_judgments"] = inp.now.invalid.to_json()  # every decision on it says why
        self.past_actions = [r.action for r in inp.past]
        # A round that would be trained on unless a rule stops it: the safety signals are required.
        self.trainable = inp.now.pairs is not None and inp.now.pairs >= cfg.min_pairs

    def check(self, signal: str, value: float | None, op: Op, threshold: float, setting: str,
              missing: str = "") -> Check:
        """A derived value (not a monitor key) against its threshold; never required."""
        c = make_check(signal, value, op, threshold, setting, missing=missing)
        self.checks.append(c)
        return c

    def check_monitor(self, key: K, op: Op, threshold: float, setting: str) -> Check:
        """This round's monitor value against its threshold; a missing safety key on a trainable round fires."""
        missing = self.missing(key)
        if key in SAFETY_KEYS and not self.trainable:
            missing += (f"; not required: {self.now.pairs} pair(s) < min_pairs={self.cfg.min_pairs}, the round is "
                        "not trained on")
        c = make_check(key.value, self.monitor(key), op, threshold, setting, missing=missing,
                   required=key in SAFETY_KEYS and self.trainable)
        self.checks.append(c)
        return c

    def note(self, why: str) -> None:
        self.notes.append(why)

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
        if action in self.roster.forward_only:
            return None  # moves forward through a finite pool: it cannot thrash
        trailing_any = trailing(self.past_actions, lambda a: a in self.roster.interventions)
        if trailing_any >= self.cfg.max_interventions_in_a_row:
            return (f"{trailing_any} intervention rounds in a row (max_interventions_in_a_row="
                    f"{self.cfg.max_interventions_in_a_row})")
        streak = trailing(self.past_actions, lambda a: a == action)
        if streak >= self.cfg.max_repeats:
            return f"{action} chosen {streak} rounds in a row (max_repeats={self.cfg.max_repeats})"
        rest = rounds_since_long_streak(self.past_actions, action, self.cfg.max_repeats)
        if rest is not None and rest <= self.cfg.cooldown:
            return f"{action} is cooling down ({rest} of cooldown={self.cfg.cooldown} rounds since its streak)"
        return None

    # -- held-out curve --------------------------------------------------------------------

    def stall(self, gain: float) -> tuple[int, int]:
        """(trained rounds since the best held-out score last rose by `gain`, round of that gain)."""
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


def trailing(actions: Sequence[str | None], pred: Any) -> int:
    n = 0
    for a in reversed(actions):
        if a is None or not pred(a):
            break
        n += 1
    return n


def rounds_since_long_streak(actions: Sequence[str | None], action: str, length: int) -> int | None:
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


# -- the rules' plug-in shapes: an intervention or a trigger brings its own (agent/interventions/) -------

# One of the controller's proposals to the soft rule: (action, why, extra signals).
Proposal = tuple[Action, str, dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    """A rule of the controller: a decision, or None to let the next rule speak. `order` is its place in the
    order of precedence (lower first; agent/controller/rules.py lists every rule's number)."""

    order: int
    decide: Callable[[Policy], Decision | None]


@dataclass(frozen=True)
class Proposer:
    """A soft trigger: proposes an intervention the monitors call for, or None. The soft rule gathers the
    proposals in `order` (lower first), holds back the blocked ones and takes the first (or the advisor's)."""

    order: int
    propose: Callable[[Policy], Proposal | None]
