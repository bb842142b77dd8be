"""The collapse rule (agent/interventions/collapse.py) on scripted self-BLEU curves: samples that converge
(self-BLEU risen above the run's first round for its patience) move to the next pair strategy, else the next
judge; a small rise, a run that started alike, or one round's rise trains; with nothing to switch to it warns."""

from __future__ import annotations

from test_controller import CFG, fired, inp, rising, rnd

from agent.controller.policy import decide

ON = CFG  # switch_pairs is on by default
OFF = CFG.model_copy(update={"interventions": [i for i in CFG.interventions if i != "switch_pairs"]})


def bleu(values: list[float], judge: str = "j0") -> list:
    """Trained rounds 1..n whose samples had self-BLEU `values`."""
    return [rnd(i, "train", "approved", judge=judge, self_bleu=v) for i, v in enumerate(values, start=1)]


def test_converging_samples_move_to_the_next_pair_strategy() -> None:
    d = decide(inp(rnd(4, self_bleu=0.62), past=bleu([0.30, 0.41, 0.55]), heldout=rising(3), next_pairs="diverse",
                   next_judge="calculator"), ON)
    assert d.action == "switch_pairs" and d.signals["pairs_switch"]["to"] == "diverse"
    assert fired(d.checks, "self_bleu_rise") and fired(d.checks, "collapse_rounds_in_a_row")
    assert "rose to 0.62, 0.32 above round 1's 0.30" in d.rationale and "2 round(s) in a row" in d.rationale


def test_without_a_pair_strategy_left_it_switches_the_judge() -> None:
    d = decide(inp(rnd(4, self_bleu=0.62), past=bleu([0.30, 0.41, 0.55]), heldout=rising(3), next_pairs=None,
                   next_judge="calculator"), ON)
    assert d.action == "switch_judge" and d.signals["switch"]["to"] == "calculator"
    d = decide(inp(rnd(4, self_bleu=0.62), past=bleu([0.30, 0.41, 0.55]), heldout=rising(3), next_pairs="diverse",
                   next_judge="calculator"), OFF)  # switch_pairs not listed: the judge
    assert d.action == "switch_judge"


def test_one_round_a_small_rise_or_a_run_alike_from_the_start_trains() -> None:
    one = decide(inp(rnd(4, self_bleu=0.62), past=bleu([0.30, 0.35, 0.40]), heldout=rising(3),
                     next_pairs="diverse"), ON)
    assert one.action == "train" and fired(one.checks, "self_bleu_rise")
    assert not fired(one.checks, "collapse_rounds_in_a_row")
    small = decide(inp(rnd(4, self_bleu=0.45), past=bleu([0.30, 0.45, 0.46]), heldout=rising(3),
                       next_pairs="diverse"), ON)
    assert small.action == "train" and not fired(small.checks, "self_bleu_rise")
    alike = decide(inp(rnd(4, self_bleu=0.9), past=bleu([0.85, 0.88, 0.9]), heldout=rising(3),
                       next_pairs="diverse"), ON)
    assert alike.action == "train" and not fired(alike.checks, "self_bleu_rise")


def test_a_new_judge_starts_its_own_streak() -> None:
    past = [*bleu([0.30, 0.55]), rnd(3, "switch_judge", "judge_switched", self_bleu=0.6),
            *[rnd(4, "train", "approved", judge="j1", self_bleu=0.6)]]
    d = decide(inp(rnd(5, judge="j1", self_bleu=0.62), past=past, heldout=rising(4), next_pairs="diverse"), ON)
    assert d.action == "switch_pairs"  # j1's rounds 4 and 5
    past[-1] = rnd(4, "train", "approved", judge="j1", self_bleu=0.35)
    d = decide(inp(rnd(5, judge="j1", self_bleu=0.62), past=past, heldout=rising(4), next_pairs="diverse"), ON)
    assert d.action == "train" and not fired(d.checks, "collapse_rounds_in_a_row")


def test_with_nothing_to_switch_to_it_trains_and_warns() -> None:
    d = decide(inp(rnd(4, self_bleu=0.62), past=bleu([0.30, 0.41, 0.55]), heldout=rising(3), next_pairs=None,
                   next_judge=None), ON)
    assert d.action == "train"
    assert any("converging" in w and "no other strategy left in pairs.pool" in w and
               "no other judge left in judge.pool" in w for w in d.signals["warnings"])
    fixed = decide(inp(rnd(4, self_bleu=0.62), past=bleu([0.30, 0.41, 0.55]), heldout=rising(3),
                       next_pairs="diverse", next_judge="calculator"), CFG.model_copy(update={"interventions": []}))
    assert fixed.action == "train"


def test_not_measured_is_never_guessed() -> None:
    d = decide(inp(rnd(4), past=bleu([0.30, 0.41, 0.55]), heldout=rising(3), next_pairs="diverse"), ON)
    assert d.action == "train" and not any(c.signal == "self_bleu_rise" for c in d.checks)
