"""The workspace: one folder holding config, constitution, store, graph checkpoints and artifacts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tether_types import EXIT_USAGE, TetherError

HOME_ENV = "TETHER_HOME"
DEFAULT_HOME = Path(".tether")


class WorkspaceError(TetherError, RuntimeError):
    exit_code = EXIT_USAGE


def resolve_home(cli_home: Path | None) -> Path:
    """`--home`, else `$TETHER_HOME`, else `./.tether`."""
    if cli_home is not None:
        return cli_home
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else DEFAULT_HOME


@dataclass(frozen=True)
class Workspace:
    """A workspace folder, held as an absolute path: nothing depends on the working directory."""

    home: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())

    @property
    def config_path(self) -> Path:
        return self.home / "config.yaml"

    @property
    def constitution_path(self) -> Path:
        return self.home / "constitution.yaml"

    @property
    def db_path(self) -> Path:
        return self.home / "tether.db"

    @property
    def graph_db_path(self) -> Path:
        """LangGraph's SQLite checkpointer lives in its own file, apart from the store."""
        return self.home / "graph.db"

    @property
    def wandb_dir(self) -> Path:
        return self.home / "wandb"

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    def adapter_dir(self, run_id: str, checkpoint_id: str) -> Path:
        return self.run_dir(run_id) / "adapters" / checkpoint_id

    def lock_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "run.lock"

    @property
    def models_dir(self) -> Path:
        """Where worlds build their models (`model.base: world`): a folder per build, named by the world."""
        return self.home / "models"

    def is_initialised(self) -> bool:
        return self.config_path.is_file() and self.constitution_path.is_file() and self.db_path.is_file()

    def require(self) -> None:
        if not self.is_initialised():
            raise WorkspaceError(
                f"no tether workspace at {self.home} (run `tether init`, or pass --home / set ${HOME_ENV})"
            )
