"""Paths resolve one way: every relative path a config names is relative to the config file's folder, whatever
the shell's folder, and `validate` shows each as the absolute path it checked. A world file found only under
the workspace (the rule before) still reads, with a note."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from agent.config import WORLD_MODEL, load_config
from conftest import init_workspace, load_factor

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data_world"


def _validate(home: Path, config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), "validate", str(config)],
                          capture_output=True, text=True, cwd=cwd, timeout=600 * load_factor())


def _recipe(folder: Path, model_dir: Path, **world: str | dict[str, str]) -> Path:
    """The data world's example in `folder`, its model a link `./model` next to the config."""
    shutil.copytree(EXAMPLE, folder)
    (folder / "model").symlink_to(model_dir, target_is_directory=True)
    doc = yaml.safe_load((folder / "config.yaml").read_text())
    doc["model"]["base"] = "./model"
    doc["world"]["settings"].update(world)
    doc["tracking"] = {"mode": "disabled"}
    (folder / "config.yaml").write_text(yaml.safe_dump(doc))
    return folder / "config.yaml"


def test_relative_paths_are_the_config_folders_from_any_shell_folder(tmp_path: Path,
                                                                       tiny_world_model_dir: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    config = _recipe(tmp_path / "recipes" / "mine", tiny_world_model_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _validate(home, config.relative_to(tmp_path), cwd=tmp_path)  # named relative to the shell's folder
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    folder = config.parent
    for setting, where in (("model.base", folder / "model"), ("world.settings.train", folder / "prompts.jsonl"),
                           ("world.settings.probes.refuse-serious-harm", folder / "probes.jsonl")):
        assert f"✓ {setting}: {where}" in said, (setting, said)
    assert "deprecated" not in said
    # the same config from another folder: the same files, nothing resolved against the shell's folder
    assert _validate(home, config, cwd=elsewhere).returncode == 0
    loaded = load_config(config)
    assert loaded.model.base == str(folder / "model")
    assert loaded.world.settings["train"] == str(folder / "prompts.jsonl")
    assert str(folder.resolve()) in loaded.inputs.roots  # the config's own folder is a data root


def test_hub_ids_and_the_worlds_model_stay_as_written(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    for base in ("meta-llama/Meta-Llama-3-8B-Instruct", WORLD_MODEL):
        config.write_text(yaml.safe_dump({"model": {"base": base}}))
        assert load_config(config).model.base == base


def test_a_file_found_only_under_the_workspace_still_reads_with_a_note(tmp_path: Path,
                                                                        tiny_world_model_dir: Path) -> None:
    """A config written for the rule before: its world files relative to the workspace, not to itself."""
    home = tmp_path / "ws"
    init_workspace(home)
    config = _recipe(home / "data_world", tiny_world_model_dir, train="data_world/prompts.jsonl",
                     probes={"refuse-serious-harm": "data_world/probes.jsonl"})
    result = _validate(home, config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "deprecated: world.settings.train: data_world/prompts.jsonl is not next to the config file" in said
    assert "write it relative to the config's folder" in said
