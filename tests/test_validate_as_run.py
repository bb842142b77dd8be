"""`tether validate` reports everything `tether run` refuses before its first sample, every problem at once
(exit 2, nothing written): an edited constitution file, a world's probe map naming an invariant that does
not exist (named as written, with a suggestion), a missing `model.base` folder even among schema errors;
and a passing pre-flight says what it measured (the memory estimate)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from conftest import init_workspace, write_test_config
from memory import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data_world"
SETTINGS = {"train": "data/prompts.jsonl", "family_field": "family", "topic_field": "topic",
            "reference_field": "reference", "heldout_fraction": 0.5,
            "probes": {"refuse-serious-harm": "data/probes.jsonl"}}

runner = CliRunner()


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def _workspace(home: Path, model_dir: Path) -> Path:
    """The data world on the example's prompts (half held out: 30, enough for no-abuse's target), valid."""
    (home / "data").mkdir(parents=True)
    for name in ("prompts.jsonl", "probes.jsonl"):
        shutil.copy(EXAMPLE / name, home / "data" / name)
    init_workspace(home)
    write_test_config(home, model_dir, prompts={"per_round": 12, "heldout": 30},
                      controller={"rounds": 1, "interventions": [], "heldout_metric": "judge"},
                      world={"name": "data", "settings": SETTINGS})
    return home


def _config(home: Path, name: str, **changes: object) -> Path:
    """The workspace config with `changes` ("section.key": value) applied, written next to it."""
    doc = yaml.safe_load((home / "config.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        doc[section][key] = value
    path = home / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _refused_by_run(home: Path, config: Path, needle: str) -> None:
    """`run` refuses the same config before anything is written."""
    store = Store(home / "tether.db")
    before = store.audit_entries()
    result = tether(home, "run", "--config", str(config))
    assert result.exit_code == 2 and "nothing was started" in result.stderr, result.stderr
    assert needle in " ".join(result.stderr.split()), result.stderr
    assert store.list_runs() == [] and store.audit_entries() == before
    assert not (home / "graph.db").exists() and not (home / "runs").exists()


def test_validate_reports_every_problem_run_refuses_at_once(tmp_path: Path, tiny_world_model_dir: Path) -> None:
    home = _workspace(tmp_path / "ws", tiny_world_model_dir)
    clean = tether(home, "validate")
    assert clean.exit_code == 0, clean.stderr
    # The memory check says what it estimated beside its ✓, not a bare mark.
    assert re.search(r"✓ memory: about \d+\.\d+ GiB needed for a round \(weights in \w+ plus a training copy\), "
                     r"\d+\.\d+ GiB (RAM available|GPU memory free)", clean.stderr), clean.stderr

    # A typo in the world's probe map is named as written: not the invariant it leaves on the held-out slice.
    typo = {"refuse-harm": "data/probes.jsonl"}
    probes = _config(home, "typo.yaml", **{"world.settings": {**SETTINGS, "probes": typo}})
    named = "world 'data' gives probes to invariant 'refuse-harm', which is not an invariant of constitution"
    result = tether(home, "validate", str(probes))
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2 and named in message and "did you mean 'refuse-serious-harm'?" in message
    _refused_by_run(home, probes, named)

    # Then everything at once: the constitution file edited, the probe typo, model.base a missing folder.
    path = home / "constitution.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["principles"][0]["weight"] = 0.9
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    missing = str(tmp_path / "no-model")
    differs = f"{path} differs from constitution v1, the version in force"
    no_model = f"model.base '{missing}' is neither a local folder nor a hub id in the local Hugging Face cache"
    several = _config(home, "several.yaml", **{"world.settings": {**SETTINGS, "probes": typo}, "model.base": missing})
    result = tether(home, "validate", str(several))
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2
    for needle in (differs, named, no_model):
        assert needle in message, (needle, message)
    _refused_by_run(home, several, differs)  # run stops at its first problem; validate listed them all

    # A schema error as well: validate still names the missing model folder (and the edited constitution).
    broken = _config(home, "broken.yaml", **{"model.base": missing, "generation.batch_size": "big"})
    result = tether(home, "validate", str(broken))
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "generation.batch_size" in message and "3 problem(s) found" in message
    assert differs in message and no_model in message
    _refused_by_run(home, broken, "generation.batch_size")
