"""Pre-flight reaches the judges: `tether validate` and a run's pre-flight send one request to each endpoint
a judge (nested ones included) or the advisor will call, and name the one that is down or answers in a form
its user cannot read; a config without endpoints sends nothing. A round whose judgments fail says why in the
decision log and in `tether log`: the error and how many judgments it took."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import ControllerConfig, load_config
from agent.controller.policy import ControllerInput, RoundSignals, decide
from agent.controller.vocabulary import InvalidJudgments
from agent.review.decision_text import decision_lines
from agent.run import preflight
from agent.run.runner import start_run
from agent.run.workspace import Workspace
from conftest import serve_chat, write_test_config
from memory import Decision, Store
from tether_types import MonitorKey as K
from tools.endpoints import Probe, Use, probe_problems
from tools.judges import JudgeItem, Verdict
from tools.judges.jury import Jury
from tools.registry import Built

ADVICE = "Action: train\nReason: nothing is wrong yet"
SMALL = {"generation": {"samples_per_prompt": 2, "max_new_tokens": 16}, "prompts": {"per_round": 6, "heldout": 27},
         "evaluation": {"max_new_tokens": 16}}


def _closed_url() -> str:
    """A loopback URL nothing listens on: the port was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _model_dir(home: Path) -> str:
    return yaml.safe_load((home / "config.yaml").read_text())["model"]["base"]


def _validate(home: Path) -> Any:
    return CliRunner().invoke(app, ["--home", str(home), "validate"])


def _openai(model: str, url: str, **settings: Any) -> dict[str, Any]:
    return {"name": "openai", "settings": {"model": model, "base_url": url, "max_retries": 0, **settings}}


def test_validate_reaches_every_endpoint_once_and_passes_when_they_answer(workspace_home: Path) -> None:
    requests: list[dict[str, Any]] = []
    server, url = serve_chat(lambda p, _n: ADVICE if "Choose one action" in p else "Correct and polite.\nScore: 5",
                             requests)
    try:
        write_test_config(
            workspace_home, _model_dir(workspace_home),
            # m twice (the judge and a pool entry with another rubric): one request; the jury's member and the
            # advisor are reached too.
            judge={**_openai("m", url), "pool": [
                {"name": "jury", "settings": {"judges": [_openai("m-jury", url), {"name": "rules"}]}},
                _openai("m", url, rubric="additive", timeout=5.0)]},
            controller={"rounds": 1, "advisor": {"model": "m-adv", "base_url": url, "timeout": 10.0}})
        result = _validate(workspace_home)
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert "endpoints (" in result.output
    assert sorted(r["model"] for r in requests) == ["m", "m-adv", "m-jury"]
    assert all(r["max_tokens"] <= 256 for r in requests)


def test_validate_names_an_unreachable_endpoint_and_an_unreadable_answer(workspace_home: Path) -> None:
    closed = _closed_url()
    server, url = serve_chat(lambda _p, _n: "Looks fine to me.")  # no Score line, no Action line
    try:
        write_test_config(
            workspace_home, _model_dir(workspace_home),
            judge={**_openai("m", url), "pool": [
                {"name": "jury", "settings": {"judges": [{"name": "rules"}, _openai("down", closed)]}}]},
            controller={"rounds": 1, "advisor": {"model": "m-adv", "base_url": url, "timeout": 10.0}})
        result = _validate(workspace_home)
    finally:
        server.shutdown()
        server.server_close()
    out = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 2, out
    assert "3 problem(s) found" in out
    # The jury's member: where the config names it, the URL and model, the error with its cause, the fix.
    assert f"judge.pool[0].settings.judges[1] (openai) at {closed}, model down: unreachable or refused" in out
    assert "Connection refused" in out and "start the server, or correct base_url" in out
    assert f"judge (openai) at {url}, model m: its answer cannot be parsed (no 'Score: N' found)" in out
    assert "'Looks fine to me.'" in out and "a 'Score: N' line" in out
    assert f"controller.advisor at {url}, model m-adv: its answer cannot be parsed (no single 'Action:' line" in out


def test_a_run_does_not_start_on_an_unreachable_judge(workspace_home: Path) -> None:
    closed = _closed_url()
    write_test_config(workspace_home, _model_dir(workspace_home), judge=_openai("m", closed),
                      controller={"rounds": 1})
    result = CliRunner().invoke(app, ["--home", str(workspace_home), "run"])
    assert result.exit_code == 2, result.output
    assert f"at {closed}, model m: unreachable or refused" in " ".join(result.output.split())
    assert Store(workspace_home / "tether.db").list_runs() == []


