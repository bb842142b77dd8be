"""The base model a run loads: `model.base` as configured (a saved model folder or a cached hub id), or
`world`: the model the run's world builds (a `ModelBuilder`, tools/worlds/base.py) into the workspace's
models/, in a folder the world names per build, built as the world's settings say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.config import WORLD_MODEL, TetherConfig
from agent.run.workspace import Workspace
from tools.worlds import ModelBuilder, World, WorldError


def model_builder(config: TetherConfig, world: World) -> ModelBuilder:
    """`world` as the builder of the model `model.base: world` names; WorldError when it builds none."""
    if not isinstance(world, ModelBuilder):
        raise WorldError(f"model.base '{WORLD_MODEL}' is the model the world builds, and world '{config.world.name}' "
                         "builds none: set model.base to a saved model folder or a cached hub id")
    return world


def world_model_dir(ws: Workspace, config: TetherConfig, world: World) -> Path:
    """The folder `world` builds its model in (WorldError when it builds none)."""
    return ws.models_dir / model_builder(config, world).model_folder


def model_ref(ws: Workspace, config: TetherConfig, world: Callable[[], World]) -> str:
    """What `from_pretrained` loads: `model.base`, or for `world` the folder the world (built by `world`, only
    then) builds its model in. Raises what building the world raises, and WorldError when it builds none."""
    if config.model.base != WORLD_MODEL:
        return config.model.base
    return str(world_model_dir(ws, config, world()))
