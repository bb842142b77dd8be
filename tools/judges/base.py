"""The judge plug-in protocol and registry.

A judge scores (prompt, response) items pointwise in [0, 1] and compares (prompt, a, b) pairs.
A judgment that could not be made (unparseable, empty, refused, timed out) is `valid=False` with
its raw text, and never becomes a preference. Pairwise judging always asks both orders, so a judge
that favours a position is caught rather than trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from tools.registry import Registry

if TYPE_CHECKING:  # policies pulls in torch; judges that never generate should not need it
    from tether_types import SamplingSpec

Winner = Literal["a", "b", "tie"]


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


@dataclass(frozen=True)
class PairItem:
    prompt: str
    a: str
    b: str

    def swapped(self) -> PairItem:
        return PairItem(self.prompt, self.b, self.a)


@dataclass(frozen=True)
class PairVerdict:
    """`winner` None = invalid. `raw` holds the (a-first, b-first) judgments as given."""

    winner: Winner | None
    position_consistent: bool
    raw: tuple[str, str]
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.winner is not None

    @staticmethod
    def invalid(raw: tuple[str, str], reason: str) -> PairVerdict:
        return PairVerdict(None, False, raw, {"invalid": reason})


class Judge(Protocol):
    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]: ...


@runtime_checkable
class PairJudge(Protocol):
    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]: ...


@runtime_checkable
class PolicyHandle(Protocol):
    """The run's current policy (base + active adapter): one text per prompt (user messages)."""

    def generate(self, prompts: Sequence[str], spec: SamplingSpec) -> list[str]: ...


JUDGES: Registry[Judge] = Registry("judge")


_FLIP: dict[Winner, Winner] = {"a": "b", "b": "a", "tie": "tie"}


def combine_orders(
    first: Winner | None, second_swapped: Winner | None, raw: tuple[str, str],
    reasons: tuple[str | None, str | None] = (None, None), **details: Any,
) -> PairVerdict:
    """One verdict from the a-first answer and the b-first answer (given in *swapped* terms, i.e.
    "a" there means the original b). Disagreement is a tie, counted as position-inconsistent."""
    if first is None or second_swapped is None:
        why = "; ".join(f"{order}: {r}" for order, r in zip(("a-first", "b-first"), reasons,
                                                             strict=True) if r)
        return PairVerdict.invalid(raw, why or "invalid judgment in one order")
    second = _FLIP[second_swapped]
    if first == second:
        return PairVerdict(first, True, raw, details)
    return PairVerdict("tie", False, raw, {**details, "orders": (first, second)})


def winner_from_scores(a: Verdict, b: Verdict, margin: float = 0.0) -> Winner | None:
    if not (a.valid and b.valid) or a.score is None or b.score is None:
        return None
    if abs(a.score - b.score) <= margin:
        return "tie"
    return "a" if a.score > b.score else "b"


def compare_by_scores(judge: Judge, items: Sequence[PairItem], margin: float = 0.0) -> list[PairVerdict]:
    """`compare` for a pointwise judge: score both responses (one batched call), prefer the higher.
    Scores don't depend on order, so the verdict is trivially position-consistent."""
    flat = [JudgeItem(it.prompt, r) for it in items for r in (it.a, it.b)]
    verdicts = judge.score(flat)
    out: list[PairVerdict] = []
    for i in range(len(items)):
        va, vb = verdicts[2 * i], verdicts[2 * i + 1]
        winner = winner_from_scores(va, vb, margin)
        raw = (va.raw, vb.raw)
        if winner is None:
            bad = [f"{side}: {v.details.get('invalid', 'invalid')}"
                   for side, v in (("a", va), ("b", vb)) if not v.valid]
            out.append(PairVerdict.invalid(raw, "; ".join(bad) or "invalid score"))
        else:
            out.append(PairVerdict(winner, True, raw, {"scores": (va.score, vb.score)}))
    return out


def compare(judge: Judge, items: Sequence[PairItem]) -> list[PairVerdict]:
    """Pairwise verdicts from any judge: its own `compare` if it has one, else by its scores."""
    if isinstance(judge, PairJudge):
        return judge.compare(items)
    return compare_by_scores(judge, items)


class ScoresCompare:
    """Mixin giving a pointwise judge `compare` for free."""

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        return compare_by_scores(self, items)  # type: ignore[arg-type]


def safe_score(judge: Judge, items: Sequence[JudgeItem]) -> list[Verdict]:
    """`judge.score`, but a judge that raises or miscounts gives invalid verdicts, never a crash:
    a jury keeps its other members, an audit reports the failure."""
    if not items:
        return []
    try:
        out = list(judge.score(items))
        if len(out) == len(items):
            return out
        reason = f"judge returned {len(out)} verdicts for {len(items)} items"
    except Exception as err:
        reason = f"judge failed: {type(err).__name__}: {err}"
    return [Verdict.invalid("", reason) for _ in items]


def safe_compare(judge: Judge, items: Sequence[PairItem]) -> list[PairVerdict]:
    """`compare` (both orders), with failures turned into invalid verdicts like `safe_score`."""
    if not items:
        return []
    try:
        out = compare(judge, items)
        if len(out) == len(items):
            return out
        reason = f"judge returned {len(out)} verdicts for {len(items)} pairs"
    except Exception as err:
        reason = f"judge failed: {type(err).__name__}: {err}"
    return [PairVerdict.invalid(("", ""), reason) for _ in items]