def test_no_endpoint_no_request(workspace_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local judges (rules, a jury of them, self, length_biased) are not probed: nothing is asked, so a
    local-only run's pre-flight is no slower."""
    def no_request(probe: Probe) -> str | None:
        raise AssertionError(f"a request to {probe.base_url} for a local-only config")

    monkeypatch.setattr("tools.endpoints._ask", no_request)
    write_test_config(workspace_home, _model_dir(workspace_home), judge={"name": "length_biased", "pool": [
        {"name": "jury", "settings": {"judges": [{"name": "rules"}, {"name": "self"}]}}, {"name": "rules"}]})
    config = load_config(Workspace(workspace_home).config_path)
    assert list(preflight._endpoints(config)) == []
    assert [where for where, _, _ in preflight.judge_specs(config)] == [
        "judge", "judge.pool[0]", "judge.pool[0].settings.judges[0]", "judge.pool[0].settings.judges[1]",
        "judge.pool[1]"]


def test_a_missing_key_is_named_without_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_TEST_ABSENT_KEY", raising=False)
    probe = Probe("judge", _closed_url(), "m", "TETHER_TEST_ABSENT_KEY", "hi", 8, 5.0, lambda _a: None, "x")
    (problem,) = probe_problems([Use("judge (openai)", probe)])
    assert "environment variable TETHER_TEST_ABSENT_KEY (api_key_env) is not set" in problem
    assert "unreachable" not in problem  # nothing was sent


def test_a_round_of_failed_judgments_says_why_in_the_decision_log(workspace_home: Path) -> None:
    """The endpoint answers pre-flight's probe (the first request), then fails every judgment: no pairs, no
    candidate, and the skip names the error and how many judgments it took, as does `tether log`."""
    requests: list[dict[str, Any]] = []
    server, url = serve_chat(lambda _p, _n: "Score: 5" if len(requests) == 1 else 503, requests)
    try:
        write_test_config(workspace_home, _model_dir(workspace_home), controller={"rounds": 1},
                          judge=_openai("m", url, timeout=10.0), **SMALL)
        ws = Workspace(workspace_home)
        store = Store(ws.db_path)
        outcome = start_run(ws, store, load_config(ws.config_path), say=lambda _m: None, wait=False,
                            progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.state == "stopped"
    run_id = outcome.run_id
    judgments = store.judgments(run_id, 1)
    n = len(judgments)
    assert n == 12 and not any(j.valid for j in judgments)
    assert store.pairs(run_id, 1) == [] and store.get_checkpoint(f"{run_id}-r1") is None
    skip = store.decisions(run_id)[0]
    why = "judge call failed: InternalServerError: Error code: 503"
    assert skip.action == "skip"
    assert f"{n} of {n} judgments invalid: {why} - scripted failure 503 ({n}×)" in skip.rationale
    logged = skip.signals["invalid_judgments"]
    assert logged["count"] == logged["of"] == n and logged["reasons"][0][1] == n and why in logged["reasons"][0][0]
    shown = CliRunner().invoke(app, ["--home", str(workspace_home), "log", run_id])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())  # the console wraps long lines
    assert f"{n} of {n} judgments invalid: {why} - scripted failure 503 ({n}×)" in text


def test_a_trained_round_with_a_few_invalid_judgments_still_says_why() -> None:
    """Below max_invalid_share the round trains; the decision still carries the reasons, and `tether log`
    shows them on a line of their own (the rationale does not name them)."""
    invalid = InvalidJudgments(3, 40, (("no 'Score: N' found", 2), ("judge refused", 1)))
    now = RoundSignals(round=1, pairs=20, judge="j0", invalid=invalid,
                       monitors={K.LENGTH_SCORE_CORR: 0.1, K.POSITION_CONSISTENCY: 1.0, K.INVALID_SHARE: 3 / 40})
    d = decide(ControllerInput(now=now, budget=3), ControllerConfig())
    assert d.action == "train" and d.signals["invalid_judgments"] == invalid.to_json()
    logged = Decision(id=1, run_id="r", round=1, action=d.action, rationale=d.rationale, signals=d.log_signals(),
                      actor="controller", at="2026-01-01T00:00:00")
    assert ("      3 of 40 judgments invalid: no 'Score: N' found (2×); judge refused (1×)"
            in decision_lines(logged, verbose=False))
    assert invalid.text(reasons=1) == "3 of 40 judgments invalid: no 'Score: N' found (2×); 1 for other reasons"


def test_a_jury_below_quorum_names_its_first_failing_member() -> None:
    """"1 valid member verdicts, quorum 2" alone hides the endpoint that is down."""
    class Fine:
        def score(self, items: Any) -> list[Verdict]:
            return [Verdict(1.0, True, "Score: 5") for _ in items]

    class Down:
        def score(self, items: Any) -> list[Verdict]:
            raise ConnectionError("endpoint down")

    jury = Jury([Built("rules", {}, Fine()), Built("openai", {}, Down())], [1.0, 1.0], "mean", 2)
    (verdict,) = jury.score([JudgeItem("What is 2 + 2?", "4")])
    assert verdict.details["invalid"] == ("1 valid member verdicts, quorum 2 (1:openai: judge failed: "
                                          "ConnectionError: endpoint down)")
