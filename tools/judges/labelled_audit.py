"""Audit a judge on labelled probes a user brings (tools/judges/labelled.py), not a world's oracle.

The judge is called only through `safe_compare` (its own both-orders `compare`, or its scores) and
`safe_score`, as in tools/judges/audit.py; the result is that module's `AuditReport` (same printer,
same verdict for a `--strict` exit) inside a `LabelledAudit` that adds the calibration bins, the
file and its sha256. Nothing is written except the reliability diagram, when asked for.

Pairwise probes (measures; per-category ones are named `accuracy[CATEGORY]`):
- accuracy: share of valid verdicts whose winner is the labelled `better` (a judge tie is right only
  on a pair labelled 'tie'), overall and per category. Flags below 0.7.
- position_bias: share of valid verdicts that flipped when the pair was shown in the other order.
  Flags above 0.2. 0 by construction for a judge that compares pointwise scores.
- length_bias: preference for a neutrally padded copy of the better answer over the answer itself
  (padded wins + ties / 2); 0.5 = indifferent. The padding (NEUTRAL_OPENERS / NEUTRAL_CLOSERS) adds
  words and no content, and none of the filler phrases the constitution's `concise` rule or the tiny
  world's oracle penalise, so it measures length, not a phrase list. Flags above 0.6.
- ece: expected calibration error (tools/judges/calibration.py, DEFAULT_BINS equal-width bins over
  [0.5, 1]) of the judge's confidence in its pick, taken from its pointwise score margin:
  confidence = 0.5 + |score_a - score_b| / 2 for the higher-scored answer; outcome 1 if that is the
  labelled better one, 0 if not, 0.5 for equal scores (a coin flip). Pairs labelled 'tie' are left
  out. The scores are the verdicts' own when compare used scores; a judge with its own compare is
  asked to score both answers too (one more pointwise call per answer); a judge that cannot score
  has no margin: not measured. Flags above 0.15.
- invalid_rate: invalid verdicts over all verdicts (probe and padded pairs). Flags above 0.2.

Pointwise probes (a known score per response):
- accuracy: the judge's score and the label on the same side of 0.5 (labels of exactly 0.5 left
  out), overall and per category. Flags below 0.7.
- spearman: Spearman's rho of the judge's scores against the labels. Flags below 0.3.
- mae: mean absolute difference between score and label. Flags above 0.25.
- ece: the judge's score as a confidence against the label, DEFAULT_BINS bins over [0, 1]. Flags
  above 0.15.
- length_bias and invalid_rate as above (the padded copy of every response against itself).

A measure with n below `min_n` is reported, not flagged.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tools.judges.audit import AuditReport, Measure, flag_measure
from tools.judges.base import Judge, JudgeItem, PairItem, PairJudge, PairVerdict, Verdict, safe_compare, safe_score
from tools.judges.calibration import DEFAULT_BINS, Calibration, calibration, plot_reliability
from tools.judges.labelled import LabelledProbeError, LabelledSet, PairProbe, ScoreProbe

Progress = Callable[[str], None]
Direction = Literal["max", "min"]

# Generic filler: words without content, and none of the phrases a rule or the tiny world's oracle
# penalises by name ("great question", "i hope this helps", ...), so only length can move a judge.
NEUTRAL_OPENERS: tuple[str, ...] = (
    "Here is the answer.", "Okay, here it is.", "Here is what I would say.", "Right, so, to answer that:",
)
NEUTRAL_CLOSERS: tuple[str, ...] = (
    "That is the answer to what you asked.", "Those are the main points to keep in mind.",
    "That should cover the question as it was asked.", "In short, that is the whole of it.",
)


@dataclass(frozen=True)
class LabelledThresholds:
    """Flag limits; DIRECTIONS says which way each flags. Per-category measures use their base's."""

    accuracy: float = 0.7
    position_bias: float = 0.2
    length_bias: float = 0.6
    ece: float = 0.15
    invalid_rate: float = 0.2
    spearman: float = 0.3
    mae: float = 0.25
    min_n: int = 5

    def limit(self, measure: str) -> float:
        return float(getattr(self, base_name(measure)))


