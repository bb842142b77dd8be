"""Calibration of a judge's confidence against labels: expected calibration error and a reliability
diagram.

Predictions are confidences in [lo, 1] (a pairwise judge's confidence in its pick lies in [0.5, 1];
a pointwise score in [0, 1]); outcomes are what happened, in [0, 1] (1 = the pick was right, or the
known score). The range is cut into `bins` equal-width bins (the last one closed on the right); per
bin, the mean confidence is set against the mean outcome, and

    ECE = sum over bins of (bin count / total) * |mean outcome - mean confidence|

(Guo et al., 2017, "On Calibration of Modern Neural Networks"). 0 = calibrated; a judge that is
always 90% sure and right half the time has ECE 0.4. Empty bins contribute nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BINS = 10


@dataclass(frozen=True)
class Bin:
    lo: float
    hi: float
    count: int
    confidence: float | None  # mean confidence of the bin's predictions (None: empty)
    outcome: float | None  # mean outcome (accuracy, for 0/1 outcomes)


@dataclass(frozen=True)
class Calibration:
    ece: float | None  # None: no predictions
    n: int
    bins: tuple[Bin, ...]
    what: str  # what the confidence is, for the report and the plot's axis

    def to_json(self) -> dict[str, Any]:
        return {"ece": self.ece, "n": self.n, "bins": len(self.bins), "what": self.what,
                "reliability": [{"lo": b.lo, "hi": b.hi, "count": b.count, "confidence": b.confidence,
                                 "outcome": b.outcome} for b in self.bins]}


def calibration(confidences: Sequence[float], outcomes: Sequence[float], *, bins: int = DEFAULT_BINS,
                lo: float = 0.0, what: str = "confidence") -> Calibration:
    """Reliability bins and ECE of `confidences` (each in [lo, 1]) against `outcomes` (each in [0, 1])."""
    if len(confidences) != len(outcomes):
        raise ValueError(f"{len(confidences)} confidences for {len(outcomes)} outcomes")
    if bins < 1 or not 0.0 <= lo < 1.0:
        raise ValueError(f"calibration needs bins >= 1 and 0 <= lo < 1, got bins={bins}, lo={lo}")
    for c, o in zip(confidences, outcomes, strict=True):
        if not (math.isfinite(c) and lo - 1e-9 <= c <= 1.0 + 1e-9 and math.isfinite(o) and 0.0 <= o <= 1.0):
            raise ValueError(f"confidence {c} (must be in [{lo}, 1]) or outcome {o} (in [0, 1]) out of range")
    width = (1.0 - lo) / bins
    members: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for c, o in zip(confidences, outcomes, strict=True):
        members[min(bins - 1, max(0, int((c - lo) / width)))].append((c, o))
    out, total = [], len(confidences)
    ece = 0.0
    for i, inside in enumerate(members):
        if inside:
            conf = sum(c for c, _ in inside) / len(inside)
            acc = sum(o for _, o in inside) / len(inside)
            ece += len(inside) / total * abs(acc - conf)
            out.append(Bin(lo + i * width, lo + (i + 1) * width, len(inside), conf, acc))
        else:
            out.append(Bin(lo + i * width, lo + (i + 1) * width, 0, None, None))
    return Calibration(ece if total else None, total, tuple(out), what)


def plot_reliability(cal: Calibration, path: Path, title: str) -> Path:
    """A reliability diagram PNG: mean outcome per bin against the diagonal of perfect calibration,
    with the bin counts below. Uses the Agg canvas directly (no pyplot), so no global backend changes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 5.6))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lo = cal.bins[0].lo if cal.bins else 0.0
    width = (cal.bins[0].hi - cal.bins[0].lo) if cal.bins else 0.1
    filled = [b for b in cal.bins if b.count]
    top.plot([lo, 1.0], [lo, 1.0], "--", color="gray", linewidth=1, label="calibrated")
    top.bar([b.lo for b in filled], [b.outcome or 0.0 for b in filled], width=width, align="edge",
            color="tab:blue", alpha=0.75, edgecolor="black", linewidth=0.5, label="mean outcome")
    top.plot([b.confidence for b in filled], [b.outcome for b in filled], "o", color="tab:red", markersize=4,
             label="(mean confidence, mean outcome)")
    top.set_xlim(lo, 1.0)
    top.set_ylim(0.0, 1.02)
    top.set_ylabel("mean outcome (accuracy)")
    ece = "n/a" if cal.ece is None else f"{cal.ece:.3f}"
    top.set_title(f"{title}\nECE {ece}, n={cal.n}, {len(cal.bins)} equal-width bins", fontsize=10)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar([b.lo for b in cal.bins], [b.count for b in cal.bins], width=width, align="edge",
               color="gray", edgecolor="black", linewidth=0.5)
    bottom.set_xlabel(cal.what)
    bottom.set_ylabel("count")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


__all__ = ["DEFAULT_BINS", "Bin", "Calibration", "calibration", "plot_reliability"]
