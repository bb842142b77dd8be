"""Pair strategies on hand-made prompt groups: best_worst as the round always built pairs, anchored
rejection from the initial model, DivPO's rare-chosen / common-rejected selection, the reference each
trains against, and their configuration."""

from __future__ import annotations

import pytest

from agent.config import PairsConfig, parse_config
from tools.pairs import PAIR_STRATEGIES, Candidate, PromptGroup
from tools.registry import PluginSettingsError


def group(*scored: tuple[str, float], anchors: tuple[tuple[str, float], ...] = ()) -> PromptGroup:
    cands = tuple(Candidate(i + 1, text, score, i) for i, (text, score) in enumerate(scored))
    anch = tuple(Candidate(100 + i, text, score, i) for i, (text, score) in enumerate(anchors))
    return PromptGroup("p1", "What is 7 + 5?", "arithmetic", cands, anch)


def build(name: str, **settings: object):
    return PAIR_STRATEGIES.build(name, settings).plugin


def test_best_worst_is_the_old_rule_with_its_tie_breaks() -> None:
    bw = build("best_worst")
    choice = bw.select(group(("12.", 1.0), ("The answer is 12.", 1.0), ("13.", 0.2), ("No.", 0.2)), 0.1)
    assert choice is not None
    assert (choice.chosen.response, choice.rejected.response) == ("12.", "No.")  # earliest best, latest worst
    assert choice.margin == pytest.approx(0.8)
    assert bw.select(group(("a", 0.5), ("b", 0.45)), 0.1) is None  # under min_margin
    assert bw.select(group(("same ", 0.9), (" same", 0.1)), 0.1) is None  # identical texts
    assert bw.select(group(("only", 0.9)), 0.1) is None
    assert bw.reference == "base" and not bw.needs_anchors


def test_anchored_rejects_the_initial_models_worst_answer() -> None:
    an = build("anchored")
    assert an.needs_anchors
    # The policy's own answers all score alike (no pair from them); the base model's worst anchors one.
    g = group(("12.", 0.9), ("It is 12.", 0.9), anchors=(("Ugh, 12.", 0.0), ("12!", 0.9), ("I can't.", 0.5)))
    choice = an.select(g, 0.1)
    assert choice is not None and choice.chosen.response == "12." and choice.rejected.response == "Ugh, 12."
    assert choice.rejected.sample_id == 100 and choice.margin == pytest.approx(0.9)
    assert build("best_worst").select(g, 0.1) is None
    assert an.select(group(("12.", 0.9)), 0.1) is None  # no anchors: no pair
    assert an.select(group(("12.", 0.3), anchors=(("No.", 0.25),)), 0.1) is None  # anchor not beaten by min_margin


def test_diverse_picks_the_rare_good_answer_and_the_common_bad_one() -> None:
    dv = build("diverse")
    g = group(("The answer is 12.", 1.0), ("Twelve, since seven and five make twelve.", 0.95),
              ("The answer is 13.", 0.1), ("No.", 0.0))
    choice = dv.select(g, 0.1)
    assert choice is not None
    assert choice.chosen.response.startswith("Twelve")  # high-scoring and unlike the others
    assert choice.rejected.response == "The answer is 13."  # low-scoring and most like the others
    assert build("best_worst").select(g, 0.1).chosen.response == "The answer is 12."  # type: ignore[union-attr]
    assert dv.select(group(("a", 0.5), ("b", 0.5), ("c", 0.5)), 0.1) is None  # no quality split
    narrow = build("diverse", quality_band=0.04).select(g, 0.1)  # high-scoring: >= 0.96
    assert narrow is not None and narrow.chosen.response == "The answer is 12."  # only the very best qualify
    with pytest.raises(PluginSettingsError, match="quality_band"):
        build("diverse", quality_band=1.5)


def test_each_strategy_names_its_reference() -> None:
    assert build("iterative_dpo").reference == "parent" and not build("iterative_dpo").needs_anchors
    assert build("anchored", reference="parent").reference == "parent"
    for name in ("best_worst", "anchored", "diverse"):
        assert build(name).reference == "base"
    with pytest.raises(PluginSettingsError, match="reference must be one of base, parent"):
        build("best_worst", reference="previous")
    with pytest.raises(PluginSettingsError, match="no setting"):
        build("iterative_dpo", reference="base")
    assert set(PAIR_STRATEGIES.names()) >= {"best_worst", "anchored", "diverse", "iterative_dpo"}


def test_pairs_config_checks_every_slot_with_a_suggestion() -> None:
    cfg = PairsConfig(pool=[{"name": "anchored"}, {"name": "diverse", "settings": {"quality_band": 0.3}}])
    assert [s.name for s in cfg.slots()] == ["best_worst", "anchored", "diverse"]
    assert PairsConfig().slots()[0].name == "best_worst" and PairsConfig().pool == []
    with pytest.raises(ValueError) as err:
        parse_config({"pairs": {"strategy": "best_wrst", "pool": [{"name": "diverse", "settings": {"x": 1}}]}}, "c")
    text = str(err.value)
    assert "did you mean 'best_worst'" in text and "pool[0]" in text and "no setting(s) x" in text
