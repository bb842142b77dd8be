"""`tether judge audit`: the bias audit flags biased judges, passes fair ones, and writes nothing but its own
entry in the audit log."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from agent.run.judge_trust import AUDIT_ACTION
from guardrails.constitution import default_constitution_yaml, parse_constitution
from memory import AuditEntry, Store
from tools.judges import JUDGES, JudgeItem, PairItem, PairVerdict, Verdict, combine_orders
from tools.judges.audit import MEASURES, audit_judge
from tools.worlds.references import AuditProbes
from tools.worlds.tiny import tiny_world, verify
from tools.worlds.tiny.audit_probes import build_probes

CONSTITUTION = parse_constitution(default_constitution_yaml(), "default")
TASKS = tiny_world(seed=0)
runner = CliRunner()


@pytest.fixture(scope="module")
def probes() -> AuditProbes:
    return build_probes(TASKS, seed=0, n=24)


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def snapshot(home: Path) -> dict[str, str]:
    """Every file's hash, the store by content (its WAL may be checkpointed at any time) without the rows of
    `judge.audit` entries in the audit log (and the sequence counter they move): `audit_entries` checks those."""
    files = {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(home.rglob("*")) if p.is_file() and not p.name.startswith("tether.db")}
    with closing(sqlite3.connect(home / "tether.db")) as db:
        dump = [line for line in db.iterdump() if f"'{AUDIT_ACTION}'" not in line and "sqlite_sequence" not in line]
        files["tether.db"] = hashlib.sha256("\n".join(dump).encode()).hexdigest()
    return files


def audit_entries(home: Path) -> list[AuditEntry]:
    with Store(home / "tether.db", readonly=True) as store:
        return [e for e in store.audit_entries() if e.action == AUDIT_ACTION]


# -- the pure audit ---------------------------------------------------------------------------------

def test_probes_are_heldout_balanced_and_padded(probes: AuditProbes) -> None:
    assert len(probes) == 24 and probes.families() == {"arithmetic": 8, "harmful": 8, "howto": 8}
    for probe in probes.probes:
        assert probe.prompt.split == "heldout"
        refs = probe.references
        assert {"good", "wrong", "padded"} <= set(refs)
        assert refs["good"] in refs["padded"] and len(refs["padded"]) > len(refs["good"])
    assert build_probes(TASKS, seed=0, n=24) == probes  # deterministic
    assert len(build_probes(TASKS, seed=0, n=10_000)) == len(TASKS.heldout)


def test_length_biased_is_flagged_and_rules_passes_length(probes: AuditProbes) -> None:
    biased = audit_judge(JUDGES.build("length_biased").plugin, probes, None, verify, name="length_biased")
    rules = audit_judge(JUDGES.build("rules", constitution=CONSTITUTION).plugin, probes, None, verify,
                        name="rules")
    length = biased.measure("length_bias")
    assert length.value == 1.0 and length.flagged and length.n == len(probes)
    assert biased.verdict == "fail" and "length_bias" in biased.flagged
    assert rules.measure("length_bias").value < 0.2 and rules.measure("length_bias").flagged is False
    assert rules.measure("oracle_agreement").value > biased.measure("oracle_agreement").value
    # No policy answers: self-preference is reported as not measured, never as a pass or a flag.
    assert rules.measure("self_preference").flagged is None and "self_preference" in rules.unmeasured


class FirstSlotJudge:
    """Always prefers whichever answer it is shown first, asked in both orders like the pool does."""

    def compare(self, items: Sequence[PairItem]) -> list[PairVerdict]:
        return [combine_orders("a", "a", ("Winner: A", "Winner: A")) for _ in items]


def test_a_position_biased_judge_shows_position_bias_one(probes: AuditProbes) -> None:
    report = audit_judge(FirstSlotJudge(), probes, None, verify)
    bias = report.measure("position_bias")
    assert bias.value == 1.0 and bias.flagged and bias.n == report.counts["pairs"]
    assert report.measure("invalid_rate").value == 0.0
    assert report.measure("oracle_spearman").flagged is None  # no pointwise scores to correlate
    assert "position_bias" in report.flagged


class LovesItsOwnJudge:
    """Scores the policy's own answers 1, everything else 0.5: textbook self-enhancement."""

    def __init__(self, own: set[str]) -> None:
        self.own = own

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return [Verdict(1.0 if it.response in self.own else 0.5, True, "") for it in items]


class BrokenJudge:
    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        raise RuntimeError("judge backend down")


