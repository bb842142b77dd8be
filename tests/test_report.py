"""`tether report`: monitors in panels by theme, the controller's thresholds as dashed lines named by
their config key, the rounds of interventions, rejections and rollbacks marked, every figure on the
same rounds as scores.png; the summary (md + json); an unwritable --out is a clear error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import pytest

from agent.review import report
from agent.review.report import THEMES, ReportError, write_report
from conftest import clone_workspace, tether_cli
from memory import Checkpoint, Run, Store
from memory.guarded import GuardedWrites
from tether_types import MonitorKey

matplotlib.use("Agg")


def _check(signal: str, value: float, op: str, threshold: float, setting: str) -> dict[str, Any]:
    fired = {">": value > threshold, "<": value < threshold, ">=": value >= threshold}[op]
    return {"signal": signal, "value": value, "op": op, "threshold": threshold, "fired": fired, "setting": setting,
            "status": "fired" if fired else "ok", "reason": ""}


def _checks(corr: float, gain_rounds: int, patience: int = 3) -> list[dict[str, Any]]:
    return [_check("length_score_corr", corr, ">", 0.6, "switch_judge.max_length_score_corr"),
            _check("trained_rounds_without_heldout_gain", gain_rounds, ">=", patience, "stop.patience"),
            _check("trained_rounds_without_heldout_gain", gain_rounds, ">=", 2, "add_adversarial.plateau_rounds")]


# round: (action, outcome, length_score_corr, self_bleu, candidate oracle, approved?)
ROUNDS = {1: ("switch_judge", "judge_switched", 0.95, 0.30, None, None),
          2: ("train", "approved", 0.10, 0.32, 0.36, True),
          3: ("train", "rejected", 0.05, 0.35, 0.33, False),
          4: ("add_adversarial", "curriculum_added", -0.1, 0.41, None, None),
          5: ("train", "approved", 0.02, 0.38, 0.52, True)}


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "tether.db")
    s.create_run(Run(id="run-1", config={"controller": {"heldout_metric": "oracle"}}, config_sha256="c" * 64, seed=0,
                     rounds_budget=5, constitution_version=1, invariants={}, invariants_sha256="i" * 64))
    writes = GuardedWrites(s)
    writes.add_checkpoint(Checkpoint(id="run-1-base", run_id="run-1", round=0, status="base", path="base"))
    s.append_audit("tether", "checkpoint.base", "run-1-base", {"run": "run-1"})
    active = ("run-1-base", 0.25)
    for n, (action, outcome, corr, bleu, oracle, approved) in ROUNDS.items():
        s.upsert_round("run-1", n, n_pairs=40 + n, judge={"name": "rules"}, action=action, outcome=outcome,
                       monitors={"length_score_corr": corr, "self_bleu": bleu, "distinct_2": 0.6,
                                 "over_refusal": 0.1 * n, "score_std": 0.3, "custom_signal": 1.0})
        # the patience threshold was raised from 3 to 4 by a config change before round 4
        s.add_decision("run-1", n, action, f"round {n}", {"checks": _checks(corr, max(0, n - 2), 3 if n < 4 else 4)})
        if n == 3:
            s.add_decision("run-1", 3, "config_change", "alice changed 1 setting(s) for the rounds to come: "
                           "controller.stop.patience: 3 -> 4", {"changes": ["controller.stop.patience: 3 -> 4"]},
                           actor="alice")
        if oracle is None:
            continue
        ck = f"run-1-r{n}"
        writes.add_checkpoint(Checkpoint(id=ck, run_id="run-1", round=n, status="approved" if approved else "rejected",
                                         path=ck, sha256="a" * 64, parent=active[0], metrics={"eval": {
                                             "candidate": {"oracle": oracle, "judge": 0.6},
                                             "active": {"oracle": active[1], "judge": 0.5}}}))
        if approved:
            s.append_audit("tether", "checkpoint.activate", ck, {"run": "run-1"})
            active = (ck, oracle)
        else:
            s.add_decision("run-1", n, "discard_candidate", "alice rejected it", {}, actor="gate")
        if n == 2:
            s.append_audit("alice", "checkpoint.rollback", "run-1-base",
                           {"run": "run-1", "from": ck, "reason": "check the base"})
            s.append_audit("alice", "checkpoint.rollback", ck, {"run": "run-1", "from": "run-1-base", "reason": "back"})
    yield s
    s.close()


@pytest.fixture()
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Every figure the report saves, by file name, kept open for inspection."""
    from matplotlib.figure import Figure

    saved: dict[str, Any] = {}
    original = Figure.savefig

    def savefig(self: Figure, path: Any, *args: Any, **kwargs: Any) -> None:
        saved[Path(path).name] = self
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    monkeypatch.setattr(plt, "close", lambda *_a, **_k: None)
    yield saved
    monkeypatch.undo()
    plt.close("all")


