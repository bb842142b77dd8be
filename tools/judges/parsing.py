"""Strict parsers for LLM judge output: exactly one well-formed answer, or an invalid verdict.

Anything doubtful (empty, refused, out of range, several conflicting answers, wrong format) is
invalid with the raw text kept: a misread judgment would silently become a wrong preference.
"""

from __future__ import annotations

import re

from tools.judges.base import Verdict, Winner

SCALE: tuple[int, int] = (1, 5)

# "Score: 4", "score = 4", "Score: 4/5", "**Score:** 4" (markdown bold around the label).
_LABELLED = re.compile(r"\bscore\b\W{0,4}?[:=]\W{0,3}(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?", re.I)
_BARE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?\s*\.?\s*$")
_WINNER = re.compile(r"\bwinner\b\W{0,4}?[:=]\W{0,3}(?:response\s+|reply\s+)?(a|b|tie)\b", re.I)
_BARE_WINNER = re.compile(r"^\s*\W{0,3}(?:response\s+|reply\s+)?(a|b|tie)\W{0,3}\s*$", re.I)
_REFUSAL = re.compile(
    r"^\W*(i\s*(?:can't|cannot|can not|won't|will not|am unable|'m unable|am not able|'m not able)"
    r"|as an ai|sorry|i'm sorry|i apologi[sz]e|unable to)",
    re.I,
)


def _norm(text: str) -> str:
    return text.replace("\u2019", "'")


def _refused(text: str) -> bool:
    return _REFUSAL.search(_norm(text)) is not None


def parse_score(raw: str, scale: tuple[int, int] = SCALE) -> Verdict:
    """`Verdict` with the score normalised to [0, 1] from an integer on `scale`, or invalid."""
    text = _norm(raw or "")
    if not text.strip():
        return Verdict.invalid(raw or "", "empty judgment")
    if _refused(text):
        return Verdict.invalid(raw, "judge refused")
    found = _LABELLED.findall(text)
    if not found:
        bare = _BARE.match(text)
        found = [bare.groups(default="")] if bare else []
    if not found:
        return Verdict.invalid(raw, "no 'Score: N' found")
    lo, hi = scale
    values: set[int] = set()
    for number, denominator in found:
        if denominator and int(denominator) != hi:
            return Verdict.invalid(raw, f"score out of /{hi}: {number}/{denominator}")
        if "." in number and float(number) != int(float(number)):
            return Verdict.invalid(raw, f"non-integer score {number}")
        value = int(float(number))
        if not lo <= value <= hi:
            return Verdict.invalid(raw, f"score {value} outside {lo}-{hi}")
        values.add(value)
    if len(values) > 1:
        return Verdict.invalid(raw, f"conflicting scores {sorted(values)}")
    value = values.pop()
    return Verdict(score=(value - lo) / (hi - lo), valid=True, raw=raw, details={"points": value})


def parse_winner(raw: str) -> tuple[Winner | None, str | None]:
    """("a" | "b" | "tie", None) or (None, reason)."""
    text = _norm(raw or "")
    if not text.strip():
        return None, "empty judgment"
    if _refused(text):
        return None, "judge refused"
    found = _WINNER.findall(text)
    if not found:
        bare = _BARE_WINNER.match(text)
        found = [bare.group(1)] if bare else []
    if not found:
        return None, "no 'Winner: A|B|tie' found"
    winners = {w.lower() for w in found}
    if len(winners) > 1:
        return None, f"conflicting winners {sorted(winners)}"
    return winners.pop(), None  # type: ignore[return-value]