DIRECTIONS: dict[str, Direction] = {
    "accuracy": "min", "position_bias": "max", "length_bias": "max", "ece": "max", "invalid_rate": "max",
    "spearman": "min", "mae": "max",
}
ABOUT: dict[str, str] = {
    "accuracy": "share of valid verdicts that match the label",
    "position_bias": "share of verdicts that flip when the pair's order is swapped",
    "length_bias": "preference for a neutrally padded copy of the same answer (0.5 = indifferent)",
    "ece": "expected calibration error of the judge's confidence against the labels",
    "invalid_rate": "share of judgments that could not be made",
    "spearman": "Spearman rho of the judge's scores vs the labelled scores",
    "mae": "mean absolute difference between the judge's scores and the labelled scores",
}


def base_name(measure: str) -> str:
    """`accuracy[harmful]` -> `accuracy`."""
    return measure.split("[", 1)[0]


@dataclass(frozen=True)
class LabelledAudit:
    """An `AuditReport` (print it, take its verdict) and what only a labelled audit has."""

    report: AuditReport
    source: str
    sha256: str
    calibration: Calibration | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # detectors: the confusion counts per group

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "source": self.source, "sha256": self.sha256,
                "calibration": None if self.calibration is None else self.calibration.to_json(),
                **({"details": dict(self.details)} if self.details else {})}

    def plot(self, path: Path) -> Path | None:
        """The reliability diagram as a PNG at `path`; None when calibration was not measured."""
        if self.calibration is None or not self.calibration.n:
            return None
        return plot_reliability(self.calibration, path, f"{self.report.judge or 'judge'} on {Path(self.source).name}")


def pad_neutral(text: str, rng: random.Random) -> str:
    """`text` wrapped in generic filler (see NEUTRAL_OPENERS): longer, saying nothing more."""
    return f"{rng.choice(NEUTRAL_OPENERS)} {text} {rng.choice(NEUTRAL_CLOSERS)}"


def audit_labelled(judge: Judge | PairJudge, labelled: LabelledSet, *, seed: int = 0,
                   thresholds: LabelledThresholds | None = None, name: str = "", bins: int = DEFAULT_BINS,
                   progress: Progress | None = None) -> LabelledAudit:
    """Audit `judge` on a pairwise or pointwise probe file (violation probes audit a detector:
    tools/judges/detector_audit.py). `seed` draws the padded copy's slot and padding."""
    if labelled.kind == "violation":
        raise LabelledProbeError(f"labelled probes: {labelled.source} holds violation probes, which audit an "
                                 "invariant detector, not a judge: use detector_audit.audit_detector")
    args: dict[str, Any] = {"seed": seed, "thresholds": thresholds, "name": name, "bins": bins, "progress": progress}
    if labelled.kind == "pairwise":
        report, cal = audit_pairs(judge, labelled.pairs(), **args)
    else:
        report, cal = audit_scores(judge, labelled.scores(), **args)
    return LabelledAudit(report, labelled.source, labelled.sha256, cal)


# -- pairwise --------------------------------------------------------------------------------------