def _axes(fig: Any, title: str) -> Any:
    return next(ax for ax in fig.axes if ax.get_title() == title)


def _thresholds(ax: Any) -> list[Any]:
    """The dashed lines with a legend entry (the marked rounds are vertical lines without one)."""
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and not ln.get_label().startswith("_")]


def test_every_monitor_key_has_a_theme() -> None:
    assert set(MonitorKey) <= set(THEMES), sorted(set(MonitorKey) - set(THEMES))
    assert set(THEMES.values()) <= set(report.THEME_TITLES)


def test_panels_by_theme_with_thresholds_and_marked_rounds(store: Store, tmp_path: Path,
                                                           figures: dict[str, Any]) -> None:
    written = write_report(store, "run-1", tmp_path / "out")
    names = [p.name for p in written]
    assert names[0] == "scores.png"
    assert {"monitors-length.png", "monitors-diversity.png", "monitors-prompts.png", "monitors-progress.png",
            "monitors-judge.png", "monitors-other.png"} <= set(names)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written if p.suffix == ".png")

    length = _axes(figures["monitors-length.png"], "length_score_corr")
    assert [(ln.get_label(), tuple(ln.get_ydata())) for ln in _thresholds(length)] == [
        ("controller.switch_judge.max_length_score_corr\nfires when > 0.6", (0.6, 0.6))]
    assert _axes(figures["monitors-diversity.png"], "self_bleu")  # grouped by key: self_bleu is diversity
    assert _axes(figures["monitors-other.png"], "custom_signal")  # a key outside the enum is still shown

    # One signal read by two rules: both thresholds; the one that changed mid-run is drawn per round.
    gain = _axes(figures["monitors-progress.png"], "trained_rounds_without_heldout_gain")
    labels = sorted(ln.get_label() for ln in _thresholds(gain))
    assert labels == ["controller.add_adversarial.plateau_rounds\nfires when ≥ 2",
                      "controller.stop.patience\nfires when ≥ 3/4"]

    # Marked rounds: interventions at 1 and 4, the rejection at 3, two rollbacks after round 2, the
    # config change after round 3.
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted((m["x"], m["kind"]) for m in summary["markers"]) == [
        (1, "switch_judge"), (2.5, "rollback"), (2.5, "rollback"), (3, "candidate rejected"), (3.5, "config change"),
        (4, "add_adversarial")]
    for fig in figures.values():
        for ax in fig.axes:
            verticals = {ln.get_xdata()[0] for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1}
            assert {1, 2.5, 3, 3.5, 4} <= verticals, ax.get_title()
            assert ax.get_xlim() == figures["scores.png"].axes[0].get_xlim()  # every panel on the same rounds
    legend = figures["monitors-length.png"].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "intervention: switch_judge", "intervention: add_adversarial", "candidate rejected", "rollback",
        "config change"]


