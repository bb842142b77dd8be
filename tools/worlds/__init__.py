"""Worlds: one plug-in a file (or a folder), registered by name in `WORLDS`.

    tiny  the embedded tiny world (tools/worlds/tiny/): task families with verifiers, its own model
    data  users' own prompt sets from local JSONL, CSV, Parquet or a `datasets` folder (tools/worlds/data.py)

`Prompt`, `TaskSet` and `prompt_id` are the generic prompt types every room uses.
"""

from tools.worlds import data as _data  # noqa: F401  (registers "data")
from tools.worlds import tiny as _tiny  # noqa: F401  (registers "tiny"; the one import of the tiny world outside it)
from tools.worlds.base import (
    WORLDS,
    AuditProbeSource,
    BuildState,
    ModelBuilder,
    Prompt,
    TaskSet,
    World,
    WorldError,
    prompt_id,
)

WORLDS.use_entry_points("tether.worlds")  # installed packages' worlds, loaded on first lookup (tools/registry.py)

__all__ = [
    "WORLDS", "AuditProbeSource", "BuildState", "ModelBuilder", "Prompt", "TaskSet", "World", "WorldError",
    "prompt_id",
]
