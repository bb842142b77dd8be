"""The `contains_reference` verifier: the reference appears in the response as whole words."""

from __future__ import annotations

import re

from tools.verifiers.base import VERIFIERS, normalise


class ContainsReference:
    def verify(self, response: str, reference: str) -> float:
        wanted = normalise(reference)
        if not wanted:
            return 0.0
        # Whole words only: a reference "4" is not found in "14", nor "cat" in "category".
        pattern = rf"(?<!\w){re.escape(wanted)}(?!\w)"
        return 1.0 if re.search(pattern, " ".join(response.replace("\u2019", "'").split()).casefold()) else 0.0

    def reference_problem(self, reference: str) -> str | None:
        return None if normalise(reference) else "the reference is empty"


@VERIFIERS.register("contains_reference")
def contains_reference() -> ContainsReference:
    """1 when the reference occurs in the response as whole words (case and spacing ignored), else 0."""
    return ContainsReference()
