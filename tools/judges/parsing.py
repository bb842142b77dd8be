"""Strict parsers for LLM judge output: exactly one well-formed answer, or an invalid verdict.

Anything doubtful (empty, refused, out of range, several conflicting answers, wrong format) is
invalid with the raw text kept: a misread judgment would silently become a wrong preference.

A score is plain ASCII digits: Python's `\\d` and `int()` also read '٤' or '４', and a sign in front
("-5", "+4", "− 3") is never dropped to read the number's absolute value.
"""

from __future__ import annotations

import re

from tether_types import TetherError
from tools.judges.base import Verdict, Winner

SCALE: tuple[int, int] = (1, 5)

# "Score: 4", "score = 4", "Score: 4/5", "Score: 4 out of 5", "**Score:** 2" (markdown bold). `num`
# is any word-like run so that '1e1', '0x4', '４' or '4,5' are seen whole and refused, not half-read.
_LABELLED = re.compile(
    r"\bscore\b\W{0,4}?[:=](?P<lead>[\W_]{0,8}?)(?P<num>[^\W_][\w.,]*)"
    r"(?:\s*(?:/|\bout\s+of\b)\s*(?P<den>\S*))?",
    re.I,
)
_BARE = re.compile(
    r"\s*(?P<lead>[\W_]{0,8}?)(?P<num>[^\W_][\w.,]*)(?:\s*(?:/|\bout\s+of\b)\s*(?P<den>\S*))?\s*", re.I
)
_NUMBER = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_INTEGER = re.compile(r"[0-9]+")
_MAX_DIGITS = 6  # longer numbers are out of any rubric; never handed to int() (4300-digit limit)

# re.A: ASCII letters only, so a look-alike ('Ａ', 'tİe') is not read as a winner.
_WINNER = re.compile(
    r"\bwinner\b\W{0,4}?[:=](?P<lead>\W{0,8}?)(?:response\s+|reply\s+)?(?P<who>a|b|tie)\b", re.I | re.A
)
_BARE_WINNER = re.compile(
    r"\s*(?P<lead>\W{0,3}?)(?:response\s+|reply\s+)?(?P<who>a|b|tie)(?P<trail>\W{0,3}?)\s*", re.I | re.A
)
_HEDGE = re.compile(r"\s*(?:or|and|vs\.?|versus)\s+(?:response\s+|reply\s+)?(?:a|b|tie)\b", re.I | re.A)

# Markdown, quotes and brackets may wrap an answer; a sign, a minus or any other symbol may not.
_OPENERS = frozenset("*_`\"'([")
_CLOSERS = ".,;:!)]}*_`\"'"

_REFUSAL = re.compile(
    r"^\W*(i\s*(?:can't|cannot|can not|won't|will not|am unable|'m unable|am not able|'m not able)"
    r"|as an ai|sorry|i'm sorry|i apologi[sz]e|unable to)",
    re.I,
)


class _Unreadable(TetherError, ValueError):
    """One answer in the judgment is malformed; the whole judgment is invalid."""


def _norm(text: str) -> str:
    return text.replace("\u2019", "'")


def _refused(text: str) -> bool:
    return _REFUSAL.search(_norm(text)) is not None


def _opens(lead: str) -> bool:
    return all(c.isspace() or c in _OPENERS for c in lead)


def _closes(after: str) -> bool:
    """The character after an answer ends it (or there is none)."""
    return not after or after.isspace() or after in _CLOSERS


def _clip(text: str, limit: int = 24) -> str:
    """Quote a piece of the judgment for a reason without copying a runaway answer into it."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _has_digit(token: str) -> bool:
    return any(c.isnumeric() for c in token)


def _points(m: re.Match[str], text: str, scale: tuple[int, int]) -> int:
    """The integer points of one score answer, or _Unreadable saying why it is not one."""
    lo, hi = scale
    shown = _clip(text[m.start("lead"):m.end() + 1].strip())
    if not _opens(m["lead"]):
        raise _Unreadable(f"sign or symbol before the score: {shown}")
    if m["den"] is None and not _closes(text[m.end():m.end() + 1]):
        raise _Unreadable(f"not a plain score: {shown}")
    num = m["num"].rstrip(".,_")
    number = _NUMBER.fullmatch(num)
    if number is None:
        raise _Unreadable(f"score {_clip(num)} is not a plain number in ASCII digits")
    whole, fraction = number.groups()
    if fraction and fraction.strip("0"):
        raise _Unreadable(f"non-integer score {_clip(num)}")
    if m["den"] is not None:
        den = m["den"].rstrip(_CLOSERS)
        if not _INTEGER.fullmatch(den) or len(den.lstrip("0")) > _MAX_DIGITS or int(den) != hi:
            raise _Unreadable(f"score out of /{hi}: {shown}")
    if len(whole.lstrip("0")) > _MAX_DIGITS:
        raise _Unreadable(f"score {_clip(num)} outside {lo}-{hi}")
    value = int(whole)
    if not lo <= value <= hi:
        raise _Unreadable(f"score {value} outside {lo}-{hi}")
    return value


def parse_score(raw: str, scale: tuple[int, int] = SCALE) -> Verdict:
    """`Verdict` with the score normalised to [0, 1] from an integer on `scale`, or invalid."""
    text = _norm(raw or "")
    if not text.strip():
        return Verdict.invalid(raw or "", "empty judgment")
    if _refused(text):
        return Verdict.invalid(raw, "judge refused")
    # A label followed by no digit at all ("Score: N/A") is prose, not an answer.
    found = [m for m in _LABELLED.finditer(text) if _has_digit(m["num"])]
    if not found:
        bare = _BARE.fullmatch(text)
        found = [bare] if bare and _has_digit(bare["num"]) else []
    if not found:
        return Verdict.invalid(raw, "no 'Score: N' found")
    lo, hi = scale
    values: set[int] = set()
    for m in found:
        try:
            values.add(_points(m, text, scale))
        except _Unreadable as err:
            return Verdict.invalid(raw, str(err))
    if len(values) > 1:
        return Verdict.invalid(raw, f"conflicting scores {sorted(values)}")
    value = values.pop()
    return Verdict(score=(value - lo) / (hi - lo), valid=True, raw=raw, details={"points": value})


def _winner(m: re.Match[str], text: str, trail: str) -> Winner:
    shown = _clip(text[m.start("lead"):m.end() + 1].strip())
    if not _opens(m["lead"]) or not all(_closes(c) for c in trail) or not _closes(text[m.end():m.end() + 1]):
        raise _Unreadable(f"not a plain winner: {shown}")
    if _HEDGE.match(text, m.end()):
        raise _Unreadable(f"hedged winner: {_clip(text[m.start('lead'):].strip())}")
    return m["who"].lower()  # type: ignore[return-value]


def parse_winner(raw: str) -> tuple[Winner | None, str | None]:
    """("a" | "b" | "tie", None) or (None, reason)."""
    text = _norm(raw or "")
    if not text.strip():
        return None, "empty judgment"
    if _refused(text):
        return None, "judge refused"
    try:
        winners = {_winner(m, text, "") for m in _WINNER.finditer(text)}
        if not winners:
            bare = _BARE_WINNER.fullmatch(text)
            winners = {_winner(bare, text, bare["trail"])} if bare else set()
    except _Unreadable as err:
        return None, str(err)
    if not winners:
        return None, "no 'Winner: A|B|tie' found"
    if len(winners) > 1:
        return None, f"conflicting winners {sorted(winners)}"
    return winners.pop(), None
