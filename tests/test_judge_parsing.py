"""Judge output parsing under attack: signs, look-alike digits, other number formats and hedged
winners are invalid with the raw text kept, never read as a nearby valid answer."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from tools.judges import parse_score, parse_winner

SIGNS = ["-", "+", "\u2212", "\u2013", "\u2014", "\ufe63", "\uff0d", "\u2010", "--", "+-"]


def assert_invalid(raw: str, reason: str = "") -> None:
    v = parse_score(raw)
    assert not v.valid and v.score is None and v.raw == raw, (raw, v)
    assert "points" not in v.details and reason in v.details["invalid"], (raw, v.details)


@pytest.mark.parametrize(("raw", "reason"), [
    ("Score: -5", "sign or symbol before the score"),  # was read as 5 (sign swallowed)
    ("Score: -1", "sign or symbol before the score"),  # was read as 1
    ("Score: +4", "sign or symbol before the score"),
    ("Score:\u2212 3", "sign or symbol before the score"),  # unicode minus, then a space
    ("Score: - 4", "sign or symbol before the score"),
    ("**Score:** -2", "sign or symbol before the score"),
    ("Score: ~4", "sign or symbol before the score"),
    ("Score: >3", "sign or symbol before the score"),
    ("-3", "sign or symbol before the score"),
    ("Score: 5/5 Score: -5", "sign or symbol before the score"),  # one bad answer spoils the judgment
    ("Score: \u0664", "ASCII digits"),  # Arabic-Indic four: int() reads it
    ("Score: \uff14", "ASCII digits"),  # fullwidth four
    ("Score: \uff14.0", "ASCII digits"),
    ("\u0664", "ASCII digits"),
    ("Score: 4/\uff15", "out of /5"),
    ("Score: 3/-5", "out of /5"),
    ("Score: 4 out of 10", "out of /5"),
    ("Score: 1e1", "not a plain number"),  # was read as 1
    ("Score: 0x4", "not a plain number"),
    ("Score: 4,5", "not a plain number"),
    ("Score: 3\u00bd", "not a plain number"),  # 3 and a half
    ("Score: 4-5", "not a plain score"),  # a range
    ("Score: 4?", "not a plain score"),
    ("Score: 4%", "not a plain score"),
    ("Score: 4.5", "non-integer"),
    ("Score: 99999999999999999999999999", "outside 1-5"),
])
def test_attack_strings_are_invalid_for_the_right_reason(raw: str, reason: str) -> None:
    assert_invalid(raw, reason)


@pytest.mark.parametrize("sign", SIGNS)
@pytest.mark.parametrize("points", [1, 2, 3, 4, 5])
def test_a_signed_score_is_never_read_as_its_absolute_value(sign: str, points: int) -> None:
    for raw in (f"Score: {sign}{points}", f"Score: {sign} {points}", f"{sign}{points}",
                f"Score: {points}. Revised Score: {sign}{points}"):
        assert_invalid(raw)


def test_no_non_ascii_digit_is_read_as_a_score() -> None:
    looks_like_a_score = [chr(c) for c in range(128, sys.maxunicode + 1)
                          if unicodedata.digit(chr(c), None) in (1, 2, 3, 4, 5)]
    assert len(looks_like_a_score) > 100  # Arabic-Indic, Devanagari, fullwidth, mathematical, ...
    for digit in looks_like_a_score:
        assert_invalid(f"Score: {digit}")
        assert_invalid(digit)
        assert_invalid(f"Score: {digit}/5")


@pytest.mark.parametrize(("raw", "points"), [
    ("Score: 4.0", 4), ("Score: 4.", 4), ("Score: 4, because it is clear.", 4), ("Score: **4**", 4),
    ("Score: _4_", 4), ("Score: (4/5).", 4), ("Score: 4 out of 5", 4), ("Score:\n3", 3), ("score = 2", 2),
    ("The score: is subjective, but Score: 3", 3),  # a label followed by prose is not an answer
    ("Score: 5/5", 5), ("4/5", 4),
])
def test_plain_answers_still_read(raw: str, points: int) -> None:
    v = parse_score(raw)
    assert v.valid and v.details == {"points": points} and v.score == pytest.approx((points - 1) / 4)


def test_scale_is_the_rubric() -> None:
    assert parse_score("Score: 9/10", scale=(1, 10)).details == {"points": 9}
    assert not parse_score("Score: 9/5", scale=(1, 10)).valid
    assert not parse_score("Score: -9", scale=(1, 10)).valid
    assert not parse_score("Score: 0", scale=(1, 10)).valid


def test_a_runaway_number_is_not_copied_into_the_reason() -> None:
    raw = "Score: " + "9" * 10_000  # past Python's 4300-digit int() limit: never converted
    v = parse_score(raw)
    assert not v.valid and v.raw == raw and len(v.details["invalid"]) < 80


@pytest.mark.parametrize(("raw", "reason"), [
    ("Winner: -A", "not a plain winner"),
    ("Winner: +B", "not a plain winner"),
    ("Winner: \u2212B", "not a plain winner"),
    ("Winner: A/B", "not a plain winner"),
    ("Winner: tie-break, B", "not a plain winner"),
    ("Winner: A\u00e9", "not a plain winner"),
    ("Winner: A?", "not a plain winner"),
    ("A?", "not a plain winner"),
    ("-B", "not a plain winner"),
    ("Winner: A or B", "hedged"),
    ("Winner: Response A and Response B", "hedged"),
    ("Winner: A vs B", "hedged"),
    ("Winner: \uff21", "no 'Winner"),  # fullwidth A
    ("Winner: t\u0130e", "no 'Winner"),  # dotted capital I: re.I alone would read 'tie'
    ("Winner: A. Winner: -B", "not a plain winner"),
])
def test_winner_attacks_are_invalid(raw: str, reason: str) -> None:
    winner, why = parse_winner(raw)
    assert winner is None and why and reason in why, (raw, why)


@pytest.mark.parametrize(("raw", "winner"), [
    ("Winner: **B**", "b"), ("Winner: 'A'", "a"), ("(A)", "a"), ("Winner: A.", "a"),
    ("Winner: B's answer is right.", "b"), ("Winner: A because it is shorter", "a"), ("**tie**", "tie"),
])
def test_plain_winners_still_read(raw: str, winner: str) -> None:
    assert parse_winner(raw) == (winner, None)
