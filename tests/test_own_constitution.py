"""Your own constitution (issue 21.1): `tether init --constitution FILE` and `tether constitution new FILE --by NAME`,
driven through the real CLI: the example file founds a workspace, and a new lineage is checked whole before
anything is written, needs more signatures than an amendment (every registered reviewer by default, the proposer
never one of them), and is audited. The attacks on it, and runs across lineages: test_own_constitution_attacks.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import load_config
from agent.run.world_checks import world_checks
from conftest import REVIEWERS, init_workspace, write_test_config
from guardrails import keys
from guardrails.constitution import JudgeDetector, default_constitution_yaml, load_constitution
from memory import Store

EXAMPLE = Path(__file__).parent.parent / "examples" / "own_constitution" / "constitution.yaml"
JUDGE_POOL = [{"name": "openai", "settings": {"base_url": "http://127.0.0.1:9/v1", "model": "safety-judge",
                                              "rubric": "constitution"}}]
runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def _workspace(tmp_path: Path, model_dir: Path, reviewers: tuple[str, ...] = REVIEWERS, **config: dict) -> Path:
    """A workspace whose config has the example's detector judge in its pool."""
    home = tmp_path / "ws"
    init_workspace(home, reviewers)
    write_test_config(home, model_dir, judge={"name": "rules", "pool": JUDGE_POOL}, **config)
    return home


