"""Length control for any judge: take the length component out of its scores.

`penalty` subtracts alpha * (length/target - 1)_+ (nothing below the target length).
`regression` (AlpacaEval-LC spirit) fits score ~ a + b * length by least squares over one `score`
call — the agent scores a round in one call — and removes b * (length - mean length), so scores
keep their level at the mean length but no longer rise (or fall) with length.
Length is counted in whitespace tokens: judge-independent and tokenizer-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from tools.judges.base import (
    JUDGES,
    Judge,
    JudgeItem,
    PairItem,
    PairVerdict,
    PolicyHandle,
    Verdict,
    compare_by_scores,
)
from tools.registry import Built, PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution

Mode = Literal["none", "penalty", "regression"]


@dataclass(frozen=True)
class LengthControl:
    mode: Mode = "none"
    alpha: float = 0.2  # penalty per multiple of the target length beyond it
    target: int = 40  # penalty-free length, in whitespace tokens
    min_items: int = 3  # regression needs this many valid scores of differing lengths

    @staticmethod
    def from_settings(settings: Mapping[str, Any] | None) -> LengthControl:
        settings = dict(settings or {})
        unknown = set(settings) - {"mode", "alpha", "target", "min_items"}
        if unknown:
            raise PluginSettingsError(f"length_control has no setting(s) {', '.join(sorted(unknown))}")
        control = LengthControl(**settings)
        if control.mode not in ("none", "penalty", "regression"):
            raise PluginSettingsError(f"length_control.mode must be none|penalty|regression, "
                                      f"got {control.mode!r}")
        if control.alpha < 0 or control.target < 1 or control.min_items < 2:
            raise PluginSettingsError("length_control: alpha >= 0, target >= 1, min_items >= 2")
        return control


def response_length(text: str) -> int:
    return len(text.split())


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def _adjusted(v: Verdict, score: float, **details: Any) -> Verdict:
    return replace(v, score=_clip(score), details={**v.details, "raw_score": v.score, **details})


def apply_length_control(
    items: Sequence[JudgeItem], verdicts: Sequence[Verdict], control: LengthControl
) -> list[Verdict]:
    """Length-controlled copies of `verdicts` (invalid ones pass through untouched)."""
    if control.mode == "none":
        return list(verdicts)
    lengths = [response_length(it.response) for it in items]
    if control.mode == "penalty":
        return [
            _adjusted(v, v.score - control.alpha * max(0.0, n / control.target - 1.0), length=n)
            if v.valid and v.score is not None else v
            for v, n in zip(verdicts, lengths, strict=True)
        ]
    return _regress(verdicts, lengths, control.min_items)


def _regress(verdicts: Sequence[Verdict], lengths: list[int], min_items: int) -> list[Verdict]:
    idx = [i for i, v in enumerate(verdicts) if v.valid and v.score is not None]
    xs = [float(lengths[i]) for i in idx]
    ys = [float(verdicts[i].score) for i in idx]  # type: ignore[arg-type]
    if len(idx) < min_items:
        return list(verdicts)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return list(verdicts)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    out = list(verdicts)
    for i, x, y in zip(idx, xs, ys, strict=True):
        out[i] = _adjusted(verdicts[i], y - slope * (x - mx), length=int(x), length_slope=slope)
    return out


class LengthControlledJudge:
    def __init__(self, inner: Built[Judge], control: LengthControl) -> None:
        self.inner, self.control = inner, control

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return apply_length_control(items, self.inner.plugin.score(items), self.control)

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        # Through the controlled scores; all pairs in one call so regression sees the whole batch.
        return compare_by_scores(self, items)


@JUDGES.register("length_controlled")
def length_controlled(
    judge: Mapping[str, Any],
    length_control: Mapping[str, Any] | None = None,
    constitution: Constitution | None = None,
    policy: PolicyHandle | None = None,
) -> LengthControlledJudge:
    """Settings: judge ({name, settings} of the inner judge), length_control ({mode: none |
    penalty | regression, alpha, target, min_items})."""
    from tools.judges.jury import build_member

    context = {k: v for k, v in {"constitution": constitution, "policy": policy}.items()
               if v is not None}
    return LengthControlledJudge(build_member(judge, **context),
                                 LengthControl.from_settings(length_control))
