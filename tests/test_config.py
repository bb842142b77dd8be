"""Config: defaults round-trip, every error reported at once, plug-in names checked."""

from __future__ import annotations

import pytest
import yaml

from agent.config import ConfigError, TetherConfig, default_config_yaml, load_config, parse_config


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
