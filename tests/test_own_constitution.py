"""Your own constitution (issue 21.1): `tether init --constitution FILE` and `tether constitution new FILE --by NAME`,
driven through the real CLI, and attacked as someone with write access to the workspace and its database:

- a new lineage is checked whole before anything is written, needs more signatures than an amendment (every
  registered reviewer by default, the proposer never one of them), and is audited;
- fewer signatures than required, a signature by a key nobody registered, and a text, lineage or version row
  swapped in the database after signing never put anything in force;
- a run started before the new lineage keeps the version it pinned (and a row edited to move it fails it);
  a run started after pins the new lineage.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import load_config
from agent.run.world_checks import world_checks
from conftest import REVIEWERS, clone_workspace, init_workspace, raw_db, tether_cli, write_test_config
from guardrails import keys, signoff
from guardrails.constitution import JudgeDetector, default_constitution_yaml, load_constitution, parse_constitution
from memory import Store
from memory.guarded import GuardedWrites

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


# -- attacks with write access to the workspace and its database ----------------------------------------------


def test_fewer_signatures_than_required_never_put_a_lineage_in_force(tmp_path: Path,
                                                                      tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    approval_id = _propose(home)["id"]
    assert tether(home, "approve", approval_id, "--by", "alice").exit_code == 0  # 1 of 3
    text = EXAMPLE.read_text()
    with raw_db(home) as db:
        db.execute("UPDATE approvals SET status = 'approved', decided_by = 'alice, bob, carol' WHERE id = ?",
                   (approval_id,))
        db.execute("INSERT INTO constitution_versions (version, sha256, invariants_sha256, content, created_at, "
                   "created_by, approval_id, note) VALUES (2, ?, ?, ?, 'now', 'researcher', ?, NULL)",
                   (hashlib.sha256(text.encode()).hexdigest(), parse_constitution(text, "x").invariants_sha256(),
                    text, approval_id))
    (home / "constitution.yaml").write_text(text)  # and the workspace file, to match
    for args in (["constitution", "show"], ["run"]):
        result = tether_cli(home, *args)
        assert result.returncode == 1, result.stderr
        assert "1 valid approving signature(s) of 3 required" in result.stderr
        assert "will not fall back" in result.stderr
    with Store(home / "tether.db", readonly=True) as store:
        assert store.list_runs() == []


def test_a_signature_by_an_unregistered_key_does_not_count(tmp_path: Path, tiny_world_model_dir: Path,
                                                            keys_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    approval_id = _propose(home)["id"]
    mallory = keys.load_key(keys_dir, "mallory") if keys.has_key(keys_dir, "mallory") else \
        keys.create_key(keys_dir, "mallory")
    refused = tether(home, "approve", approval_id, "--by", "mallory")
    assert refused.exit_code == 1 and "not a registered reviewer" in refused.stderr
    with Store(home / "tether.db") as store:  # mallory signs statements in bob's and carol's names
        approval = store.get_approval(approval_id)
        for name in ("bob", "carol"):
            body = signoff.statement_for(store, approval, "approve", name, None).to_bytes()
            GuardedWrites(store).add_signature(approval_id, approval.subject, "approve", name, mallory.fingerprint,
                                               body.decode(), mallory.sign(body))
    result = tether(home, "approve", approval_id, "--by", "alice")
    assert result.exit_code == 1 and "key not registered to 'bob'" in result.stderr
    view = json.loads(tether(home, "show", approval_id, "--json").stdout)
    assert view["status"] == "pending" and view["signatures"]["verified"] is False
    assert _in_force(home)["in_force"] == 1


def _set_payload(home: Path, approval_id: str, **changes) -> dict:
    with raw_db(home) as db:
        (payload,) = db.execute("SELECT payload FROM approvals WHERE id = ?", (approval_id,)).fetchone()
        original = json.loads(payload)
        db.execute("UPDATE approvals SET payload = ? WHERE id = ?", (json.dumps({**original, **changes}), approval_id))
    return original


def test_a_text_or_lineage_swapped_after_signing_never_comes_into_force(tmp_path: Path,
                                                                         tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    approval_id = _propose(home)["id"]
    for name in ("alice", "bob"):
        assert tether(home, "approve", approval_id, "--by", name).exit_code == 0
    swapped = EXAMPLE.read_text().replace("max_rate: 0.1\n", "max_rate: 0.9\n")
    swapped_sha = hashlib.sha256(swapped.encode()).hexdigest()

    original = _set_payload(home, approval_id, content=swapped)  # the text alone
    result = tether(home, "approve", approval_id, "--by", "carol")
    assert result.exit_code == 1 and "no longer matches the text that was proposed" in result.stderr
    with raw_db(home) as db:  # the text and the digest the row names: the signatures name the first digest
        db.execute("UPDATE approvals SET subject_sha256 = ? WHERE id = ?", (swapped_sha, approval_id))
    result = tether(home, "approve", approval_id, "--by", "carol")
    assert result.exit_code == 1 and "names another text" in result.stderr
    with raw_db(home) as db:
        db.execute("UPDATE approvals SET subject_sha256 = ? WHERE id = ?", (original_sha := hashlib.sha256(
            original["content"].encode()).hexdigest(), approval_id))
    _set_payload(home, approval_id, content=original["content"], lineage=None)  # an amendment, as the row says
    result = tether(home, "approve", approval_id, "--by", "carol")  # as an amendment it touches invariants
    assert result.exit_code == 2 and "immutable" in result.stderr
    signatures = json.loads(tether(home, "show", approval_id, "--json").stdout)["signatures"]
    assert signatures["verified"] is False and "against other facts" in signatures["problem"]
    _set_payload(home, approval_id, lineage=3)  # or a lineage of its choosing
    result = tether(home, "approve", approval_id, "--by", "carol")
    assert result.exit_code == 1 and "claims to found lineage 3" in result.stderr
    assert _in_force(home)["in_force"] == 1

    _set_payload(home, approval_id, lineage=2)  # restored: carol's signature completes it
    assert tether(home, "approve", approval_id, "--by", "carol").exit_code == 0
    assert _in_force(home)["lineage"] == 2
    with raw_db(home) as db:  # the version row now: the text in force swapped after the approval
        db.execute("UPDATE constitution_versions SET content = ?, sha256 = ? WHERE version = 2",
                   (swapped, swapped_sha))
    for args in (["constitution", "show"], ["run"]):
        result = tether_cli(home, *args)
        assert result.returncode == 1, result.stderr
        assert "constitution v2 differs from the text approval" in result.stderr
        assert "invariant(s) 'no-abuse'" in result.stderr and "will not fall back" in result.stderr
    with Store(home / "tether.db", readonly=True) as store:
        assert store.list_runs() == [] and store.get_approval(approval_id).subject_sha256 == original_sha


def test_an_amendment_dressed_as_a_new_lineage_is_refused(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path, tiny_world_model_dir)
    amended = tmp_path / "amended.yaml"
    amended.write_text(default_constitution_yaml().replace("weight: 0.3", "weight: 0.4"))
    assert tether(home, "constitution", "propose", str(amended), "--by", "researcher").exit_code == 0
    approval_id = json.loads(tether(home, "approvals", "--json").stdout)[0]["id"]
    _set_payload(home, approval_id, lineage=2)  # it asked for 1 signature, as an amendment does
    result = tether(home, "approve", approval_id, "--by", "alice")
    assert result.exit_code == 1 and "was not proposed as one" in result.stderr
    assert _in_force(home)["in_force"] == 1


def _run_row(home: Path, run_id: str, **values) -> dict:
    """Set columns of a run's row by SQL; returns the values they had."""
    with raw_db(home) as db:
        db.row_factory = sqlite3.Row
        before = dict(db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())
        sets = ", ".join(f"{k} = ?" for k in values)
        db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values.values(), run_id))
    return {k: before[k] for k in values}


