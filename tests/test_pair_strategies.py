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
    assert set(PAIR_STRATEGIES.names()) >= {"best_worst", "anchored", "diverse", "iterative_dpo", "rpo"}


def test_pairs_config_checks_every_slot_with_a_suggestion() -> None:
    cfg = PairsConfig(pool=[{"name": "anchored"}, {"name": "diverse", "settings": {"quality_band": 0.3}}])
    assert [s.name for s in cfg.slots()] == ["best_worst", "anchored", "diverse"]
    assert PairsConfig().slots()[0].name == "best_worst"
    assert [s.name for s in PairsConfig().pool] == ["regularized"]  # the default pool (the failure-worlds suite)
    with pytest.raises(ValueError) as err:
        parse_config({"pairs": {"strategy": "best_wrst", "pool": [{"name": "diverse", "settings": {"x": 1}}]}}, "c")
    text = str(err.value)
    assert "did you mean 'best_worst'" in text and "pool[0]" in text and "no setting(s) x" in text


def test_rpo_adds_the_chosen_nll_and_any_strategy_can() -> None:
    rpo = build("rpo")
    assert rpo.chosen_nll == 1.0 and rpo.reference == "base" and not rpo.needs_anchors
    g = group(("12.", 1.0), ("13.", 0.0))
    assert rpo.select(g, 0.1) == build("best_worst").select(g, 0.1)  # the pairs are best_worst's
    assert build("rpo", alpha=0.5, reference="parent").chosen_nll == 0.5
    for name in ("best_worst", "anchored", "diverse", "iterative_dpo"):
        assert build(name).chosen_nll == 0.0  # plain DPO unless asked
        assert build(name, chosen_nll=2).chosen_nll == 2.0
    for bad in (-0.1, 11, float("nan"), float("inf"), True, "1"):
        with pytest.raises(PluginSettingsError, match="chosen_nll must be a number in"):
            build("best_worst", chosen_nll=bad)
    with pytest.raises(PluginSettingsError, match="alpha must be > 0"):
        build("rpo", alpha=0)


def test_the_chosen_nll_joins_the_dpo_loss_as_trls_sft_term() -> None:
    from agent.config import TrainingConfig
    from policies.train_spec import with_chosen_nll

    spec = TrainingConfig().dpo_spec(seed=0)
    assert with_chosen_nll(spec, 0.0) == spec
    both = with_chosen_nll(spec, 0.5)
    assert both.loss_type == ("sigmoid", "sft") and both.loss_weights == (1.0, 0.5)
    weighted = TrainingConfig(loss_type=["sigmoid", "ipo"], loss_weights=[1.0, 0.2]).dpo_spec(seed=0)
    assert with_chosen_nll(weighted, 1.0).loss_weights == (1.0, 0.2, 1.0)
    configured = TrainingConfig(loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.3]).dpo_spec(seed=0)
    assert with_chosen_nll(configured, 1.0) == configured  # the configured sft weight stands


def scored(*rows: tuple[str, float, float]) -> PromptGroup:
    """A group whose candidates carry (text, judge score, base model's mean log-prob per token)."""
    cands = tuple(Candidate(i + 1, text, score, i, base_logp=lp) for i, (text, score, lp) in enumerate(rows))
    return PromptGroup("p1", "How do I clean my bike chain?", "howto", cands)


def test_regularized_settles_the_judges_ties_by_the_base_models_likelihood() -> None:
    reg = build("regularized")
    assert reg.needs_base_logp and reg.weight == 0.2 and reg.chosen_nll == 0.0
    # The judge ties a fragment with a fluent answer; the base model finds the fragment far less likely.
    tie = scored((" chain with a rag, clean it is dry", 1.0, -2.4), ("Apply degreaser and scrub the chain.", 1.0, -0.9))
    assert build("best_worst").select(tie, 0.1) is None  # no judge margin: best_worst has no pair
    choice = reg.select(tie, 0.1)
    assert choice is not None and choice.chosen.response.startswith("Apply") and choice.rejected.sample_id == 1
    assert choice.margin == pytest.approx(0.2 * 1.5)  # stored with the regularised margin it was kept by
    # A clear judge preference stands; the rejected one is the least natural among the lowest.
    mixed = scored(("Apply degreaser.", 1.0, -1.0), ("I can't help with that.", 0.2, -0.5), ("Ugh.", 0.2, -3.0))
    choice = reg.select(mixed, 0.1)
    assert choice is not None and (choice.chosen.sample_id, choice.rejected.sample_id) == (1, 3)
    # Never against the judge: where the likelihood outweighs a score gap, the higher-scored answer is
    # not made the rejected one; the prompt yields no pair.
    close = scored(("Fine answer.", 0.9, -3.0), ("Padded fine answer.", 0.7, -0.5))
    assert reg.select(close, 0.1) is None
    assert reg.select(scored(("a", 1.0, -1.0), ("b", 1.0, -1.2)), 0.1) is None  # 0.04 < min_margin
    assert reg.select(scored(("a", 1.0, -1.0)), 0.1) is None
    assert reg.select(PromptGroup("p", "q", "howto", (Candidate(1, "a", 1.0), Candidate(2, "b", 0.0))), 0.1) is None
    with pytest.raises(PluginSettingsError, match="weight must be a number in"):
        build("regularized", weight=0)