def test_held_out_curve_follows_the_active_checkpoint(store: Store, tmp_path: Path, figures: dict[str, Any]) -> None:
    write_report(store, "run-1", tmp_path / "out")
    oracle = _axes(figures["scores.png"], "held-out oracle score")
    after = next(ln for ln in oracle.get_lines() if ln.get_label() == "active after the round")
    # base 0.25 before round 1 and after it, r2 0.36 after 2 (rolled back and forth), r2 after 3, r5 0.52 after 5
    assert list(after.get_xdata()) == [0, 1, 2, 3, 4, 5]
    assert list(after.get_ydata()) == pytest.approx([0.25, 0.25, 0.36, 0.36, 0.36, 0.52])
    rejected = next(ln for ln in oracle.get_lines() if ln.get_label() == "candidate, not approved")
    assert list(rejected.get_xdata()) == [3]
    progress = _axes(figures["monitors-progress.png"], "held-out oracle")  # the same curves, the same rounds
    assert [(ln.get_label(), list(ln.get_xdata()), list(ln.get_ydata())) for ln in progress.get_lines()[:3]] == [
        (ln.get_label(), list(ln.get_xdata()), list(ln.get_ydata())) for ln in oracle.get_lines()[:3]]
    assert progress.get_xlim() == oracle.get_xlim()


def test_the_summary_is_kept(store: Store, tmp_path: Path) -> None:
    write_report(store, "run-1", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {"run_id", "state", "active_checkpoint", "rounds", "decisions"} <= summary.keys()
    assert [r["round"] for r in summary["rounds"]] == [1, 2, 3, 4, 5]
    assert summary["rounds"][1]["heldout_oracle_candidate"] == 0.36 and summary["rounds"][1]["pairs"] == 42
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| 5 | rules | train | approved | 45 | 0.520 | 0.520 |" in md
    assert "![scores.png](scores.png)" in md and "round 2.5: rollback" in md and "round 3.5: config change" in md


def test_an_unwritable_out_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "report"):
        with pytest.raises(ReportError, match=f"cannot write the report to {out}"):
            write_report(store, "run-1", out)
    assert blocker.read_text() == "not a folder"


def test_report_of_a_real_gated_run(gated_workspace: tuple[Path, str, str], tmp_path: Path) -> None:
    home, run_id, _ = clone_workspace(gated_workspace, tmp_path / "ws")
    result = tether_cli(home, "report", run_id, "--out", str(tmp_path / "out"), check=True)
    assert "scores.png" in result.stdout + result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rounds"][0]["pairs"] > 0 and summary["rounds"][0]["heldout"]["checkpoint"] == f"{run_id}-base"
    assert {"monitors-diversity.png", "monitors-length.png", "monitors-judge.png"} <= set(summary["plots"])
    assert summary["thresholds"] and all(t["setting"].startswith("controller.") for t in summary["thresholds"])


def test_cli_report_to_an_unwritable_out_exits_2(gated_workspace: tuple[Path, str, str], tmp_path: Path) -> None:
    home, run_id, _ = clone_workspace(gated_workspace, tmp_path / "ws")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = tether_cli(home, "report", run_id, "--out", str(blocker / "report"))
    assert result.returncode == 2, result.stderr
    assert "cannot write the report to" in result.stderr and "Traceback" not in result.stderr


def test_a_candidate_no_reviewer_has_decided_is_pending_never_not_approved() -> None:
    """Both the PNGs and the desk's charts label candidates through heldout_points."""
    from agent.review.plots import heldout_points

    rows = [{"round": n, "heldout_oracle_after": 0.3, "heldout_oracle_candidate": 0.4, "checkpoint_status": status}
            for n, status in enumerate(("approved", "pending", "candidate", "rejected", "discarded"), start=1)]
    _, candidates = heldout_points(rows, {"oracle": 0.3}, "oracle")
    assert [how for _, _, how in candidates] == ["approved", "pending", "pending", "not approved", "not approved"]
