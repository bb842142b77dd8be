"""The failure-worlds suite's report (benchmarks/_suite_report.py) and `bench_suite.py --merge`, on synthetic runs:
the round-N table with spreads, the mean over worlds and the mean rank, the grid, and one report from parts run
apart (refused when the parts do not belong together)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the suite's functions: benchmarks/ is no package
import _suite_report  # noqa: E402
import bench_suite  # noqa: E402


def _run(world: str, system: str, seed: int, values: list[float], interventions: dict[int, str] | None = None,
         cpu: float = 10.0) -> dict[str, Any]:
    curve = [{"round": r, "oracle": v, "carried": False} for r, v in enumerate(values)]
    return {"world": world, "system": system, "seed": seed, "curve": curve, "cpu_s": cpu, "wall_s": 2 * cpu,
            "interventions": interventions or {}, "intervention_rounds": sorted(interventions or {})}


def test_summary_table_ranks_and_spreads_on_synthetic_results() -> None:
    results = [
        _run("w1", "tether", 0, [0.2, 0.5, 0.8], {2: "switch_judge"}), _run("w1", "tether", 1, [0.2, 0.5, 0.6]),
        _run("w1", "fixed", 0, [0.2, 0.4, 0.4]), _run("w1", "fixed", 1, [0.2, 0.4, 0.6]),
        _run("w2", "tether", 0, [0.1, 0.3, 0.3], cpu=30.0), _run("w2", "fixed", 0, [0.1, 0.3, 0.3], cpu=20.0),
    ]
    summary = _suite_report.summarise(results, 2)
    t1 = summary["w1"]["tether"]
    assert t1["final"]["mean"] == pytest.approx(0.7) and t1["final"]["sd"] == pytest.approx(0.1414, abs=1e-3)
    assert t1["per_round"][0] == {"round": 0, "mean": pytest.approx(0.2), "sd": 0.0, "n": 2, "carried": 0}
    assert summary["w2"]["fixed"]["final"]["sd"] == 0.0  # one seed
    assert t1["intervention_rounds"] == {0: [2], 1: []}
    assert _suite_report.intervention_counts(summary, "w1") == {2: 1}
    # w1: tether 0.7 > fixed 0.5; w2: a tie (1.5 each).
    assert _suite_report.mean_ranks(summary, ["tether", "fixed"]) == {"tether": 1.25, "fixed": 1.75}
    assert _suite_report.mean_over_worlds(summary, "tether") == (pytest.approx(0.5), 2)
    table = _suite_report.markdown_table(summary, ["tether", "fixed", "online_dpo"], 2)
    lines = table.splitlines()
    assert lines[0] == "| world (round 2 held-out oracle) | tether | fixed |"  # a system with no runs is left out
    assert "| w1 | 0.700 ± 0.141 | 0.500 ± 0.141 |" in lines
    assert "| mean rank (1 = best) | 1.25 | 1.75 |" in lines
    assert "| mean over worlds | 0.500 | 0.400 |" in lines
    assert "| CPU s per run (mean) | 17 | 13 |" in lines and "| CPU s in all | 50 | 40 |" in lines


def test_a_system_missing_a_world_is_counted_over_the_worlds_it_has() -> None:
    results = [_run("w1", "tether", 0, [0.2, 0.6]), _run("w1", "fixed", 0, [0.2, 0.4]),
               _run("w2", "fixed", 0, [0.2, 0.8])]
    summary = _suite_report.summarise(results, 1)
    assert _suite_report.mean_ranks(summary, ["tether", "fixed"]) == {"tether": 1.0, "fixed": 1.5}
    table = _suite_report.markdown_table(summary, ["tether", "fixed"], 1)
    assert "| mean over worlds | 0.600 (1 of 2) | 0.600 |" in table


def test_the_grid_plot_is_written(tmp_path: Path) -> None:
    results = [_run(w, s, 0, [0.2, 0.4], {1: "switch_judge"} if s == "tether" else None)
               for w in ("w1", "w2", "w3", "w4", "w5") for s in ("tether", "fixed")]
    _suite_report.plot_grid(_suite_report.summarise(results, 1), 1, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 10_000


def _part(path: Path, world: str, seeds: list[int], rounds: int = 1) -> Path:
    runs = [_run(world, s, seed, [0.2, 0.4 + 0.1 * seed]) for seed in seeds for s in ("tether", "fixed")]
    settings = {"worlds": [world], "systems": ["tether", "fixed"], "seeds": seeds, "rounds": rounds,
                "policy": "rules", "policy_sha256": None, "overrides": [], "models": {f"{world}/s{seeds[0]}": "m"},
                "scenarios": {world: {}}}
    path.write_text(json.dumps({"settings": settings, "model_build_s": {}, "runs": runs, "wall_s": 10.0}))
    return path


def test_parts_run_apart_merge_into_one_report(tmp_path: Path) -> None:
    """Two processes (one per core) each run part of the suite; --merge writes the one report of the whole."""
    a = _part(tmp_path / "a.json", "unreliable_judge", [0, 1])
    b = _part(tmp_path / "b.json", "blind_family", [0])
    out = tmp_path / "suite.json"
    bench_suite.merge([a, b], out)
    report = json.loads(out.read_text())
    assert report["settings"]["worlds"] == ["unreliable_judge", "blind_family"]
    assert report["settings"]["seeds"] == [0, 1] and report["wall_s"] == 20.0
    assert len(report["runs"]) == 6 and set(report["summary"]) == {"unreliable_judge", "blind_family"}
    assert "| unreliable_judge | 0.450 ± 0.071 | 0.450 ± 0.071 |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").exists()


def test_parts_that_do_not_belong_together_are_refused(tmp_path: Path) -> None:
    a = _part(tmp_path / "a.json", "unreliable_judge", [0])
    other_rounds = _part(tmp_path / "b.json", "blind_family", [0], rounds=2)
    with pytest.raises(SystemExit, match="differs .* in rounds"):
        bench_suite.merge([a, other_rounds], tmp_path / "suite.json")
    same_runs = _part(tmp_path / "c.json", "unreliable_judge", [0])
    with pytest.raises(SystemExit, match="more than one part"):
        bench_suite.merge([a, same_runs], tmp_path / "suite.json")
    assert not (tmp_path / "suite.json").exists()
