"""The data world end to end on the tiny model, through the real CLI: users' prompt files instead of the
tiny world, held-out metrics from the judge (no oracle anywhere), invariant probes from a file detected by
a judge of the pool and pinned by content, and every input problem a validate / pre-flight error."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from conftest import init_workspace, tether_cli, write_test_config
from guardrails.constitution import default_constitution_yaml
from memory import Store
from tools.monitors.readings import Readings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data_world"
WORLD = {"name": "data", "settings": {"train": "data/prompts.jsonl", "family_field": "family",
                                      "topic_field": "topic", "reference_field": "reference",
                                      # the default constitution's harm invariant needs harmful probes
                                      "probes": {"refuse-serious-harm": "data/probes.jsonl"}}}
SMALL = {"generation": {"samples_per_prompt": 3, "max_new_tokens": 24}, "evaluation": {"max_new_tokens": 24},
         "prompts": {"per_round": 12, "heldout": 12},
         "controller": {"rounds": 2, "interventions": [], "heldout_metric": "judge"}}


def _constitution() -> str:
    """The default constitution, but refuse-serious-harm is checked on data/probes.jsonl by the `rules` judge
    of the pool used as a classifier. Both bounds are 1.0 so the run reaches the gate whatever the tiny
    model answers: this test is about what is checked, not about the tiny model passing."""
    doc = yaml.safe_load(default_constitution_yaml())
    for inv in doc["invariants"]:
        inv["check"].update(max_rate=1.0, ratchet=False)
        if inv["id"] == "refuse-serious-harm":
            inv.update(probes="data/probes.jsonl", detector={"judge": "rules", "violation_below": 0.5})
    return yaml.safe_dump(doc, sort_keys=False)


def _workspace(home: Path, model_dir: Path, constitution: str | None = None, **sections: dict) -> Path:
    (home / "data").mkdir(parents=True)
    for name in ("prompts.jsonl", "probes.jsonl"):
        shutil.copy(EXAMPLE / name, home / "data" / name)
    if constitution is not None:
        (home / "constitution.yaml").write_text(constitution)  # init keeps it: it becomes v1
    init_workspace(home)
    config = {**SMALL, "world": WORLD}
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    write_test_config(home, model_dir, **config)
    return home


def _snapshot(home: Path) -> dict[str, str]:
    files = {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(home.rglob("*")) if p.is_file() and not p.name.startswith("tether.db")}
    with closing(sqlite3.connect(home / "tether.db")) as db:
        files["tether.db"] = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
    return files


def _config(home: Path, path: Path, **world_settings: object) -> Path:
    doc = yaml.safe_load((home / "config.yaml").read_text())
    doc["world"] = {"name": "data", "settings": {**WORLD["settings"], **world_settings}}
    path.write_text(yaml.safe_dump(doc))
    return path


# -- validate and pre-flight ----------------------------------------------------------------------------

def test_validate_reports_world_problems_and_writes_nothing(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    # Half the prompts held out (30): no-abuse's 0.1 needs 25 replies at confidence 0.95 to be reachable.
    home = _workspace(tmp_path / "ws", tiny_world_model_dir, prompts={"heldout": 30},
                      world={"settings": {**WORLD["settings"], "heldout_fraction": 0.5}})
    assert tether_cli(home, "validate").returncode == 0
    rows = (home / "data" / "prompts.jsonl").read_text().splitlines()
    (home / "data" / "heldout.jsonl").write_text("\n".join(rows[:4]) + "\n")
    (home / "data" / "broken.jsonl").write_text(rows[0] + "\n{not json\n")
    (home / "data" / "probes-trained.jsonl").write_text(json.dumps({"prompt": "What is the capital of Peru?"}) + "\n")
    before = _snapshot(home)
    cases = {
        "overlap": (_config(home, tmp_path / "a.yaml", heldout="data/heldout.jsonl"),
                    "4 prompt(s) are both training and held-out prompts: 'What is 12 times 3?'"),
        "missing": (_config(home, tmp_path / "b.yaml", train="data/nope.jsonl"), "nope.jsonl does not exist"),
        "unparseable": (_config(home, tmp_path / "c.yaml", train="data/broken.jsonl"),
                        "broken.jsonl could not be read"),
        "probe trained": (_config(home, tmp_path / "d.yaml",
                                  probes={"refuse-serious-harm": "data/probes-trained.jsonl"}),
                          "probe(s) of the world's probes are also training prompts ('What is the capital of Peru?')"),
    }
    for name, (path, needle) in cases.items():
        result = tether_cli(home, "validate", str(path))
        assert result.returncode == 2, (name, result.stderr)
        assert needle in " ".join(result.stderr.split()), (name, result.stderr)
    oracle = yaml.safe_load((home / "config.yaml").read_text())
    oracle["controller"]["heldout_metric"] = "oracle"
    oracle["model"]["base"] = "tiny"
    oracle["world"]["name"] = "dta"
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(oracle))
    result = tether_cli(home, "validate", str(tmp_path / "e.yaml"))
    assert result.returncode == 2 and "did you mean 'data'" in result.stderr
    oracle["world"]["name"] = "data"
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(oracle))
    message = " ".join(tether_cli(home, "validate", str(tmp_path / "e.yaml")).stderr.split())
    assert "world 'data' has no verifiers: set controller.heldout_metric: judge" in message
    # the old spelling of model.base: world (the model the world builds), which the data world does not
    assert "model.base 'world' is the model the world builds, and world 'data' builds none" in message
    result = tether_cli(home, "judge", "audit", "--judge", "rules")
    assert result.returncode == 2 and "world 'data' has no judge-audit probes" in result.stderr
    assert _snapshot(home) == before


def test_a_run_on_overlapping_prompts_does_not_start(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path / "ws", tiny_world_model_dir)
    rows = (home / "data" / "prompts.jsonl").read_text().splitlines()
    (home / "data" / "heldout.jsonl").write_text(rows[5] + "\n")
    _config(home, home / "config.yaml", heldout="data/heldout.jsonl")
    result = tether_cli(home, "run")
    assert result.returncode == 2 and "nothing was started" in result.stderr
    assert "both training and held-out prompts: 'What is 11 times 6?'" in result.stderr
    with Store(home / "tether.db") as store:
        assert store.list_runs() == []


# -- a run to the gate ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory, tiny_world_model_dir: Path) -> tuple[Path, str]:
    home = _workspace(tmp_path_factory.mktemp("data-world") / "ws", tiny_world_model_dir, _constitution())
    result = tether_cli(home, "run")
    assert result.returncode == 0, result.stderr
    return home, result.stdout.split()[1]


def test_a_data_world_run_reaches_the_gate_with_judge_metrics_only(gated: tuple[Path, str]) -> None:
    from agent.config import load_config
    from agent.run.context import heldout_slice
    from agent.run.services import build_world

    home, run_id = gated
    with Store(home / "tether.db") as store:
        approval = store.approvals(status="pending", run_id=run_id)[0]
        candidate = store.get_checkpoint(f"{run_id}-r1")
        for who in ("candidate", "active"):
            splits = [candidate.metrics[key][who] for key in ("validation", "eval")]  # the controller's, the reported
            assert sum(evaluation["n"] for evaluation in splits) == 12
            for evaluation in splits:
                assert isinstance(evaluation["judge"], float)
                assert "oracle" not in evaluation and "oracle_by_family" not in evaluation  # absent, never 0
        readings = Readings.from_json(store.get_round(run_id, 1).monitors)
        keys = [str(getattr(k, "value", k)) for k in (*readings.values, *readings.could_not_check)]
        assert keys and not [k for k in keys if k.startswith(("oracle", "heldout_oracle"))]
        assert "oracle" not in approval.summary
        # The prompts are the data world's, split by the seed: held-out replies on its held-out slice,
        # training samples from its train split only.
        world = build_world(load_config(home / "config.yaml"), home).plugin.taskset()
        heldout = {p.text for p in heldout_slice(world, 12)}
        evaluated = {s.prompt for split in ("validation", "test") for s in store.samples(run_id, None, split=split)}
        assert evaluated == heldout
        trained = {s.prompt for s in store.samples(run_id, None, split="train")}
        assert trained and trained <= {p.text for p in world.train}


def test_the_invariant_with_a_probe_file_is_checked_on_it_by_its_judge(gated: tuple[Path, str]) -> None:
    home, run_id = gated
    probes = home / "data" / "probes.jsonl"
    sha = hashlib.sha256(probes.read_bytes()).hexdigest()
    with Store(home / "tether.db") as store:
        report = store.get_checkpoint(f"{run_id}-r1").invariant_report
        by_id = {r["id"]: r for r in report["results"]}
        harm, abuse = by_id["refuse-serious-harm"], by_id["no-abuse"]
        assert (harm["n"], harm["probes_sha256"], harm["probes"]) == (16, sha, "file data/probes.jsonl")
        assert harm["detector"] == "judge rules (violation below 0.5)" and harm["rate"] is not None
        assert (abuse["n"], abuse["probes"], abuse["detector"]) == (12, "the held-out slice", "rules")
        pins = [e.details for e in store.audit_entries(subject=run_id) if e.action == "invariants.probes"]
        assert pins[0]["probes"]["refuse-serious-harm"] == {"source": "file", "path": "data/probes.jsonl", "n": 16,
                                                           "sha256": sha}


def test_a_probe_file_edited_after_the_run_started_is_refused_at_the_next_check(
        gated: tuple[Path, str], tmp_path: Path) -> None:
    source, run_id = gated
    home = tmp_path / "ws"
    shutil.copytree(source, home)
    with Store(home / "tether.db") as store:
        approval_id = store.approvals(status="pending", run_id=run_id)[0].id
    probes = home / "data" / "probes.jsonl"
    probes.write_text(probes.read_text().replace("neighbour's cat", "neighbour's dog"))
    assert tether_cli(home, "approve", approval_id, "--by", "alice").returncode == 0
    result = tether_cli(home, "resume", run_id)
    message = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stderr
    assert ("the invariant probes changed since the run started: 'refuse-serious-harm' (file data/probes.jsonl"
            in message)
    with Store(home / "tether.db") as store:
        run = store.get_run(run_id)
        assert run.state == "failed" and run.error.startswith("tampering:")
        assert store.get_checkpoint(f"{run_id}-r2").invariant_report is None  # nothing was recorded on it
