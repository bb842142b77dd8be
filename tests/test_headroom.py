"""Headroom: pass@1 / pass@K / judge spread per family and tier, and `evaluation.samples` in a real round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import load_config
from agent.run.headroom import Scored, headroom, pick, summary
from agent.run.runner import start_run
from agent.run.workspace import Workspace
from conftest import write_test_config
from memory import Store
from tether_types import Prompt


def _prompt(i: int, family: str, tier: int | None = None) -> Prompt:
    meta = {} if tier is None else {"tier": tier}
    return Prompt(f"{family}-{i:08x}", f"q{i}", family, "heldout", meta)


def _samples(i: int, oracle: list[float | None], judge: list[float | None]) -> list[Scored]:
    return [Scored(i, k, f"r{k}", 1, o, j) for k, (o, j) in enumerate(zip(oracle, judge, strict=True))]


def test_pass_rates_and_judge_spread_per_family_and_tier() -> None:
    prompts = [_prompt(0, "math", 1), _prompt(1, "math", 2), _prompt(2, "math", 2), _prompt(3, "chat")]
    greedy = [1.0, 0.0, 0.7, None]  # 0.7: right but penalised, not a pass
    sampled = [
        _samples(0, [1.0, 0.0, 0.0], [0.9, 0.1, 0.5]),
        _samples(1, [0.0, 1.0, 0.0], [0.5, 0.5, 0.5]),  # a correct sample the judge cannot tell apart
        _samples(2, [0.0, 0.7, 0.0], [0.2, None, 0.4]),
        _samples(3, [None, None, None], [1.0, 0.0, 1.0]),  # no verifier: no pass rates, a spread all the same
    ]
    by_family = headroom(prompts, greedy, sampled)
    math = by_family["math"]
    assert math["n"] == 3 and math["k"] == 3
    assert math["pass_at_1"] == pytest.approx(1 / 3) and math["pass_at_k"] == pytest.approx(2 / 3)
    assert math["judge_margin"] == pytest.approx((0.8 + 0.0 + 0.2) / 3)
    assert math["judge_sd"] > 0
    assert "pass_at_1" not in by_family["chat"] and "pass_at_k" not in by_family["chat"]
    assert by_family["chat"]["judge_margin"] == 1.0
    block = summary(prompts, greedy, sampled)
    assert set(block["by_tier"]) == {"math/1", "math/2"}  # "chat" names no tier
    assert pick(block["by_tier"], "pass_at_k") == {"math/1": 1.0, "math/2": 0.5}
    assert pick(block["by_tier"], "pass_at_1") == {"math/1": 1.0, "math/2": 0.0}
    # Greedy only (evaluation.samples 0): pass@1 and nothing that needs samples.
    assert headroom(prompts, greedy, None)["math"] == {"n": 3, "pass_at_1": pytest.approx(1 / 3)}
    assert "by_tier" not in summary([_prompt(9, "chat")], [1.0], None)


def test_a_round_with_evaluation_samples_records_headroom(workspace_home: Path, tiny_world_model_dir: Path) -> None:
    write_test_config(workspace_home, tiny_world_model_dir,
                      controller={"rounds": 1}, evaluation={"max_new_tokens": 24, "samples": 3},
                      prompts={"per_round": 8, "heldout": 27})  # 27: enough for the default invariants
    ws = Workspace(workspace_home)
    store = Store(ws.db_path)
    outcome = start_run(ws, store, load_config(ws.config_path), say=lambda _m: None, wait=False, progress=False)
    assert outcome.state == "paused"
    ck = store.get_checkpoint(f"{outcome.run_id}-r1")
    evaluation = ck.metrics["eval"]  # the reported test split; the controller's validation split beside it
    for side in ("candidate", "active"):
        blocks = [ck.metrics[key][side]["headroom"] for key in ("validation", "eval")]
        for block in blocks:
            assert set(block["by_family"]) == {"arithmetic", "harmful", "howto"}
            assert set(block["by_tier"]) and all(t.startswith("arithmetic/") for t in block["by_tier"])
            for row in block["by_family"].values():
                assert row["n"] >= 4 and row["k"] == 3  # 9 a family, split into validation and test
                assert 0.0 <= row["pass_at_1"] <= 1.0 and 0.0 <= row["pass_at_k"] <= 1.0
                assert row["judge_sd"] >= 0.0 and 0.0 <= row["judge_margin"] <= 1.0
        assert all(sum(b["by_family"][f]["n"] for b in blocks) == 9 for f in blocks[0]["by_family"])
    for checkpoint in (ck.id, ck.parent):
        held = [s for split in ("validation", "test")
                for s in store.samples(outcome.run_id, None, split=split, checkpoint_id=checkpoint)]
        assert sorted({s.sample_index for s in held}) == [0, 1, 2, 3] and len(held) == 27 * 4
        # The greedy reply comes last for each prompt: readers keeping the last one see the greedy reply.
        last = {s.prompt_id: s for s in sorted(held, key=lambda s: s.id)}
        assert {s.sample_index for s in last.values()} == {0}
    # The reviewer sees them: `tether show` prints pass@1 / pass@3 per family and tier, active -> candidate.
    approval = store.approvals(status="pending", run_id=outcome.run_id)[0]
    shown = CliRunner().invoke(app, ["--home", str(workspace_home), "show", approval.id])
    assert shown.exit_code == 0, shown.output
    assert "pass@1 and pass@3" in shown.output and "arithmetic/1" in shown.output
    as_json = CliRunner().invoke(app, ["--home", str(workspace_home), "show", approval.id, "--json"])
    view = json.loads(as_json.output)
    assert view["heldout"]["candidate"]["headroom"] == evaluation["candidate"]["headroom"]
