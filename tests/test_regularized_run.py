"""The regularized pair strategy through the real graph on the tiny world model: the pairs node scores
the round's samples under the base model, ranks by judge score + weight x that log-prob, never against
the judge, and stores the margin it kept each pair by; the drift monitor reads the same scores."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_run import _start

from conftest import init_workspace, write_test_config
from policies.generation import TransformersBackend


def test_regularized_pairs_and_the_drift_monitor_on_the_tiny_model(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir, pairs={"strategy": "regularized", "settings": {"weight": 0.5}},
                      controller={"rounds": 1})
    _ws, store, outcome = _start(home)
    assert outcome.state == "paused"  # trained on its pairs, waiting at the gate
    pairs = store.pairs(outcome.run_id, 1)
    assert pairs
    scores = {j.sample_id: j.score for j in store.judgments(outcome.run_id, 1)}
    backend = TransformersBackend(str(tiny_world_model_dir), device="cpu")
    try:
        chosen = backend.base_logprobs([p.prompt for p in pairs], [p.chosen for p in pairs])
        rejected = backend.base_logprobs([p.prompt for p in pairs], [p.rejected for p in pairs])
    finally:
        backend.close()
    for pair, lp_c, lp_r in zip(pairs, chosen, rejected, strict=True):
        judge_margin = scores[pair.chosen_sample_id] - scores[pair.rejected_sample_id]
        assert judge_margin >= 0.0  # never against the judge
        assert pair.margin == pytest.approx(judge_margin + 0.5 * (lp_c - lp_r), abs=1e-3)
        assert pair.margin >= 0.1  # pairs.min_margin, on the regularised margin
    assert store.get_round(outcome.run_id, 1).monitors["base_logp_mean"] < 0.0
    store.close()