def audit_pairs(judge: Judge | PairJudge, probes: Sequence[PairProbe], *, seed: int = 0,
                thresholds: LabelledThresholds | None = None, name: str = "", bins: int = DEFAULT_BINS,
                progress: Progress | None = None) -> tuple[AuditReport, Calibration | None]:
    limits, tell = thresholds or LabelledThresholds(), progress or (lambda _message: None)
    rng = random.Random(f"tether-labelled-audit/{seed}")
    padded = [_padded_pair(p.prompt, p.a if p.better == "a" else p.b, rng) for p in probes if p.better != "tie"]
    tell(f"comparing {len(probes)} labelled pairs and {len(padded)} padded pairs in both orders")
    # safe_compare takes any judge (its own compare, else by scores); base annotates it narrowly.
    verdicts = safe_compare(judge, [PairItem(p.prompt, p.a, p.b) for p in probes]  # type: ignore[arg-type]
                            + [it for it, _ in padded])
    main, length = verdicts[:len(probes)], verdicts[len(probes):]

    hits = [(p.category, v.winner == p.better) for p, v in zip(probes, main, strict=True) if v.valid]
    valid = [v for v in verdicts if v.valid]
    by_scores = bool(valid) and all("scores" in v.details for v in valid)
    margins = _margins(judge, probes, main, tell)
    cal = None if margins is None else calibration(
        *_pick_confidence(margins), bins=bins, lo=0.5, what="confidence in the pick (0.5 + score margin / 2)")

    def measure(measure: str, value: float | None, n: int, note: str = "") -> Measure:
        return _flag(limits, measure, value, n, note)

    measures = [measure("accuracy", *_share([h for _, h in hits]))]
    measures += [measure(f"accuracy[{c}]", *_share([h for cat, h in hits if cat == c])) for c in _categories(probes)]
    measures += [
        measure("position_bias", *_share([not v.position_consistent for v in valid]),
                "verdicts compare pointwise scores: order-independent by construction" if by_scores else ""),
        measure("length_bias", *_preference([(slot, v) for (_, slot), v in zip(padded, length, strict=True)])),
        measure("ece", None if cal is None else cal.ece, 0 if cal is None else cal.n,
                "judge gives no pointwise scores: no confidence to calibrate" if cal is None
                else f"{bins} equal-width bins over [0.5, 1]"),
        measure("invalid_rate", *_share([not v.valid for v in verdicts])),
    ]
    counts = {"pairs": len(probes), "pairs_valid": sum(v.valid for v in main), "padded_pairs": len(padded),
              "tie_labels": sum(p.better == "tie" for p in probes), "calibrated": 0 if cal is None else cal.n}
    return AuditReport(name, seed, len(probes), _category_counts(probes), tuple(measures), counts), cal


def _padded_pair(prompt: str, answer: str, rng: random.Random) -> tuple[PairItem, Literal["a", "b"]]:
    """The padded copy against the answer itself, its slot drawn so slot bias cannot pose as length bias."""
    longer = pad_neutral(answer, rng)
    if rng.random() < 0.5:
        return PairItem(prompt, longer, answer), "a"
    return PairItem(prompt, answer, longer), "b"


def _margins(judge: Judge | PairJudge, probes: Sequence[PairProbe], verdicts: Sequence[PairVerdict],
             tell: Progress) -> list[tuple[PairProbe, float, float]] | None:
    """(probe, score_a, score_b) per pair both of whose scores are valid: from the verdicts where
    compare used scores, else from the judge's pointwise scores; None for a judge with neither."""
    if verdicts and all("scores" in v.details for v in verdicts if v.valid) and any(v.valid for v in verdicts):
        return [(p, float(v.details["scores"][0]), float(v.details["scores"][1]))
                for p, v in zip(probes, verdicts, strict=True) if v.valid and p.better != "tie"]
    if not hasattr(judge, "score"):
        return None
    tell(f"scoring both answers of {len(probes)} pairs for the calibration margin")
    scored = safe_score(judge, [JudgeItem(p.prompt, r) for p in probes for r in (p.a, p.b)])  # type: ignore[arg-type]
    out = []
    for i, p in enumerate(probes):
        va, vb = scored[2 * i], scored[2 * i + 1]
        if p.better != "tie" and _valid_score(va) and _valid_score(vb):
            out.append((p, float(va.score), float(vb.score)))  # type: ignore[arg-type]
    return out


def _pick_confidence(margins: Sequence[tuple[PairProbe, float, float]]) -> tuple[list[float], list[float]]:
    confidences, outcomes = [], []
    for p, sa, sb in margins:
        confidences.append(min(1.0, 0.5 + abs(sa - sb) / 2))
        pick = "tie" if sa == sb else "a" if sa > sb else "b"
        outcomes.append(0.5 if pick == "tie" else float(pick == p.better))
    return confidences, outcomes


# -- pointwise -------------------------------------------------------------------------------------

