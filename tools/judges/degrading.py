"""The `degrading` judge: a TEST FIXTURE. It is a wrapped judge, honest until the run reaches round
`from_round`, then unreliable, as a served judge can become mid-run (its model swapped behind the same
name, a quota that cuts answers short). It exists to give the unreliable-judge failure world something
to fail with (tools/worlds/tiny/failures/unreliable_judge.py); never configure it for a real run.

From round `from_round` on, each verdict is decided by a hash of (round, prompt, response), so a rerun
degrades the same items the same way:

- a share `invalid_share` of its pointwise verdicts is invalid (an unparseable answer);
- a share `noise_share` of the rest gets a score drawn uniformly from [0, 1) instead of the wrapped
  judge's (pairs built from them are partly noise);
- asked to compare a pair in both orders, a share `flip_share` of its verdicts follows the position
  (the first response wins in each order), which the position-consistency monitor sees.

Before `from_round` every verdict is the wrapped judge's. The round is read on every call from the
run (the build context `run_round`, which agent/run/context.py passes to every judge it builds), so a
resumed run degrades from the same round.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tools.judges.base import (
    JUDGES,
    Judge,
    JudgeItem,
    PairItem,
    PairVerdict,
    Verdict,
    combine_orders,
    compare_by_scores,
    safe_score,
)
from tools.registry import Built, PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution
    from tools.judges.base import PolicyHandle

RoundClock = Callable[[], int]  # the round the run is in now


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts`: which items degrade is the same on every rerun."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class DegradingJudge:
    def __init__(self, wrapped: Built[Judge], clock: RoundClock, from_round: int, invalid_share: float,
                 noise_share: float, flip_share: float) -> None:
        self.wrapped, self.clock, self.from_round = wrapped, clock, from_round
        self.invalid_share, self.noise_share, self.flip_share = invalid_share, noise_share, flip_share

    def degraded(self) -> bool:
        return self.clock() >= self.from_round

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        verdicts = safe_score(self.wrapped.plugin, items)
        if not self.degraded():
            return verdicts
        round_no = self.clock()
        return [self._degrade(round_no, item, verdict) for item, verdict in zip(items, verdicts, strict=True)]

    def _degrade(self, round_no: int, item: JudgeItem, verdict: Verdict) -> Verdict:
        u = unit_hash("score", round_no, item.prompt, item.response)
        if u < self.invalid_share:
            return Verdict.invalid("", f"degrading judge: no verdict (round {round_no})")
        if u < self.invalid_share + self.noise_share:
            noise = unit_hash("noise", round_no, item.prompt, item.response)
            return Verdict(noise, True, verdict.raw, {**verdict.details, "degraded": "noise"})
        return verdict

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        honest = compare_by_scores(self, items)  # the scores above, degraded or not
        if not self.degraded():
            return honest
        round_no = self.clock()
        out = []
        for item, verdict in zip(items, honest, strict=True):
            if unit_hash("flip", round_no, item.prompt, item.a, item.b) < self.flip_share:
                # Follows the position: "a" in the a-first order and "a" (the original b) in the b-first one.
                out.append(combine_orders("a", "a", verdict.raw, degraded="position"))
            else:
                out.append(verdict)
        return out

    def close(self) -> None:
        if hasattr(self.wrapped.plugin, "close"):
            self.wrapped.plugin.close()


def _share(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise PluginSettingsError(f"degrading: {name} must be in [0, 1], got {value}")
    return float(value)


@JUDGES.register("degrading")
def degrading(
    judge: Mapping[str, Any] | None = None,
    from_round: int = 4,
    invalid_share: float = 0.1,
    noise_share: float = 0.5,
    flip_share: float = 0.5,
    constitution: Constitution | None = None,
    policy: PolicyHandle | None = None,
    run_round: RoundClock | None = None,
) -> DegradingJudge:
    """Test fixture: a wrapped judge (default rules) that turns unreliable from round from_round on:
    invalid_share of its verdicts invalid, noise_share of the rest random, flip_share of its pairwise
    verdicts following the position. Context: run_round (required)."""
    from tools.judges.jury import build_member

    if run_round is None:
        raise PluginSettingsError("judge 'degrading' needs the run's round (build context run_round=...)")
    if type(from_round) is not int or from_round < 1:
        raise PluginSettingsError(f"degrading: from_round must be a whole number >= 1, got {from_round!r}")
    shares = {name: _share(name, value) for name, value in
              (("invalid_share", invalid_share), ("noise_share", noise_share), ("flip_share", flip_share))}
    if shares["invalid_share"] + shares["noise_share"] > 1.0:
        raise PluginSettingsError("degrading: invalid_share + noise_share must be at most 1")
    context = {k: v for k, v in {"constitution": constitution, "policy": policy}.items() if v is not None}
    wrapped = build_member(dict(judge) if judge is not None else {"name": "rules"}, **context)
    return DegradingJudge(wrapped, run_round, from_round, **shares)
