"""The `jury` judge: several judges built through the registry, their valid verdicts aggregated.

Members are built with `JUDGES.build`, so the jury's recorded settings name each member with its
exact settings. Invalid member verdicts are left out; below `quorum` valid ones the jury abstains
(invalid) rather than let one surviving member decide alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from tools.judges.base import (
    JUDGES,
    Judge,
    JudgeItem,
    PairItem,
    PairVerdict,
    PolicyHandle,
    Verdict,
    Winner,
    safe_compare,
    safe_score,
)
from tools.registry import Built, PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution

Aggregate = Literal["mean", "majority"]
_SIGN: dict[str, int] = {"a": 1, "b": -1, "tie": 0}


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def weighted_median(values: Sequence[float], weights: Sequence[float]) -> float:
    """The score at least half the (weighted) jury agrees is reached: majority for ordinal scores,
    so one outlying member cannot move it."""
    pairs = sorted(zip(values, weights, strict=True))
    half, acc = sum(weights) / 2, 0.0
    for value, weight in pairs:
        acc += weight
        if acc >= half:
            return value
    return pairs[-1][0]


def vote(winners: Sequence[Winner], weights: Sequence[float], aggregate: Aggregate) -> Winner:
    if aggregate == "mean":  # weighted mean of +1 (a) / 0 (tie) / -1 (b)
        mean = weighted_mean([_SIGN[w] for w in winners], weights)
        return "a" if mean > 0 else "b" if mean < 0 else "tie"
    tally: dict[str, float] = {"a": 0.0, "b": 0.0, "tie": 0.0}
    for w, weight in zip(winners, weights, strict=True):
        tally[w] += weight
    best = max(tally.values())
    top = [k for k, v in tally.items() if v == best]
    return top[0] if len(top) == 1 else "tie"  # type: ignore[return-value]


class Jury:
    def __init__(self, members: list[Built[Judge]], weights: list[float], aggregate: Aggregate,
                 quorum: int) -> None:
        self.members, self.weights, self.aggregate, self.quorum = members, weights, aggregate, quorum

    def _label(self, i: int) -> str:
        return f"{i}:{self.members[i].name}"

    def _abstained(self, valid: int, verdicts: Sequence[Verdict | PairVerdict]) -> str:
        """Why the jury abstains, with its first invalid member's reason: "below quorum" alone hides the
        endpoint that is down."""
        first = next(((i, v) for i, v in enumerate(verdicts) if not v.valid), None)
        why = f" ({self._label(first[0])}: {first[1].details.get('invalid', 'invalid')})" if first else ""
        return f"{valid} valid member verdicts, quorum {self.quorum}{why}"

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        per_member = [safe_score(m.plugin, items) for m in self.members]
        return [self._combine_scores([pm[j] for pm in per_member]) for j in range(len(items))]

    def _combine_scores(self, verdicts: list[Verdict]) -> Verdict:
        valid = [(i, v) for i, v in enumerate(verdicts) if v.valid and v.score is not None]
        raw = "\n".join(f"[{self._label(i)}] {v.raw}" for i, v in enumerate(verdicts))
        members = {self._label(i): v.score if v.valid else v.details.get("invalid", "invalid")
                   for i, v in enumerate(verdicts)}
        if len(valid) < self.quorum or not sum(self.weights[i] for i, _ in valid):
            return Verdict(None, False, raw, {"invalid": self._abstained(len(valid), verdicts), "members": members})
        scores = [float(v.score) for _, v in valid]  # type: ignore[arg-type]
        weights = [self.weights[i] for i, _ in valid]
        agg = weighted_mean if self.aggregate == "mean" else weighted_median
        return Verdict(agg(scores, weights), True, raw, {"members": members})

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        per_member = [safe_compare(m.plugin, items) for m in self.members]
        return [self._combine_pairs([pm[j] for pm in per_member]) for j in range(len(items))]

    def _combine_pairs(self, verdicts: list[PairVerdict]) -> PairVerdict:
        raw = tuple("\n".join(f"[{self._label(i)}] {v.raw[k]}" for i, v in enumerate(verdicts))
                    for k in (0, 1))
        members = {self._label(i): v.winner for i, v in enumerate(verdicts)}
        valid = [(i, v) for i, v in enumerate(verdicts) if v.valid]
        if len(valid) < self.quorum or not sum(self.weights[i] for i, _ in valid):
            return PairVerdict(None, False, raw,  # type: ignore[arg-type]
                               {"invalid": self._abstained(len(valid), verdicts), "members": members})
        winner = vote([v.winner for _, v in valid], [self.weights[i] for i, _ in valid],  # type: ignore[misc]
                      self.aggregate)
        consistent = all(v.position_consistent for _, v in valid)
        return PairVerdict(winner, consistent, raw, {"members": members})  # type: ignore[arg-type]




def build_member(spec: Any, **context: Any) -> Built[Judge]:
    if not isinstance(spec, Mapping) or "name" not in spec or set(spec) - {"name", "settings"}:
        raise PluginSettingsError(f"a member judge is {{name, settings}}, got {spec!r}")
    return JUDGES.build(str(spec["name"]), spec.get("settings") or {}, **context)


@JUDGES.register("jury")
def jury(
    judges: list[dict[str, Any]],
    weights: list[float] | None = None,
    aggregate: Aggregate = "mean",
    quorum: int | None = None,
    constitution: Constitution | None = None,
    policy: PolicyHandle | None = None,
) -> Jury:
    """Settings: judges (list of {name, settings}), weights (one per member, default equal),
    aggregate ("mean": weighted mean score / weighted mean vote; "majority": weighted median score
    / weighted plurality vote), quorum (valid member verdicts needed; default more than half)."""
    if not judges:
        raise PluginSettingsError("jury: judges must name at least one member")
    if aggregate not in ("mean", "majority"):
        raise PluginSettingsError(f"jury: aggregate must be 'mean' or 'majority', got {aggregate!r}")
    weights = [1.0] * len(judges) if weights is None else [float(w) for w in weights]
    if len(weights) != len(judges) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise PluginSettingsError("jury: weights must be one non-negative number per member, not all 0")
    quorum = len(judges) // 2 + 1 if quorum is None else quorum
    if not 1 <= quorum <= len(judges):
        raise PluginSettingsError(f"jury: quorum must be in 1..{len(judges)}, got {quorum}")
    context = {"constitution": constitution, "policy": policy}
    members = [build_member(spec, **{k: v for k, v in context.items() if v is not None})
               for spec in judges]
    return Jury(members, weights, aggregate, quorum)
