"""The collapse trigger: the policy's responses to a prompt converge (its rule is order 55: after the blind-spot
rule, before a regression).

Preference training narrows what a policy says, and a judge that rewards agreement or a stock phrase narrows it
faster: the samples of one prompt become near-copies, the pairs built from them stop teaching anything but the
mode, and the judge stays satisfied (diversity loss under iterated preference optimisation: Lanchantin et al.
2025, "Diverse Preference Optimization", arXiv:2501.18101). The `diversity` monitor shows it: self-BLEU among
the samples of a prompt rises. A rise is read against the run's first round that has the value (the base
model's own spread), as drift is, so a world whose answers are short and alike from the start does not fire.

When self_bleu is at least `collapse.max_self_bleu_rise` above that first round for `collapse.patience` rounds
in a row under the same judge and pair strategy, the controller changes how pairs are built instead of
training on the mode again: `switch_pairs` to the next strategy of pairs.pool (e.g. `diverse`, DivPO's pairs:
the most diverse of the high-scoring samples against the least diverse of the low-scoring), else
`switch_judge` to the next judge of judge.pool; each only when it is in controller.interventions and
something is left. With nothing to switch to, the round trains and the decision carries a warning.
"""

from __future__ import annotations

from pydantic import Field

from agent.controller.vocabulary import Check, Decision, Policy, Rule
from agent.interventions.registry import TRIGGERS
from agent.interventions.spec import Trigger
from agent.sections.base import MAX_ROUNDS, _Section
from tether_types import MonitorKey as K


class CollapseConfig(_Section):
    """The samples of a prompt converged (self-BLEU rose above the run's first round): the controller switches to
    the next pair strategy of pairs.pool (switch_pairs; e.g. diverse), else the next judge of judge.pool."""

    max_self_bleu_rise: float = Field(
        0.2, gt=0.0, le=1.0,
        description="Self-BLEU among a prompt's samples (diversity monitor) at least this far above the run's "
        "first round that has it.",
    )
    patience: int = Field(
        2, ge=1, le=MAX_ROUNDS,
        description="Rounds in a row, under the same judge and pair strategy, the rise must hold before the "
        "controller switches.",
    )


def _first(p: Policy) -> tuple[int, float] | None:
    """The run's first round with a self-BLEU value, and that value."""
    return next(((r.round, r.monitors[K.SELF_BLEU]) for r in p.inp.past if K.SELF_BLEU in r.monitors), None)


def _streak(p: Policy, first: float, rise: float) -> int:
    """Rounds in a row, this one included, self-BLEU stood `rise` above `first` under this judge and strategy."""
    n = 1
    for r in reversed(p.inp.past):
        value = r.monitors.get(K.SELF_BLEU)
        if (r.judge != p.now.judge or r.pairs_strategy != p.now.pairs_strategy or value is None
                or value - first < rise):
            break
        n += 1
    return n


def _risen(p: Policy, first: tuple[int, float], now: float) -> tuple[Check, str]:
    c = p.check("self_bleu_rise", now - first[1], ">=", COLLAPSE.settings(p.cfg).max_self_bleu_rise,
                "collapse.max_self_bleu_rise")
    return c, (f"self-BLEU among a prompt's samples rose to {now:.2f}, {now - first[1]:.2f} above round "
               f"{first[0]}'s {first[1]:.2f}")


def _collapse(p: Policy) -> Decision | None:
    first, now = _first(p), p.monitor(K.SELF_BLEU)
    if first is None or now is None:  # not measured: never guessed
        return None
    found = _risen(p, first, now)
    if not found[0].fired:
        return None
    settings = COLLAPSE.settings(p.cfg)
    streak = _streak(p, first[1], settings.max_self_bleu_rise)
    if not p.check("collapse_rounds_in_a_row", streak, ">=", settings.patience, "collapse.patience").fired:
        return None
    why = f"{found[1]} for {streak} round(s) in a row: the responses are converging on the judge's mode"
    cannot: list[str] = []
    blocked = p.blocked("switch_pairs")
    if blocked is None and p.inp.next_pairs is not None:
        return p.decision("switch_pairs", f"{why}; building pairs with {p.inp.next_pairs} instead of "
                                          f"{p.now.pairs_strategy or 'the current strategy'}; this round is not "
                                          "trained on",
                          pairs_switch={"from": p.now.pairs_strategy, "to": p.inp.next_pairs, "why": found[1],
                                        "family": None})
    cannot.append(f"switch_pairs: {blocked or 'no other strategy left in pairs.pool'}")
    blocked = p.blocked("switch_judge")
    if blocked is None and p.inp.next_judge is not None:
        return p.decision("switch_judge", f"{why}; switching to {p.inp.next_judge}, whose scores may not reward "
                                          "the mode; this round is not trained on",
                          switch={"from": p.now.judge, "to": p.inp.next_judge, "why": found[1], "family": None})
    cannot.append(f"switch_judge: {blocked or 'no other judge left in judge.pool'}")
    p.signals.setdefault("warnings", []).append(f"{why}; nothing to switch to ({'; '.join(cannot)}): the round "
                                                "trains on its pairs as they are")
    return None


COLLAPSE: Trigger[CollapseConfig] = Trigger(name="collapse", order=65, section=CollapseConfig,
                                            rules=(Rule(55, _collapse),))


@TRIGGERS.register("collapse")
def spec() -> Trigger[CollapseConfig]:
    """Samples that converged (self-BLEU risen above the run's first round) switch the pair strategy, else the
    judge."""
    return COLLAPSE
