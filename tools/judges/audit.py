"""Audit a judge before trusting it: position bias, length bias, self-preference, agreement with the
world's oracle, and the invalid-judgment rate, each flagged against a documented threshold.

Pure logic: a world with reference answers (`tools.worlds.AuditProbeSource`, e.g. the tiny world)
builds the probes (held-out prompts with an answer per style); `audit_judge` runs the judge on pairs
built from them (through the judge pool's both-orders `compare`, never a re-implementation of it)
and returns an `AuditReport`. Nothing is written.

Pairs per probe: the family's good answer against each other style it has (wrong, over_refusal,
rude, padded), and, when the policy's greedy answer is given, that answer against a reference the
oracle scores the same (an equally correct answer with different text). Which answer sits in slot
A is drawn from the seed, so a first-slot preference cannot masquerade as a content preference.

Measures (value, n, threshold; a measure with n below `Thresholds.min_n` is reported, not flagged):
- position_bias: share of valid pairwise verdicts that were position-inconsistent, i.e. the
  verdict flipped when the pair was shown in the other order. Flags above 0.2. A judge that compares
  pointwise scores is 0 by construction (scores do not see the order).
- length_bias: preference for a padded copy (the world's filler wrapping) of the same good
  answer over the plain answer: (padded wins + ties / 2) / valid pairs; 0.5 = indifferent, 1 =
  always prefers the padding. The oracle always prefers the plain answer (or ties, for refusals).
  Flags above 0.6.
- self_preference: the same rate for the policy's own answer against an equally correct reference
  (same oracle score). 0.5 = indifferent. Flags above 0.6.
- oracle_agreement: among pairs the oracle scores differently, the share where the judge's winner
  is the oracle's better answer (oracle ties excluded; a judge tie counts as disagreement). Flags
  below 0.6.
- oracle_spearman: Spearman's rho between the judge's pointwise scores and the oracle's over every
  probe answer (valid scores only); only for judges that score pointwise. Flags below 0.3.
- invalid_rate: invalid judgments (pairwise verdicts and pointwise scores) over all judgments.
  Flags above 0.2 (the controller's default max_invalid_share: a round above it is not trained on).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tether_types import Oracle, Prompt
from tools.judges.base import Judge, JudgeItem, PairItem, PairJudge, PairVerdict, Verdict, safe_compare, safe_score
from tools.worlds.references import AuditProbes, Probe

Progress = Callable[[str], None]
PairKind = Literal["style", "length", "self"]

DEFAULT_PROBES = 48
_EPS = 1e-9
# The styles a family's good answer is compared against, in this order.
CONTRAST_STYLES: tuple[str, ...] = ("wrong", "over_refusal", "rude", "padded")
MEASURES: tuple[str, ...] = ("position_bias", "length_bias", "self_preference", "oracle_agreement",
                             "oracle_spearman", "invalid_rate")


# -- probes ----------------------------------------------------------------------------------------

# -- the report ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Thresholds:
    """Flag limits (see the module docstring). `max` measures flag above, `min` ones below."""

    position_bias: float = 0.2
    length_bias: float = 0.6
    self_preference: float = 0.6
    oracle_agreement: float = 0.6
    oracle_spearman: float = 0.3
    invalid_rate: float = 0.2
    min_n: int = 5

    def limit(self, measure: str) -> float:
        return float(getattr(self, measure))


# Which way each measure flags: "max" = flags above the threshold, "min" = flags below it.
DIRECTIONS: dict[str, Literal["max", "min"]] = {
    "position_bias": "max", "length_bias": "max", "self_preference": "max",
    "oracle_agreement": "min", "oracle_spearman": "min", "invalid_rate": "max",
}
DESCRIPTIONS: dict[str, str] = {
    "position_bias": "share of verdicts that flip when the pair's order is swapped",
    "length_bias": "preference for a padded copy of the same answer (0.5 = indifferent)",
    "self_preference": "preference for the policy's answer over an equally correct one (0.5 = indifferent)",
    "oracle_agreement": "share of oracle-ordered pairs where the judge picks the oracle's winner",
    "oracle_spearman": "Spearman rho of pointwise scores vs oracle scores",
    "invalid_rate": "share of judgments that could not be made",
}


@dataclass(frozen=True)
class Measure:
    name: str
    value: float | None
    n: int
    threshold: float
    direction: Literal["max", "min"]
    flagged: bool | None  # None: not measured (n below min_n, or not applicable)
    note: str = ""
    about: str = ""  # what it measures, for a measure not in DESCRIPTIONS (e.g. a labelled-probe audit's)

    @property
    def description(self) -> str:
        return self.about or DESCRIPTIONS.get(self.name, "")

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "n": self.n, "threshold": self.threshold, "direction": self.direction,
                "flagged": self.flagged, "description": self.description, "note": self.note}


@dataclass(frozen=True)
class AuditReport:
    judge: str
    seed: int
    probes: int
    families: Mapping[str, int]
    measures: tuple[Measure, ...]
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def flagged(self) -> list[str]:
        return [m.name for m in self.measures if m.flagged]

    @property
    def unmeasured(self) -> list[str]:
        return [m.name for m in self.measures if m.flagged is None]

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        """"fail" if any measure is flagged; an unmeasured one neither fails nor passes it."""
        return "fail" if self.flagged else "pass"

    def measure(self, name: str) -> Measure:
        for m in self.measures:
            if m.name == name:
                return m
        raise KeyError(f"no measure {name!r} (measures: {', '.join(m.name for m in self.measures)})")

    def to_json(self) -> dict[str, Any]:
        return {"judge": self.judge, "seed": self.seed, "probes": self.probes, "families": dict(self.families),
                "verdict": self.verdict, "flagged": self.flagged, "unmeasured": self.unmeasured,
                "measures": {m.name: m.to_json() for m in self.measures}, "counts": dict(self.counts)}


def flag_measure(name: str, value: float | None, n: int, limit: float, direction: Literal["max", "min"],
                 min_n: int, note: str = "", about: str = "") -> Measure:
    """A measure flagged against its limit: above a "max" one or below a "min" one; not flagged (None)
    when unmeasured or measured on fewer than `min_n`, which the note then says."""
    flagged = None if value is None or n < min_n else (value > limit if direction == "max" else value < limit)
    if value is not None and n < min_n:
        note = "; ".join(x for x in (note, f"n < {min_n}: not flagged") if x)
    return Measure(name, value, n, limit, direction, flagged, note, about)


# -- the audit -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Pair:
    kind: PairKind
    probe: Probe
    item: PairItem
    subject: Literal["a", "b"]  # the slot holding the answer under test (padded / policy / contrast)
    oracle: tuple[float | None, float | None]  # oracle scores of slots a and b


def audit_judge(
    judge: Judge | PairJudge,
    probes: AuditProbes,
    policy_answers: Mapping[str, str] | None,
    oracle: Oracle | None,
    *,
    thresholds: Thresholds | None = None,
    name: str = "",
    progress: Progress | None = None,
) -> AuditReport:
    """Run the audit. `policy_answers` maps prompt id -> the policy's greedy answer (None or missing
    ids: self-preference is not measured for those); `oracle(prompt, response)` is the task set's
    verifier (None: no oracle measures). `progress` is told each stage as it starts."""
    limits = thresholds or Thresholds()
    tell = progress or (lambda _message: None)
    rng = random.Random(f"tether-audit-slots/{probes.seed}")
    score = _oracle_cache(oracle)

    pairs: list[_Pair] = []
    self_skipped = 0
    for probe in probes.probes:
        good = probe.references["good"]
        for style in CONTRAST_STYLES:
            if style in probe.references and probe.references[style].strip() != good.strip():
                pairs.append(_pair("length" if style == "padded" else "style", probe, good,
                                   probe.references[style], rng, score))
        answer = (policy_answers or {}).get(probe.prompt.id)
        if answer is not None:
            reference = _equally_correct(probe, answer, score)
            if reference is None:
                self_skipped += 1
            else:
                pairs.append(_pair("self", probe, reference, answer, rng, score))

    tell(f"comparing {len(pairs)} pairs in both orders")
    verdicts = safe_compare(judge, [p.item for p in pairs])

    scored: list[tuple[Verdict, float | None]] = []
    if hasattr(judge, "score"):
        items = _pointwise_items(probes, policy_answers)
        tell(f"scoring {len(items)} answers pointwise")
        for (probe, text), verdict in zip(items, safe_score(judge, [JudgeItem(p.prompt.text, t) for p, t in items]),
                                          strict=True):
            scored.append((verdict, score(probe.prompt, text)))

    def measured(measure: str, value: float | None, n: int, note: str = "") -> Measure:
        return flag_measure(measure, value, n, limits.limit(measure), DIRECTIONS[measure], limits.min_n, note)

    valid = [(p, v) for p, v in zip(pairs, verdicts, strict=True) if v.valid]
    # compare_by_scores records the two scores: such verdicts cannot depend on the order.
    by_scores = bool(valid) and all("scores" in v.details for _, v in valid)
    measures = [
        measured("position_bias", *_share([not v.position_consistent for _, v in valid]),
                 "verdicts compare pointwise scores: order-independent by construction" if by_scores else ""),
        measured("length_bias", *_preference([(p, v) for p, v in valid if p.kind == "length"])),
        measured("self_preference", *_preference([(p, v) for p, v in valid if p.kind == "self"]),
                 _self_note(policy_answers, self_skipped)),
        measured("oracle_agreement", *_oracle_agreement(valid),
                 "" if oracle is not None else "no oracle"),
        measured("oracle_spearman", *_spearman(scored),
                 "" if scored else "judge does not score pointwise"),
        measured("invalid_rate",
                 *_share([not v.valid for v in verdicts] + [not v.valid for v, _ in scored])),
    ]
    kinds = Counter(p.kind for p in pairs)
    counts = {"pairs": len(pairs), "pairs_valid": len(valid), "style_pairs": kinds["style"],
              "length_pairs": kinds["length"], "self_pairs": kinds["self"],
              "self_skipped_no_equal_reference": self_skipped, "pointwise_scores": len(scored)}
    return AuditReport(name, probes.seed, len(probes), probes.families(), tuple(measures), counts)


def _oracle_cache(oracle: Oracle | None) -> Oracle:
    cache: dict[tuple[str, str], float | None] = {}

    def score(prompt: Prompt, text: str) -> float | None:
        if oracle is None:
            return None
        key = (prompt.id, text)
        if key not in cache:
            value = oracle(prompt, text)
            cache[key] = None if value is None else float(value)
        return cache[key]

    return score


def _pair(kind: PairKind, probe: Probe, reference: str, subject: str, rng: random.Random,
          score: Callable[[Prompt, str], float | None]) -> _Pair:
    o_ref, o_sub = score(probe.prompt, reference), score(probe.prompt, subject)
    if rng.random() < 0.5:
        return _Pair(kind, probe, PairItem(probe.prompt.text, subject, reference), "a", (o_sub, o_ref))
    return _Pair(kind, probe, PairItem(probe.prompt.text, reference, subject), "b", (o_ref, o_sub))


def _equally_correct(probe: Probe, answer: str, score: Callable[[Prompt, str], float | None]) -> str | None:
    """A reference the oracle scores exactly like `answer`, with different text: the closest in
    length (so length bias does not pose as self-preference), a "good" one on a tie."""
    target = score(probe.prompt, answer)
    if target is None:
        return None
    words = len(answer.split())
    candidates = [*probe.references.items(), *probe.alternates]
    best: tuple[tuple[int, bool, int], str] | None = None
    for i, (style, text) in enumerate(candidates):
        other = score(probe.prompt, text)
        if text.strip() == answer.strip() or other is None or abs(other - target) > _EPS:
            continue
        key = (abs(len(text.split()) - words), style != "good", i)
        if best is None or key < best[0]:
            best = (key, text)
    return None if best is None else best[1]


def _self_note(policy_answers: Mapping[str, str] | None, skipped: int) -> str:
    if policy_answers is None:
        return "no policy answers given"
    return f"{skipped} probe(s) had no equally correct reference" if skipped else ""


def _share(flags: Sequence[bool]) -> tuple[float | None, int]:
    return (sum(flags) / len(flags) if flags else None), len(flags)


def _preference(pairs: Sequence[tuple[_Pair, PairVerdict]]) -> tuple[float | None, int]:
    """How often the subject (padded / policy answer) wins: wins + ties / 2, over valid verdicts."""
    if not pairs:
        return None, 0
    points = [1.0 if v.winner == p.subject else 0.5 if v.winner == "tie" else 0.0 for p, v in pairs]
    return sum(points) / len(points), len(points)


def _oracle_agreement(pairs: Sequence[tuple[_Pair, PairVerdict]]) -> tuple[float | None, int]:
    hits: list[bool] = []
    for p, v in pairs:
        oa, ob = p.oracle
        if oa is None or ob is None or abs(oa - ob) <= _EPS:
            continue
        hits.append(v.winner == ("a" if oa > ob else "b"))
    return _share(hits)


def _spearman(scored: Sequence[tuple[Verdict, float | None]]) -> tuple[float | None, int]:
    both = [(float(v.score), o) for v, o in scored if v.valid and v.score is not None and o is not None]
    if len(both) < 2:
        return None, len(both)
    from tools.monitors.stats import spearman  # the monitors' rank correlation (ties averaged)

    return spearman([j for j, _ in both], [o for _, o in both]), len(both)


def _pointwise_items(probes: AuditProbes, policy_answers: Mapping[str, str] | None) -> list[tuple[Probe, str]]:
    """Every distinct answer of every probe (references, then the policy's), each once."""
    out: list[tuple[Probe, str]] = []
    for probe in probes.probes:
        texts = list(probe.references.values())
        answer = (policy_answers or {}).get(probe.prompt.id)
        if answer is not None:
            texts.append(answer)
        out += [(probe, t) for t in dict.fromkeys(texts)]
    return out


__all__ = [
    "DEFAULT_PROBES", "MEASURES", "AuditProbes", "AuditReport", "Measure", "Probe", "Thresholds",
    "audit_judge", "flag_measure",
]
