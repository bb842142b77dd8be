"""Worlds: one plug-in a file (or a folder), registered by name in `WORLDS`.

    tiny  the embedded tiny world (tools/worlds/tiny/): task families with verifiers, its own model
    data  users' own prompt sets from local JSONL, CSV, Parquet or a `datasets` folder (tools/worlds/data.py)

`Prompt`, `TaskSet` and `prompt_id` are the generic prompt types every room uses. This file is the one
place outside a world's own folder that names a built-in world: it registers them and names the default.
"""

from tools.worlds import data as _data  # noqa: F401  (registers "data")
from tools.worlds import tiny as _tiny  # noqa: F401  (registers "tiny"; the one import of the tiny world outside it)
from tools.worlds.base import (
    WORLDS,
    AuditProbeSource,
    BuildState,
    HeldoutSplit,
    InvariantProbeMap,
    ModelBuilder,
    Prompt,
    PromptJoiner,
    TaskSet,
    World,
    WorldError,
    prompt_id,
    upgrade_config,
    validation_split,
)

# The world a config without a world section runs on: the embedded one, which needs no files and builds its model.
DEFAULT_WORLD = "tiny"

WORLDS.use_entry_points("tether.worlds")  # installed packages' worlds, loaded on first lookup (tools/registry.py)

__all__ = [
    "DEFAULT_WORLD", "WORLDS", "AuditProbeSource", "BuildState", "HeldoutSplit", "InvariantProbeMap",
    "ModelBuilder", "Prompt", "PromptJoiner", "TaskSet", "World", "WorldError", "prompt_id", "upgrade_config",
    "validation_split",
]
