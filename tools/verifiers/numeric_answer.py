"""The `numeric_answer` verifier: the response's final number equals the reference number."""

from __future__ import annotations

import math

from tools.verifiers.base import VERIFIERS, numbers

TOLERANCE = 1e-9  # relative: 0.1 + 0.2 still equals 0.3


class NumericAnswer:
    def verify(self, response: str, reference: str) -> float:
        found, expected = numbers(response), numbers(reference)
        if not found or len(expected) != 1:
            return 0.0
        return 1.0 if math.isclose(found[-1], expected[0], rel_tol=TOLERANCE, abs_tol=TOLERANCE) else 0.0

    def reference_problem(self, reference: str) -> str | None:
        n = len(numbers(reference))
        return None if n == 1 else f"the reference {reference!r} holds {n} numbers, not one"


@VERIFIERS.register("numeric_answer")
def numeric_answer() -> NumericAnswer:
    """1 when the last number in the response equals the reference's number, else 0."""
    return NumericAnswer()