def test_self_preference_and_invalid_judgments(probes: AuditProbes) -> None:
    answers = {p.prompt.id: p.references["good"] for p in probes.probes}  # a policy that answers well
    report = audit_judge(LovesItsOwnJudge(set(answers.values())), probes, answers, verify)
    self_pref = report.measure("self_preference")
    assert self_pref.value == 1.0 and self_pref.flagged and self_pref.n == report.counts["self_pairs"] > 0
    broken = audit_judge(BrokenJudge(), probes, answers, verify)
    assert broken.measure("invalid_rate").value == 1.0 and broken.measure("invalid_rate").flagged
    assert broken.measure("length_bias").value is None and broken.measure("length_bias").flagged is None


# -- the CLI ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("judge", "length_flagged"), [("length_biased", True), ("rules", False)])
def test_cli_json_has_every_measure_and_records_only_the_audit(workspace_home: Path, judge: str,
                                                               length_flagged: bool) -> None:
    before = snapshot(workspace_home)
    result = tether(workspace_home, "judge", "audit", "--judge", judge, "--count", "9", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(MEASURES) <= set(doc["measures"])
    for measure in doc["measures"].values():
        assert {"value", "n", "threshold", "flagged"} <= set(measure)
    assert doc["judge"] == {"name": judge, "settings": {}} and doc["probes"] == 9
    assert doc["measures"]["length_bias"]["flagged"] is length_flagged
    assert doc["measures"]["self_preference"]["n"] > 0  # the configured model answered the probes
    assert doc["verdict"] == ("fail" if doc["flagged"] else "pass")
    assert snapshot(workspace_home) == before
    (entry,) = audit_entries(workspace_home)
    assert entry.subject == f"judge:{judge}" and entry.details["verdict"] == doc["verdict"]
    assert entry.details["measures"]["length_bias"]["flagged"] is length_flagged
    assert entry.details["source"] == {"kind": "world", "probes": 9, "seed": doc["seed"]}


def test_cli_table(workspace_home: Path) -> None:
    result = tether(workspace_home, "judge", "audit", "--judge", "length_biased", "--probes", "6")
    assert result.exit_code == 0, result.stderr  # a completed audit is a report: exit 0 even on FAIL
    assert "deprecated: --probes 6 (a count) is now --count 6" in result.stderr
    assert "recorded unsigned" in result.stderr
    assert "cannot satisfy judge.require_audit" in " ".join(result.stderr.split())
    for needle in (*MEASURES, "verdict: FAIL", "length_bias"):
        assert needle in result.stdout


def test_cli_bad_usage_exits_2_and_writes_nothing(workspace_home: Path, tmp_path: Path) -> None:
    before = snapshot(workspace_home)
    result = tether(workspace_home, "judge", "audit", "--judge", "rulez")
    assert result.exit_code == 2 and "did you mean 'rules'" in result.stderr and not result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation: {batch_size: big}\n")
    result = tether(workspace_home, "judge", "audit", "--judge", "rules", "--config", str(bad))
    assert result.exit_code == 2 and "generation.batch_size" in result.stderr
    bad.write_text("judge: {name: length_biased, settings: {scale: -1}}\n")
    result = tether(workspace_home, "judge", "audit", "--judge", "length_biased", "--config", str(bad))
    assert result.exit_code == 2 and "scale" in result.stderr
    for args, needle in ((["--judge", "rules", "--detectors"], "not both"), ([], "name a judge"),
                         (["--judge", "rules", "--probes", str(tmp_path / "none.jsonl")], "no such file"),
                         (["--judge", "rules", "--probes", "bundled", "--seed", "-1"], "seed")):
        result = tether(workspace_home, "judge", "audit", *args)
        assert result.exit_code == 2 and needle in result.stderr, (args, result.stderr)
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p", "response_a": "a"}\n')
    result = tether(workspace_home, "judge", "audit", "--judge", "rules", "--probes", str(tmp_path / "bad.jsonl"))
    assert result.exit_code == 2 and "bad.jsonl" in result.stderr and "line 1" in result.stderr
    assert snapshot(workspace_home) == before and audit_entries(workspace_home) == []
    result = tether(tmp_path / "nowhere", "judge", "audit", "--judge", "rules")
    assert result.exit_code == 2 and "tether init" in result.stderr
    assert not (tmp_path / "nowhere").exists()


# -- labelled probes, --strict, the detectors, and the gate on runs ---------------------------------

def test_labelled_probes_measure_calibration_and_strict_exits_1(workspace_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    result = tether(workspace_home, "judge", "audit", "--judge", "length_biased", "--probes", "bundled",
                    "--out", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["probes"] >= 200 and doc["measures"]["length_bias"]["flagged"] is True
    assert doc["measures"]["ece"]["value"] is not None and doc["calibration"]["n"] > 0
    assert json.loads((out / "audit.json").read_text())["verdict"] == doc["verdict"] == "fail"
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    strict = tether(workspace_home, "judge", "audit", "--judge", "length_biased", "--probes", "bundled", "--strict")
    assert strict.exit_code == 1 and "verdict: FAIL" in strict.stdout
    verdict_line = next(line for line in strict.stdout.splitlines() if line.startswith("verdict: FAIL"))
    assert "accuracy[arithmetic]" in verdict_line  # a category's measure named as in the table, not eaten as markup
    entries = audit_entries(workspace_home)
    assert [e.details["source"]["kind"] for e in entries] == ["labelled", "labelled"]
    assert entries[0].details["source"]["sha256"] == doc["sha256"]
    # a user's own RewardBench-style file: chosen is better
    mine = tmp_path / "prefs.jsonl"
    mine.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?", "chosen": f"{2 * i}.",
                                        "rejected": "I cannot help with that.", "subset": "math"}) + "\n"
                            for i in range(12)))
    result = tether(workspace_home, "judge", "audit", "--judge", "rules", "--probes", str(mine), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["measures"]["accuracy[math]"]["n"] == 12


def test_the_keyword_detectors_say_their_recall(workspace_home: Path) -> None:
    result = tether(workspace_home, "judge", "audit", "--detectors", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    recall = doc["measures"]["recall"]
    assert recall["n"] >= 100 and recall["value"] < 1.0  # keyword lists miss paraphrase: tether now says so
    assert tether(workspace_home, "judge", "audit", "--detectors", "--strict").exit_code == 1
    assert audit_entries(workspace_home) == []  # a detector audit is a report; only judge audits gate runs
    validate = tether(workspace_home, "validate")
    assert validate.exit_code == 0, validate.stderr
    note = " ".join(validate.stderr.split())
    assert "invariants checked by keyword lists" in note and f"{recall['value']:.2f}" not in ("", None)
    assert "no-abuse recall" in note and "refuse-serious-harm recall" in note


def test_a_run_refuses_a_judge_without_a_signed_passing_audit_before_any_sample(workspace_home: Path) -> None:
    import yaml

    config = yaml.safe_load((workspace_home / "config.yaml").read_text())
    config["judge"] = {"name": "length_biased", "require_audit": {"length_bias": 0.6, "ece": 0.3}}
    (workspace_home / "config.yaml").write_text(yaml.safe_dump(config))
    for command in (["validate"], ["run"]):
        result = tether(workspace_home, *command)
        assert result.exit_code == 2, result.output
        assert "judge 'length_biased' has no audit" in " ".join(result.stderr.split())
    assert tether(workspace_home, "judge", "audit", "--judge", "length_biased", "--probes", "bundled").exit_code == 0
    result = tether(workspace_home, "run")  # unsigned: no evidence, whatever it measured
    assert result.exit_code == 2 and "is unsigned" in " ".join(result.stderr.split())
    assert tether(workspace_home, "judge", "audit", "--judge", "length_biased", "--probes", "bundled",
                  "--by", "alice").exit_code == 0
    result = tether(workspace_home, "run")
    assert result.exit_code == 2
    assert "fails length_bias = 1.000 (above the required 0.6)" in " ".join(result.stderr.split())
    with Store(workspace_home / "tether.db", readonly=True) as store:
        assert store.list_runs() == []  # refused before a run exists, so before any sample
    # the audit is pinned to the configuration: other settings need an audit of their own
    config["judge"]["settings"] = {"scale": 0.5}
    config["judge"]["require_audit"] = {"length_bias": 1.0}
    (workspace_home / "config.yaml").write_text(yaml.safe_dump(config))
    assert "has no audit" in " ".join(tether(workspace_home, "validate").stderr.split())
    assert tether(workspace_home, "judge", "audit", "--judge", "length_biased", "--probes", "bundled",
                  "--by", "bob").exit_code == 0
    assert tether(workspace_home, "validate").exit_code == 0


def test_the_configs_audit_metrics_are_the_audits() -> None:
    from agent.config import AUDIT_METRICS
    from tools.judges import labelled_audit
    from tools.judges.audit import DIRECTIONS

    assert set(DIRECTIONS) | set(labelled_audit.DIRECTIONS) == AUDIT_METRICS
