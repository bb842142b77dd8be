"""The `matches_regex` verifier: the reference is a regular expression the response must match."""

from __future__ import annotations

import re


class MatchesRegex:
    def verify(self, response: str, reference: str) -> float:
        return 1.0 if re.search(reference, response, flags=re.IGNORECASE) else 0.0

    def reference_problem(self, reference: str) -> str | None:
        if not reference.strip():
            return "the reference is empty"
        try:
            re.compile(reference)
        except re.error as err:
            return f"the reference is not a regular expression ({err})"
        return None


def matches_regex() -> MatchesRegex:
    """1 when the reference, a regular expression, matches somewhere in the response (case ignored), else 0."""
    return MatchesRegex()
