"""Jury aggregation and length control on constructed verdicts (no model needed)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from guardrails.constitution import default_constitution_yaml, parse_constitution
from tools.judges import JUDGES, JudgeItem, LengthControl, PairItem, Verdict, apply_length_control
from tools.judges.jury import Jury
from tools.registry import Built, PluginSettingsError

CONSTITUTION = parse_constitution(default_constitution_yaml(), "default")


class _Fixed:
    def __init__(self, scores: list[float | None]) -> None:
        self.scores = scores

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return [Verdict(s, True, str(s)) if s is not None else Verdict.invalid("?", "unparseable")
                for s in self.scores[: len(items)]]


def _jury(scores: list[list[float | None]], weights: list[float], aggregate: str, quorum: int) -> Jury:
    members = [Built(f"fixed{i}", {}, _Fixed(s)) for i, s in enumerate(scores)]
    return Jury(members, weights, aggregate, quorum)  # type: ignore[arg-type]


def test_jury_weighted_mean_excludes_invalid_members() -> None:
    jury = _jury([[1.0, 1.0], [0.0, None], [0.5, 0.5]], [2, 1, 1], "mean", quorum=2)
    a, b = jury.score([JudgeItem("q", "x"), JudgeItem("q", "y")])
    assert a.score == pytest.approx((2 * 1.0 + 0.0 + 0.5) / 4)
    assert b.score == pytest.approx((2 * 1.0 + 0.5) / 3)


def test_jury_majority_resists_an_outlier_and_votes_pairs() -> None:
    jury = _jury([[0.75], [0.75], [0.0]], [1, 1, 1], "majority", quorum=2)
    assert jury.score([JudgeItem("q", "x")])[0].score == 0.75
    pair = _jury([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [1, 1, 1], "majority", quorum=2)
    [v] = pair.compare([PairItem("q", "x", "y")])
    assert v.winner == "a" and v.details["members"] == {"0:fixed0": "a", "1:fixed1": "a", "2:fixed2": "b"}
    heavy = _jury([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [1, 1, 3], "majority", quorum=2)
    assert heavy.compare([PairItem("q", "x", "y")])[0].winner == "b"


def test_jury_below_quorum_is_invalid() -> None:
    jury = _jury([[0.9], [None], [None]], [1, 1, 1], "mean", quorum=2)
    [v] = jury.score([JudgeItem("q", "x")])
    assert not v.valid and "quorum 2" in v.details["invalid"]
    with pytest.raises(PluginSettingsError, match="quorum"):
        JUDGES.build("jury", {"judges": [{"name": "rules"}], "quorum": 2}, constitution=CONSTITUTION)


# -- length control -------------------------------------------------------------------------------

def test_length_penalty_only_beyond_the_target() -> None:
    items = [JudgeItem("q", "w " * n) for n in (5, 10, 20, 40)]
    verdicts = [Verdict(0.9, True, "")] * 4 + []
    control = LengthControl(mode="penalty", alpha=0.2, target=10)
    scores = [v.score for v in apply_length_control(items, verdicts, control)]
    assert scores == pytest.approx([0.9, 0.9, 0.7, 0.3])
    assert apply_length_control(items, verdicts, LengthControl()) == verdicts


def test_length_regression_removes_the_length_component() -> None:
    lengths = [5, 10, 15, 20, 25, 30]
    quality = [0.2, 0.6, 0.2, 0.6, 0.2, 0.6]
    items = [JudgeItem("q", "w " * n) for n in lengths]
    verdicts = [Verdict(q + 0.01 * n, True, "") for q, n in zip(quality, lengths, strict=True)]
    verdicts.append(Verdict.invalid("?", "unparseable"))
    items.append(JudgeItem("q", "w " * 50))
    out = apply_length_control(items, verdicts, LengthControl(mode="regression"))
    assert not out[-1].valid
    adjusted = [v.score for v in out[:-1]]
    # residual slope on length is ~0 and the mean score is kept
    mean_len = sum(lengths) / len(lengths)
    slope = sum((n - mean_len) * s for n, s in zip(lengths, adjusted, strict=True))
    assert slope == pytest.approx(0.0, abs=1e-9)
    assert sum(adjusted) / 6 == pytest.approx(sum(v.score for v in verdicts[:-1]) / 6)
    assert out[0].details["raw_score"] == verdicts[0].score


def test_length_controlled_judge_neutralises_a_length_biased_one() -> None:
    settings = {"judge": {"name": "length_biased", "settings": {"scale": 1000}},
                "length_control": {"mode": "regression"}}
    judge = JUDGES.build("length_controlled", settings).plugin
    scores = [v.score for v in judge.score([JudgeItem("q", "w " * n) for n in (1, 10, 20, 40)])]
    assert max(scores) - min(scores) < 1e-3
    with pytest.raises(PluginSettingsError, match="mode"):
        JUDGES.build("length_controlled", {"judge": {"name": "length_biased"},
                                           "length_control": {"mode": "lc"}})
