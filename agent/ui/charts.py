"""The run page's interactive charts: Plotly figures (hover, zoom, pan, a PNG download in the toolbar) of what
`tether report` draws as PNGs (agent/review/report.py `gather`: the same rounds, thresholds and marked rounds),
and the compare page's two runs overlaid. The browser draws them with the plotly.min.js that the `plotly`
package ships, served by the console itself (nothing is fetched from the internet).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from agent.review.plots import CANDIDATE_STANDINGS, HELDOUT_PANELS, Marker, ThresholdLine, heldout_points
from agent.review.report import THEME_TITLES, ReportData, gather
from memory import Run, Store

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
COLUMNS = 3  # small plots a row in a theme's figure
PANEL_HEIGHT = 260
CANDIDATE_SYMBOL = {"approved": "square", "pending": "diamond-open", "not approved": "x"}
CANDIDATE_COLOR = {"approved": "#7b3fa0", "pending": "#e07b00", "not approved": "#666666"}
RUN_COLORS = ("#1f77b4", "#d62728")  # the compare page: first run, second run
THRESHOLD_COLORS = ("#d62728", "#9467bd", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Chart:
    """One figure for the page: `figure` is Plotly's JSON (data + layout), drawn by desk.js."""

    key: str
    title: str
    figure: str


def _layout(title: str, height: int, right: float) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 14}}, "height": height, "template": "plotly_white",
            "margin": {"l": 50, "r": 20, "t": 60, "b": 40}, "hovermode": "closest",
            "legend": {"orientation": "h", "y": -0.15}, "xaxis": {"range": [-0.5, right], "dtick": 1}}


def _marker_traces(marks: list[Marker], low: float, high: float, xaxis: str = "x", yaxis: str = "y",
                   legend: bool = True) -> list[go.Scatter]:
    """Each marked round (an intervention, a rejected candidate, a rollback, a config change) as a vertical line
    that names what happened on hover."""
    kinds: dict[str, list[Marker]] = {}
    for m in marks:
        kinds.setdefault(m.kind, []).append(m)
    traces = []
    for kind, group in kinds.items():
        xs: list[float | None] = []
        ys: list[float | None] = []
        texts: list[str | None] = []
        for m in group:
            xs += [m.x, m.x, None]
            ys += [low, high, None]
            texts += [m.what, m.what, None]
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=kind, text=texts, hoverinfo="text+name",
                                 line={"dash": "dot", "width": 1.5}, opacity=0.6, xaxis=xaxis, yaxis=yaxis,
                                 legendgroup=kind, showlegend=legend))
    return traces


def _heldout_traces(data: ReportData, metric: str, *, color: str = RUN_COLORS[0], prefix: str = "",
                    xaxis: str = "x", yaxis: str = "y", legend: bool = True) -> list[go.Scatter]:
    """The score of the checkpoint active after each round, and each round's candidate by its standing
    (approved, pending a reviewer, not approved)."""
    after, candidates = heldout_points(data.rows, data.round0, metric)
    traces = []
    if after:
        traces.append(go.Scatter(x=[x for x, _ in after], y=[y for _, y in after], mode="lines+markers",
                                 name=f"{prefix}active after the round", line={"color": color}, xaxis=xaxis,
                                 yaxis=yaxis, legendgroup=f"{prefix}active", showlegend=legend,
                                 hovertemplate="round %{x}: %{y:.3f}"))
    for how in CANDIDATE_STANDINGS:
        points = [(x, y) for x, y, stands in candidates if stands == how]
        if points:
            traces.append(go.Scatter(x=[x for x, _ in points], y=[y for _, y in points], mode="markers",
                                     name=f"{prefix}candidate, {how}", xaxis=xaxis, yaxis=yaxis,
                                     marker={"symbol": CANDIDATE_SYMBOL[how], "size": 10,
                                             "color": color if prefix else CANDIDATE_COLOR[how]},
                                     legendgroup=f"{prefix}{how}", showlegend=legend,
                                     hovertemplate="round %{x}: %{y:.3f}"))
    return traces


def _to_chart(key: str, title: str, fig: go.Figure) -> Chart:
    return Chart(key, title, fig.to_json())


def scores_chart(data: ReportData) -> Chart:
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"held-out {m} score" for m in ("oracle", "judge")])
    for col, metric in enumerate(("oracle", "judge"), start=1):
        axis = "" if col == 1 else str(col)
        fig.add_traces(_heldout_traces(data, metric, xaxis=f"x{axis}", yaxis=f"y{axis}", legend=col == 1))
        fig.add_traces(_marker_traces(data.marks, 0, 1, f"x{axis}", f"y{axis}", legend=col == 1))
        fig.update_yaxes(range=[0, 1.02], row=1, col=col)
        fig.update_xaxes(range=[-0.5, data.right], dtick=1, title_text="round", row=1, col=col)
    layout = _layout("Held-out scores per round", 380, data.right)
    layout.pop("xaxis")
    fig.update_layout(layout)
    return _to_chart("scores", "Held-out scores", fig)


