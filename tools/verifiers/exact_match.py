"""The `exact_match` verifier: the whole response is the reference, up to case, spacing and
surrounding quotes or punctuation."""

from __future__ import annotations

from tools.verifiers.base import VERIFIERS, normalise


class ExactMatch:
    def verify(self, response: str, reference: str) -> float:
        return 1.0 if normalise(response) == normalise(reference) else 0.0

    def reference_problem(self, reference: str) -> str | None:
        return None if normalise(reference) else "the reference is empty"


@VERIFIERS.register("exact_match")
def exact_match() -> ExactMatch:
    """1 when the response equals the reference (case, spacing, outer punctuation ignored), else 0."""
    return ExactMatch()