def test_a_run_started_before_a_new_lineage_keeps_its_version(gated_workspace, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home, run_id, gate_approval = clone_workspace(gated_workspace, tmp_path / "ws")
    lineage_file = tmp_path / "stricter.yaml"
    lineage_file.write_text(_lineage_text())
    approval_id = _propose(home, lineage_file)["id"]
    for name in REVIEWERS:
        assert tether(home, "approve", approval_id, "--by", name).exit_code == 0
    assert _in_force(home)["lineage"] == 2
    with Store(home / "tether.db", readonly=True) as store:
        old = store.get_run(run_id)
        new_pins = parse_constitution(store.get_constitution_version(2).content, "v2")
    assert old.constitution_version == 1

    # An attacker moves the paused run to the new lineage: by its version alone, then with its pins too.
    saved = _run_row(home, run_id, constitution_version=2)
    moved = tether(home, "resume", run_id)
    assert moved.exit_code == 1 and "invariants changed" in moved.stderr
    _run_row(home, run_id, invariants=json.dumps(new_pins.invariant_digests(), sort_keys=True),
             invariants_sha256=new_pins.invariants_sha256())
    moved = tether(home, "resume", run_id)
    assert moved.exit_code == 1 and "not the ones its audited start recorded" in moved.stderr
    _run_row(home, run_id, constitution_version=saved["constitution_version"],
             invariants=json.dumps(old.invariants, sort_keys=True), invariants_sha256=old.invariants_sha256)

    # Left alone, it resumes on the version it pinned and never adopts lineage 2.
    assert tether(home, "approve", gate_approval, "--by", "alice", "--accept-not-met").exit_code == 0
    resumed = tether(home, "resume", run_id)
    assert resumed.exit_code == 0, resumed.output
    assert "keeps constitution v1 (lineage 1)" in resumed.stderr
    with Store(home / "tether.db", readonly=True) as store:
        run = store.get_run(run_id)
        assert run.round == 2 and run.constitution_version == 1 and run.invariants == old.invariants
        assert not [d for d in store.decisions(run_id) if d.action == "constitution"]
        reports = [ck.invariant_report for ck in store.checkpoints(run_id) if ck.invariant_report]
    assert reports and all(r["constitution"]["version"] == 1 for r in reports)

    # A run started now pins lineage 2 (killed at its first node: the pins are written before it).
    monkeypatch.setitem(os.environ, "TETHER_FAULT", "plan:before")
    monkeypatch.setitem(os.environ, "TETHER_TEST_FAULTS", "1")
    started = tether_cli(home, "run")
    assert started.returncode != 0 and started.stdout.startswith("run ")
    with Store(home / "tether.db", readonly=True) as store:
        new_run = store.get_run(started.stdout.split()[1])
        start = next(e for e in store.audit_entries(subject=new_run.id) if e.action == "run.start")
    assert new_run.constitution_version == 2 and new_run.invariants == new_pins.invariant_digests()
    assert start.details["lineage"] == 2
