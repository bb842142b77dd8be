"""The judge plug-in protocol and registry.

A judge scores (prompt, response) items pointwise in [0, 1]. A judgment that could not be made
(unparseable, empty, refused, timed out) is `valid=False` with its raw text, and never becomes a
preference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tools.registry import Registry


@dataclass(frozen=True)
class JudgeItem:
    prompt: str
    response: str


@dataclass(frozen=True)
class Verdict:
    score: float | None
    valid: bool
    raw: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def invalid(raw: str, reason: str) -> Verdict:
        return Verdict(score=None, valid=False, raw=raw, details={"invalid": reason})


class Judge(Protocol):
    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]: ...


JUDGES: Registry[Judge] = Registry("judge")