def _propose(home: Path, file: Path = EXAMPLE, by: str = "researcher") -> dict:
    result = tether(home, "constitution", "new", str(file), "--by", by, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _in_force(home: Path) -> dict:
    result = tether(home, "constitution", "show", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _state(home: Path) -> tuple:
    """Everything a refused command must leave as it was."""
    with Store(home / "tether.db", readonly=True) as store:
        return (len(store.audit_entries()), store.approvals(), store.constitution_versions(), store.list_runs(),
                (home / "constitution.yaml").read_bytes())


def _lineage_text(replace: tuple[str, str] = ("max_rate: 0.1\n", "max_rate: 0.2\n")) -> str:
    """The default constitution with one invariant's target changed: a lineage of rules detectors of its own."""
    text = default_constitution_yaml()
    assert replace[0] in text
    return text.replace(*replace).replace("name: tether-default", "name: stricter-house")


# -- the example and `tether init --constitution` ------------------------------------------------------------


def test_the_example_constitution_detects_every_invariant_with_a_judge(tmp_path: Path,
                                                                       tiny_world_model_dir: Path) -> None:
    constitution = load_constitution(EXAMPLE)
    assert all(isinstance(inv.detector, JudgeDetector) and inv.detector.judge == "openai"
               for inv in constitution.invariants)
    home = tmp_path / "ws"
    home.mkdir()
    write_test_config(home, tiny_world_model_dir, judge={"name": "rules", "pool": JUDGE_POOL})
    assert world_checks(home, load_config(home / "config.yaml"), constitution).problems == []
    write_test_config(home, tiny_world_model_dir)  # without the judge: a run could not evaluate them
    problems = world_checks(home, load_config(home / "config.yaml"), constitution).problems
    assert problems and all("judge 'openai'" in p for p in problems)


def test_init_founds_the_workspace_on_your_file(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    result = tether(home, "init", "--reviewer", "alice", "--constitution", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "before a run can start" in result.stderr and "judge 'openai'" in result.stderr  # the default config
    assert (home / "constitution.yaml").read_bytes() == EXAMPLE.read_bytes()
    shown = _in_force(home)
    assert (shown["in_force"], shown["lineage"], shown["constitution"]["name"]) == (1, 1, "judged-safety")
    with Store(home / "tether.db", readonly=True) as store:
        version = store.get_constitution_version(1)
        assert version.content == EXAMPLE.read_text()
        approval = store.get_approval(version.approval_id)
        assert approval.status == "approved" and approval.decided_by == "alice"
        assert approval.subject_sha256 == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert tether(home, "audit", "verify").exit_code == 0
    again = tether(home, "init", "--constitution", str(EXAMPLE))
    assert again.exit_code == 2 and "constitution new" in again.stderr


@pytest.mark.parametrize("content, why", [
    ("name: x\ninvariants: []\n", "invariants"),
    ("a: &x [1]\nb: *x\n", "alias"),
    (EXAMPLE.read_text().replace("judge: openai", "judge: opnai"), "opnai"),
    ("name: [unclosed\n", "line"),
])
def test_init_refuses_an_invalid_file_and_writes_nothing(tmp_path: Path, keys_dir: Path, content: str,
                                                         why: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = tether(tmp_path / "ws", "init", "--reviewer", "dora", "--constitution", str(bad))
    assert result.exit_code == 2, result.output
    assert why in result.stderr and "nothing was written" in result.stderr
    assert not (tmp_path / "ws").exists() and not keys.has_key(keys_dir, "dora")
    missing = tether(tmp_path / "ws", "init", "--reviewer", "dora", "--constitution", str(tmp_path / "none.yaml"))
    assert missing.exit_code == 2 and not (tmp_path / "ws").exists()


# -- `tether constitution new` -------------------------------------------------------------------------------


def test_a_new_lineage_needs_every_reviewer_then_runs_use_it_and_amendments_stay_in_it(
        tmp_path: Path, tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    proposed = _propose(home)
    approval_id = proposed["id"]
    assert (proposed["lineage"], proposed["base_version"], proposed["required"]) == (2, 1, 3)
    assert proposed["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    pending = json.loads(tether(home, "approvals", "--json").stdout)
    assert [(a["id"], a["kind"], a["lineage"]) for a in pending] == [(approval_id, "constitution", 2)]

    shown = tether(home, "show", approval_id)
    assert shown.exit_code == 0, shown.output
    for expected in ("NEW CONSTITUTION LINEAGE 2", "judge openai (violation", "replaces invariant 'no-abuse'",
                     "name: judged-safety", "none yet (3 required)"):
        assert expected in shown.output, expected
    view = json.loads(tether(home, "show", approval_id, "--json").stdout)
    assert view["lineage"] == 2 and view["replaces_lineage"] == 1 and view["content"] == EXAMPLE.read_text()
    assert [i["detector"] for i in view["constitution"]["invariants"]] == [{"judge": "openai",
                                                                            "violation_below": 0.5}] * 2

    for name in ("alice", "bob"):
        result = tether(home, "approve", approval_id, "--by", name)
        assert result.exit_code == 0 and "new_constitution_required" in result.stderr
        assert _in_force(home)["in_force"] == 1
    result = tether(home, "approve", approval_id, "--by", "carol")
    assert result.exit_code == 0 and "founds lineage 2" in result.stderr
    shown = _in_force(home)
    assert (shown["in_force"], shown["lineage"], shown["lineage_founded_at"]) == (2, 2, 2)
    assert [v["lineage"] for v in shown["versions"]] == [1, 2]
    assert (home / "constitution.yaml").read_bytes() == EXAMPLE.read_bytes() and not shown["workspace_file_differs"]
    with Store(home / "tether.db", readonly=True) as store:
        entries = store.audit_entries()
    requested = [e for e in entries if e.action == "constitution.new"]
    assert len(requested) == 1 and requested[0].actor == "researcher" and requested[0].details["required"] == 3
    assert [e.actor for e in entries if e.action == "approval.signed" and e.subject == approval_id] == \
        ["alice", "bob", "carol"]
    assert [e.details["lineage"] for e in entries if e.action == "constitution.lineage"] == [2]
    assert tether(home, "audit", "verify").exit_code == 0

    # Amendments now apply within lineage 2: principles change, the old lineage's invariants never come back.
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["principles"].append({"id": "brief", "text": "Keep answers short.", "weight": 0.2})
    amended = tmp_path / "amended.yaml"
    amended.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert tether(home, "constitution", "propose", str(amended), "--by", "researcher").exit_code == 0
    amendment = json.loads(tether(home, "approvals", "--json").stdout)[0]
    assert amendment["lineage"] is None
    assert tether(home, "approve", amendment["id"], "--by", "alice").exit_code == 0  # approvals.required: 1
    shown = _in_force(home)
    assert (shown["in_force"], shown["lineage"], shown["lineage_founded_at"]) == (3, 2, 2)
    old = tmp_path / "old.yaml"
    old.write_text(default_constitution_yaml())
    back = tether(home, "constitution", "propose", str(old), "--by", "researcher")
    assert back.exit_code == 2 and "immutable" in back.stderr
    same = tether(home, "constitution", "new", str(amended), "--by", "researcher")  # lineage 2's invariants
    assert same.exit_code == 2 and "constitution propose" in same.stderr


def test_the_count_a_new_lineage_needs(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    two = _workspace(tmp_path / "two", tiny_world_model_dir, ("alice", "bob"))
    before = _state(two)
    own = tether(two, "constitution", "new", str(EXAMPLE), "--by", "alice")  # alice can never sign her own
    assert own.exit_code == 2 and "needs 2 approving reviewers" in own.stderr and "leaves 1 (bob)" in own.stderr
    assert _state(two) == before
    assert _propose(two)["required"] == 2

    floored = _workspace(tmp_path / "floored", tiny_world_model_dir, approvals={"new_constitution_required": 1})
    assert _propose(floored)["required"] == 2  # never below 2 while 2 reviewers are registered

    below = _workspace(tmp_path / "below", tiny_world_model_dir,
                       approvals={"required": 2, "new_constitution_required": 1})
    refused = tether(below, "constitution", "new", str(EXAMPLE), "--by", "researcher")
    assert refused.exit_code == 2 and "below required" in refused.stderr

    alone = _workspace(tmp_path / "alone", tiny_world_model_dir, ("alice",))
    result = tether(alone, "constitution", "new", str(EXAMPLE), "--by", "researcher")
    assert result.exit_code == 0 and "one reviewer, so alice's signature alone founds it" in result.stderr
    approval_id = json.loads(tether(alone, "approvals", "--json").stdout)[0]["id"]
    assert tether(alone, "approve", approval_id, "--by", "alice").exit_code == 0
    assert _in_force(alone)["lineage"] == 2


def test_a_file_a_run_could_not_evaluate_is_refused_before_anything_is_written(tmp_path: Path,
                                                                                tiny_world_model_dir: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir)  # no judge 'openai' in the pool
    before = _state(home)
    result = tether(home, "constitution", "new", str(EXAMPLE), "--by", "researcher")
    assert result.exit_code == 2 and "judge 'openai'" in result.stderr and "nothing was written" in result.stderr
    few = tmp_path / "few.yaml"  # a target 0.01 needs far more probes than the 27 held-out prompts
    few.write_text(_lineage_text(("max_rate: 0.1\n", "max_rate: 0.01\n")))
    result = tether(home, "constitution", "new", str(few), "--by", "researcher")
    assert result.exit_code == 2 and "too few" in result.stderr
    big = tmp_path / "big.yaml"
    big.write_text(_lineage_text() + "#" * 2_000_000 + "\n")
    assert tether(home, "constitution", "new", str(big), "--by", "researcher").exit_code == 2
    same = tmp_path / "same.yaml"
    same.write_text(default_constitution_yaml().replace("name: tether-default", "name: renamed"))
    result = tether(home, "constitution", "new", str(same), "--by", "researcher")
    assert result.exit_code == 2 and "constitution propose" in result.stderr
    assert _state(home) == before
