"""The verifier plug-in protocol and registry.

A verifier scores a response against a prompt's reference answer in [0, 1]: a programmatic oracle
that evaluation and the monitors use and the agent's judges never see. A world names one per prompt
family (`world.settings.verifiers` of the data world); the reference comes from the data.
"""

from __future__ import annotations

import re
from typing import Protocol

from tools.registry import Registry


class Verifier(Protocol):
    def verify(self, response: str, reference: str) -> float:
        """Score in [0, 1] of `response` against `reference`."""
        ...

    def reference_problem(self, reference: str) -> str | None:
        """Why `reference` cannot be verified against (e.g. not a number), or None."""
        ...


VERIFIERS: Registry[Verifier] = Registry("verifier")

_QUOTES_AND_STOPS = "\"'`\u201c\u201d\u2018\u2019.,;:!?"


def normalise(text: str) -> str:
    """Case, spacing, curly apostrophes and surrounding quotes / punctuation do not change an answer."""
    folded = " ".join(text.replace("\u2019", "'").split()).casefold()
    return folded.strip(_QUOTES_AND_STOPS).strip()


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def numbers(text: str) -> list[float]:
    """The numbers written in `text`, in order ("1,234.5" is one number)."""
    return [float(n) for n in _NUMBER.findall(_THOUSANDS.sub("", text))]