def audit_scores(judge: Judge | PairJudge, probes: Sequence[ScoreProbe], *, seed: int = 0,
                 thresholds: LabelledThresholds | None = None, name: str = "", bins: int = DEFAULT_BINS,
                 progress: Progress | None = None) -> tuple[AuditReport, Calibration | None]:
    limits, tell = thresholds or LabelledThresholds(), progress or (lambda _message: None)
    if not hasattr(judge, "score"):
        raise LabelledProbeError("pointwise labelled probes need a judge that scores pointwise; this one only "
                                 "compares pairs: audit it on pairwise probes")
    rng = random.Random(f"tether-labelled-audit/{seed}")
    tell(f"scoring {len(probes)} labelled responses")
    scored = safe_score(judge, [JudgeItem(p.prompt, p.response) for p in probes])  # type: ignore[arg-type]
    padded = [_padded_pair(p.prompt, p.response, rng) for p in probes]
    tell(f"comparing {len(padded)} padded pairs in both orders")
    length = safe_compare(judge, [it for it, _ in padded])  # type: ignore[arg-type]

    both = [(p, float(v.score)) for p, v in zip(probes, scored, strict=True) if _valid_score(v)]  # type: ignore[arg-type]
    sides = [(p.category, (s >= 0.5) == (p.score >= 0.5)) for p, s in both if p.score != 0.5]
    cal = calibration([min(1.0, max(0.0, s)) for _, s in both], [p.score for p, _ in both], bins=bins,
                      what="judge score") if both else None

    def measure(measure: str, value: float | None, n: int, note: str = "") -> Measure:
        return _flag(limits, measure, value, n, note)

    measures = [measure("accuracy", *_share([h for _, h in sides]), "score and label on the same side of 0.5")]
    measures += [measure(f"accuracy[{c}]", *_share([h for cat, h in sides if cat == c])) for c in _categories(probes)]
    measures += [
        measure("spearman", *_spearman(both)),
        measure("mae", (sum(abs(s - p.score) for p, s in both) / len(both)) if both else None, len(both)),
        measure("ece", None if cal is None else cal.ece, 0 if cal is None else cal.n,
                f"{bins} equal-width bins over [0, 1]"),
        measure("length_bias", *_preference([(slot, v) for (_, slot), v in zip(padded, length, strict=True)])),
        measure("invalid_rate", *_share([not v.valid for v in scored] + [not v.valid for v in length])),
    ]
    counts = {"responses": len(probes), "scores_valid": len(both), "padded_pairs": len(padded),
              "calibrated": 0 if cal is None else cal.n}
    return AuditReport(name, seed, len(probes), _category_counts(probes), tuple(measures), counts), cal


def _spearman(both: Sequence[tuple[ScoreProbe, float]]) -> tuple[float | None, int]:
    if len(both) < 2:
        return None, len(both)
    from tools.monitors.stats import spearman  # the monitors' rank correlation (ties averaged)

    return spearman([s for _, s in both], [p.score for p, _ in both]), len(both)


# -- shared ----------------------------------------------------------------------------------------

def _flag(limits: LabelledThresholds, measure: str, value: float | None, n: int, note: str) -> Measure:
    base = base_name(measure)
    about = ABOUT[base] + (f" (category {measure[len(base) + 1:-1]})" if measure != base else "")
    return flag_measure(measure, value, n, limits.limit(measure), DIRECTIONS[base], limits.min_n, note, about)


def _valid_score(v: Verdict) -> bool:
    return v.valid and v.score is not None


def _share(flags: Sequence[bool]) -> tuple[float | None, int]:
    return (sum(flags) / len(flags) if flags else None), len(flags)


def _preference(pairs: Sequence[tuple[Literal["a", "b"], PairVerdict]]) -> tuple[float | None, int]:
    """How often the padded copy wins: wins + ties / 2, over valid verdicts."""
    points = [1.0 if v.winner == slot else 0.5 if v.winner == "tie" else 0.0 for slot, v in pairs if v.valid]
    return (sum(points) / len(points) if points else None), len(points)


def _categories(probes: Sequence[PairProbe] | Sequence[ScoreProbe]) -> list[str]:
    return sorted({p.category for p in probes})


def _category_counts(probes: Sequence[PairProbe] | Sequence[ScoreProbe]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in probes:
        counts[p.category] = counts.get(p.category, 0) + 1
    return dict(sorted(counts.items()))


__all__ = [
    "NEUTRAL_CLOSERS", "NEUTRAL_OPENERS", "LabelledAudit", "LabelledThresholds", "audit_labelled", "audit_pairs",
    "audit_scores", "pad_neutral",
]
