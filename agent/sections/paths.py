"""Where the files a config names lie: every relative path is the config file's folder's, made absolute when
the config loads (agent/config.py `load_config`). A world declares which of its settings name files (its
registry entry's `paths`); `model.base` is a path when written as one (`./models/x`) or when it names a folder
next to the config, else a hub id (`org/name`) or `world`, kept as written."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tools.worlds import WORLDS


def world_files(world: str, settings: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(setting key, its label, the path) of every file the world's settings name: a setting holds a path,
    or a map of names to paths (`probes: {invariant: file}`)."""
    for key in WORLDS.path_settings(world):
        value = settings.get(key)
        if isinstance(value, str):
            yield key, f"world.settings.{key}", value
        elif isinstance(value, dict):
            yield from ((key, f"world.settings.{key}.{k}", v) for k, v in value.items() if isinstance(v, str))


def anchored_world(world: str, settings: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The world's settings with each file relative to `folder` made absolute. A relative path with nothing
    there keeps the rule before (the workspace's: `validate` notes it)."""
    out = dict(settings)
    for key in WORLDS.path_settings(world):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = _anchored_file(value, folder)
        elif isinstance(value, dict):
            out[key] = {k: _anchored_file(v, folder) if isinstance(v, str) else v for k, v in value.items()}
    return out


def _anchored_file(value: str, folder: Path) -> str:
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    return os.path.normpath(folder / path) if (folder / path).exists() else value


def anchored_model(base: str, folder: Path, keep: str) -> str:
    """`model.base` as a path is `folder`'s (`./models/x`), as is a bare relative name that is a folder there;
    a hub id and `keep` (the world's own model) stay as they are."""
    if base == keep or not (base.startswith((".", "/", "~")) or (folder / base).is_dir()):
        return base
    return os.path.normpath(folder / Path(base).expanduser())


def names_files_in(world: str, settings: Mapping[str, Any], folder: Path) -> bool:
    """Whether a file the world's (anchored) settings name lies in `folder`."""
    return any(Path(v).is_absolute() and Path(v).is_relative_to(folder) for _, _, v in world_files(world, settings))


def file_settings(base: str, world: str, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(setting, path) of every file or folder an anchored config names: what `validate` shows it checked."""
    found = [("model.base", base)] if Path(base).is_absolute() else []
    return found + [(label, v) for _, label, v in world_files(world, settings)]


def unanchored_paths(world: str, settings: Mapping[str, Any]) -> list[str]:
    """The world's files still relative after anchoring: not found next to the config, so read against the
    workspace (the rule before), one note each for `validate`."""
    return [f"world.settings.{key}: {v} is not next to the config file; it is read from the workspace (the rule "
            "before this version): write it relative to the config's folder"
            for key, _, v in world_files(world, settings) if not Path(v).expanduser().is_absolute()]
