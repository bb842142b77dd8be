"""The drawing of `tether report` (agent/review/report.py gathers what is drawn): held-out curves, one small
plot per signal with the controller's thresholds, and the marked rounds, on a shared x axis."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.interventions import INTERVENTIONS, interventions

HELDOUT_PANELS = {"held-out oracle": "oracle", "held-out judge": "judge"}

# How a marked round is drawn: each intervention as it says (its `marker`), then the other marks.
MARKER_STYLE: dict[str, dict[str, Any]] = {
    **{spec.name: spec.marker.style() for spec in interventions()},
    "candidate rejected": {"color": "tab:red", "linestyle": ":"},
    "rollback": {"color": "black", "linestyle": "-."},
    "config change": {"color": "tab:gray", "linestyle": (0, (3, 1, 1, 1, 1, 1))},
}
CANDIDATE_STYLE: dict[str, dict[str, Any]] = {
    "approved": {"marker": "s", "color": "tab:purple"},
    "pending": {"marker": "D", "color": "tab:orange", "fillstyle": "none"},
    "not approved": {"marker": "x", "color": "dimgray"},
}
THRESHOLD_COLORS = ("tab:red", "tab:purple", "tab:olive", "tab:cyan")
OP_TEXT = {">": ">", "<": "<", ">=": "≥", "<=": "≤"}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Marker:
    x: float  # a round; a rollback between rounds r and r+1 sits at r + 0.5
    kind: str  # a key of MARKER_STYLE
    what: str


@dataclass(frozen=True)
class ThresholdLine:
    signal: str
    setting: str
    op: str
    by_round: dict[int, float]

    def label(self) -> str:
        values = sorted(set(self.by_round.values()))
        shown = "/".join(f"{v:.3g}" for v in values)
        return f"controller.{self.setting}\nfires when {OP_TEXT.get(self.op, self.op)} {shown}"


def _axes_setup(ax: Any, right: float) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(-0.5, right)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.25)
    ax.tick_params(labelsize=8)


def _draw_markers(ax: Any, marks: list[Marker]) -> None:
    for m in marks:
        ax.axvline(m.x, linewidth=1.6, alpha=0.55, zorder=0, **MARKER_STYLE[m.kind])


def _draw_thresholds(ax: Any, lines: list[ThresholdLine]) -> None:
    for i, t in enumerate(lines):
        color = THRESHOLD_COLORS[i % len(THRESHOLD_COLORS)]
        values = set(t.by_round.values())
        if len(values) == 1:
            ax.axhline(values.pop(), color=color, linestyle="--", linewidth=1.2, label=t.label())
        else:  # the threshold changed during the run (a config change): drawn per round
            xs = sorted(t.by_round)
            ax.step(xs, [t.by_round[x] for x in xs], where="mid", color=color, linestyle="--", linewidth=1.2,
                    label=t.label())


def _legend_for_markers(fig: Any, marks: list[Marker]) -> None:
    from matplotlib.lines import Line2D

    kinds = [k for k in MARKER_STYLE if any(m.kind == k for m in marks)]
    if not kinds:
        return
    handles = [Line2D([0], [0], linewidth=1.6, alpha=0.8, **MARKER_STYLE[k]) for k in kinds]
    labels = [f"intervention: {k}" if k in INTERVENTIONS else k for k in kinds]
    fig.legend(handles, labels, loc="lower center", ncol=len(kinds), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))


LEGEND_INCHES = 0.45  # room at the bottom of a figure for the legend of marked rounds


def plot_theme(title: str, series: dict[str, dict[int, float]], thresholds: dict[str, list[ThresholdLine]],
                marks: list[Marker], right: float, heldout: tuple[list[dict[str, Any]], dict[str, Any]],
                path: Path) -> None:
    import matplotlib.pyplot as plt

    names = list(series)
    cols = min(3, len(names))
    nrows = -(-len(names) // cols)
    height = 2.9 * nrows + 0.5 + (LEGEND_INCHES if marks else 0.0)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, height), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        if name in HELDOUT_PANELS:  # the same curves as scores.png
            _draw_heldout(ax, *heldout, HELDOUT_PANELS[name])
        else:
            points = sorted(series[name].items())
            ax.plot([x for x, _ in points], [y for _, y in points], "o-", color="tab:blue", markersize=4,
                    linewidth=1.5)
        _draw_thresholds(ax, thresholds.get(name, []))
        _draw_markers(ax, marks)
        _axes_setup(ax, right)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("round", fontsize=8)
        entries = len(ax.get_legend_handles_labels()[0])
        if name in HELDOUT_PANELS:  # as in scores.png
            ax.set_ylim(0, 1.02)
            if entries:
                ax.legend(fontsize=7, loc="best", framealpha=0.9)
        elif entries:  # headroom above the data and thresholds, so the legend hides nothing
            low, high = ax.get_ylim()
            ax.set_ylim(low, high + (high - low) * (0.3 * entries + 0.05))
            ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=12, fontweight="bold")
    _legend_for_markers(fig, marks)
    fig.tight_layout(rect=(0, (LEGEND_INCHES / height) if marks else 0.0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# How a round's candidate stands, as its curves label it: a candidate no reviewer has decided yet is
# "pending", never "not approved" (that is a decision: rejected, or discarded by a check or a stop).
CandidateStanding = Literal["approved", "pending", "not approved"]
CANDIDATE_STANDINGS: tuple[CandidateStanding, ...] = ("approved", "pending", "not approved")
UNDECIDED = frozenset({"candidate", "pending"})


def standing(checkpoint_status: str | None) -> CandidateStanding:
    if checkpoint_status == "approved":
        return "approved"
    return "pending" if checkpoint_status in UNDECIDED else "not approved"


def heldout_points(rows: list[dict[str, Any]], round0: dict[str, Any], metric: str
                    ) -> tuple[list[tuple[int, float]], list[tuple[int, float, CandidateStanding]]]:
    """(round, score of the checkpoint active after it) from round 0, and (round, candidate score, standing)."""
    after = [(0, round0.get(metric))] + [(r["round"], r[f"heldout_{metric}_after"]) for r in rows]
    candidates = [(r["round"], r[f"heldout_{metric}_candidate"], standing(r["checkpoint_status"])) for r in rows]
    return ([(x, float(y)) for x, y in after if is_number(y)],
            [(x, float(y), how) for x, y, how in candidates if is_number(y)])


def _draw_heldout(ax: Any, rows: list[dict[str, Any]], round0: dict[str, Any], metric: str) -> None:
    after, candidates = heldout_points(rows, round0, metric)
    if after:
        ax.plot(*zip(*after, strict=True), "o-", color="tab:blue", linewidth=1.8, markersize=5,
                label="active after the round")
    for how in CANDIDATE_STANDINGS:
        points = [(x, y) for x, y, stands in candidates if stands == how]
        if points:
            ax.plot(*zip(*points, strict=True), linestyle="none", markersize=7, label=f"candidate, {how}",
                    **CANDIDATE_STYLE[how])


def plot_scores(rows: list[dict[str, Any]], round0: dict[str, Any], marks: list[Marker], right: float,
                 path: Path) -> None:
    import matplotlib.pyplot as plt

    height = 3.8 + (LEGEND_INCHES if marks else 0.0)
    fig, axes = plt.subplots(1, 2, figsize=(13.8, height), squeeze=False)
    for ax, metric in zip(axes.flat, ("oracle", "judge"), strict=True):
        _draw_heldout(ax, rows, round0, metric)
        _draw_markers(ax, marks)
        _axes_setup(ax, right)
        ax.set_title(f"held-out {metric} score", fontsize=10)
        ax.set_xlabel("round", fontsize=8)
        ax.set_ylim(0, 1.02)
        if not ax.get_legend_handles_labels()[0]:
            ax.text(0.5, 0.5, f"no held-out {metric} score", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=8, loc="best", framealpha=0.85)
    _legend_for_markers(fig, marks)
    fig.tight_layout(rect=(0, (LEGEND_INCHES / height) if marks else 0.0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
