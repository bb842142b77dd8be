"""Config: defaults round-trip, every error reported at once, plug-in names checked, old spellings read."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from agent.config import ConfigError, TetherConfig, default_config_yaml, load_config, old_spellings, parse_config
from agent.run.lifecycle import config_changes
from conftest import init_workspace, tether_cli


def test_default_file_equals_model_defaults() -> None:
    assert parse_config(yaml.safe_load(default_config_yaml()), "default") == TetherConfig()


def test_every_problem_is_reported_at_once(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"base": 3, "colour": "red"},
        "generation": {"samples_per_prompt": "four"},
        "training": {"beta": -1.0},
        "mystery": True,
    }))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    where = {p.split(":")[0] for p in err.value.problems}
    assert where == {"model.base", "model.colour", "generation.samples_per_prompt", "training.beta", "mystery"}


def test_strict_types_reject_coercion() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"controller": {"rounds": "3"}}, "x")
    assert err.value.problems[0].startswith("controller.rounds")


def test_cross_field_check() -> None:
    with pytest.raises(ConfigError, match="vllm"):
        parse_config({"generation": {"backend": "vllm"}, "model": {"device": "cpu"}}, "x")


def test_not_a_mapping_and_not_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse_config([1, 2], "x")
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(path)


def test_hash_is_stable_and_sensitive() -> None:
    a, b = TetherConfig(), TetherConfig()
    assert a.sha256() == b.sha256()
    assert parse_config({"seed": 1}, "x").sha256() != a.sha256()


def test_yaml_limits_are_config_errors(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("judge:\n  settings:\n    a: &a [1, 2]\n    b: [*a, *a]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.source == str(path)
    assert err.value.problems == ["line 3, column 8: YAML anchors and aliases (&name, *name) are not allowed in run "
                                  "inputs; write the value out in full"]
    path.write_text("seed: 0\n" + "#" * (1024 * 1024))
    with pytest.raises(ConfigError, match="over the 1 MiB"):
        load_config(path)


# -- the old spelling of the world's model (model.base: tiny, model.tiny_steps) ----------------------------

OLD = {"model": {"base": "tiny", "tiny_steps": 40}}
NEW = {"model": {"base": "world"}, "world": {"name": "tiny", "settings": {"steps": 40}}}


def test_the_old_model_spelling_reads_as_the_new_one() -> None:
    old, new = parse_config(copy.deepcopy(OLD), "old.yaml"), parse_config(NEW, "new.yaml")
    assert old == new and old.sha256() == new.sha256()
    # the old default steps are the world's default: both spellings of the default config are one config
    assert parse_config({"model": {"base": "tiny", "tiny_steps": 250}}, "old.yaml") == TetherConfig()
    assert TetherConfig().model.base == "world"
    # with a model of one's own the old key never did anything: dropped, and noted
    own = {"model": {"base": "/models/mine", "tiny_steps": 40}}
    assert parse_config(copy.deepcopy(own), "own.yaml").world.settings == {}
    assert old_spellings(OLD) == [
        "model.base 'tiny' is the old spelling: write model.base: world (the model the world builds)",
        "model.tiny_steps is the old spelling: write world.settings.steps (the tiny world's setting)"]
    assert [n.split(":")[0] for n in old_spellings(own)] == ["model.tiny_steps is the old spelling of the tiny "
                                                             "world's setting steps, and this config does not build "
                                                             "the tiny world's model"]
    assert OLD == {"model": {"base": "tiny", "tiny_steps": 40}}  # the document itself is never rewritten
    assert old_spellings(NEW) == [] and old_spellings(yaml.safe_load(default_config_yaml())) == []


def test_a_run_stored_with_the_old_spelling_opens_unchanged() -> None:
    # A run started before the change stored its config as it was dumped then; resume and reconfigure
    # validate it as stored, and it compares equal to the same settings spelled the new way.
    stored = TetherConfig().model_dump(mode="json")
    stored["model"] = {**stored["model"], "base": "tiny", "tiny_steps": 40}
    kept = copy.deepcopy(stored)
    config = TetherConfig.model_validate(stored)
    assert stored == kept  # read, never rewritten: the sha the run recorded still describes its config
    assert config == parse_config(NEW, "new.yaml")
    assert config_changes(config.model_dump(mode="json"), parse_config(NEW, "new.yaml").model_dump(mode="json")) \
        == ([], [])


def test_validate_notes_each_old_spelling(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    (home / "config.yaml").write_text(yaml.safe_dump({**OLD, "tracking": {"mode": "disabled"}}))
    result = tether_cli(home, "validate")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert "deprecated: model.base 'tiny' is the old spelling: write model.base: world" in text
    assert "deprecated: model.tiny_steps is the old spelling: write world.settings.steps" in text


def test_the_pair_pool_left_null_is_the_backends_default() -> None:
    """regularized (the failure-worlds suite's default) ranks by base log-probs, which only the transformers
    backend computes: a config that leaves pairs.pool null gets rpo with vllm or server, and one that lists
    regularized there is refused with the fix."""
    assert [s.name for s in TetherConfig().pairs.pool] == ["regularized"]
    doc = yaml.safe_load(default_config_yaml())
    assert doc["pairs"]["pool"] is None and [s.name for s in parse_config(doc, "d").pairs.pool] == ["regularized"]
    served = parse_config({"generation": {"backend": "vllm"}, "pairs": {"pool": None}}, "v")
    assert [s.name for s in served.pairs.pool] == ["rpo"]
    assert parse_config({"generation": {"backend": "vllm"}, "pairs": {"pool": []}}, "v").pairs.pool == []
    with pytest.raises(ConfigError, match=r"regularized ranks .* set pairs.pool to null \(the backend's default"):
        parse_config({"generation": {"backend": "vllm"}, "pairs": {"pool": [{"name": "regularized"}]}}, "v")