def _threshold_traces(lines: list[ThresholdLine], right: float, xaxis: str, yaxis: str) -> list[go.Scatter]:
    traces = []
    for i, t in enumerate(lines):
        rounds = sorted(t.by_round)
        values = set(t.by_round.values())
        xs, ys = ([-0.5, right], [values.pop()] * 2) if len(values) == 1 else (rounds, [t.by_round[r] for r in rounds])
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=t.label().replace("\n", " "), xaxis=xaxis,
                                 yaxis=yaxis, line={"dash": "dash", "color": THRESHOLD_COLORS[i % 4],
                                                    "shape": "hvh" if len(xs) > 2 else "linear"},
                                 hoverinfo="name+y", showlegend=False))
    return traces


def theme_chart(data: ReportData, theme: str, series: dict[str, dict[int, float]]) -> Chart:
    """One small plot per signal of a theme, with the thresholds the controller read it against."""
    names = list(series)
    cols = min(COLUMNS, len(names))
    nrows = -(-len(names) // cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=names, vertical_spacing=0.5 / max(nrows, 1) / 2)
    for i, name in enumerate(names):
        n = i + 1
        axis = "" if n == 1 else str(n)
        xaxis, yaxis = f"x{axis}", f"y{axis}"
        if name in HELDOUT_PANELS:
            traces = _heldout_traces(data, HELDOUT_PANELS[name], xaxis=xaxis, yaxis=yaxis, legend=False)
            low, high = 0.0, 1.0
        else:
            points = sorted(series[name].items())
            traces = [go.Scatter(x=[x for x, _ in points], y=[y for _, y in points], mode="lines+markers",
                                 name=name, xaxis=xaxis, yaxis=yaxis, showlegend=False,
                                 hovertemplate=f"{name}<br>round %{{x}}: %{{y:.4g}}<extra></extra>")]
            values = [y for _, y in points] + [v for t in data.thresholds.get(name, []) for v in t.by_round.values()]
            low, high = min(values), max(values)
        fig.add_traces(traces + _threshold_traces(data.thresholds.get(name, []), data.right, xaxis, yaxis)
                       + _marker_traces(data.marks, low, high, xaxis, yaxis, legend=i == 0))
        fig.update_xaxes(range=[-0.5, data.right], dtick=1, row=i // cols + 1, col=i % cols + 1)
    layout = _layout(THEME_TITLES.get(theme, theme), PANEL_HEIGHT * nrows + 80, data.right)
    layout.pop("xaxis")
    fig.update_layout(layout)
    return _to_chart(f"monitors-{theme}", THEME_TITLES.get(theme, theme), fig)


def run_charts(data: ReportData) -> list[Chart]:
    """The run page's charts: the held-out scores first, then a figure per monitor theme."""
    return [scores_chart(data)] + [theme_chart(data, theme, series) for theme, series in data.series.items()]


def compare_chart(first: ReportData, second: ReportData) -> Chart:
    """Both runs' held-out scores per round overlaid (oracle left, judge right)."""
    right = max(first.right, second.right)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"held-out {m} score" for m in ("oracle", "judge")])
    for col, metric in enumerate(("oracle", "judge"), start=1):
        axis = "" if col == 1 else str(col)
        for data, color in ((first, RUN_COLORS[0]), (second, RUN_COLORS[1])):
            fig.add_traces(_heldout_traces(data, metric, color=color, prefix=f"{data.run.id}: ", xaxis=f"x{axis}",
                                           yaxis=f"y{axis}", legend=col == 1))
        fig.update_yaxes(range=[0, 1.02], row=1, col=col)
        fig.update_xaxes(range=[-0.5, right], dtick=1, title_text="round", row=1, col=col)
    layout = _layout(f"{first.run.id} and {second.run.id}: held-out scores per round", 420, right)
    layout.pop("xaxis")
    fig.update_layout(layout)
    return _to_chart("compare", "Held-out scores of both runs", fig)


@dataclass(frozen=True)
class RunCharts:
    charts: tuple[Chart, ...]
    error: str | None = None


class ChartCache:
    """A run's charts, drawn again only when what they are drawn from has changed (the run's row, its decisions
    and the audit head): a page refreshed while a run moves re-renders, the figures are built once a state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drawn: dict[str, tuple[str, RunCharts]] = {}

    def charts(self, store: Store, run: Run) -> RunCharts:
        state = [run.updated_at, run.state, run.round, run.active_checkpoint, len(store.decisions(run.id)),
                 store.audit_head()[0]]
        key = hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest()
        with self._lock:
            held = self._drawn.get(run.id)
            if held is not None and held[0] == key:
                return held[1]
        try:
            drawn = RunCharts(tuple(run_charts(gather(store, run.id))))
        except Exception as err:  # a chart that cannot be drawn must not take the run page with it
            drawn = RunCharts((), f"the charts could not be drawn: {type(err).__name__}: {err}")
        with self._lock:
            self._drawn[run.id] = (key, drawn)
        return drawn
