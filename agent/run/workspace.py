"""The workspace: one folder holding config, constitution, store, graph checkpoints and artifacts."""

from __future__ import annotations

import errno
import os
import sqlite3
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


# -- failures of the machine, not of the input: one readable line and exit 1, never a traceback ------

_SQLITE_FIXES: dict[int, str] = {
    sqlite3.SQLITE_FULL: "the disk holding it is full: free space there, then run the command again",
    sqlite3.SQLITE_READONLY: "it is read-only: make the folder and its files writable (`chmod -R u+w {home}`) for "
                             "commands that write; status, approvals, log, checkpoints, audit and reviewer list "
                             "work read-only",
    sqlite3.SQLITE_CANTOPEN: "it cannot be opened: check that the folder exists and that you may read and write it",
    sqlite3.SQLITE_BUSY: "another process holds its lock (a run, an approval): wait for it and retry, or check "
                         "`tether status`",
    sqlite3.SQLITE_LOCKED: "another connection holds its lock: wait for it and retry, or check `tether status`",
    sqlite3.SQLITE_IOERR: "the disk failed to read or write it (full, or failing): check the disk, then run the "
                          "command again",
}
_OS_FIXES: dict[int, str] = {
    errno.ENOSPC: "the disk is full: free space there, then run the command again",
    errno.EDQUOT: "your disk quota is used up: free space, then run the command again",
    errno.EROFS: "it is on a read-only file system: use a writable workspace (--home) for commands that write; "
                 "status, approvals, log, checkpoints, audit and reviewer list work read-only",
    errno.EACCES: "permission denied: make it readable and writable by you, or use a workspace you own (--home)",
    errno.EPERM: "operation not permitted: make it writable by you, or use a workspace you own (--home)",
}


def environment_problem(err: BaseException, home: Path | None) -> str | None:
    """One line naming the path and the fix when `err` is a failure of the machine (a full disk, a
    read-only, unopenable or locked workspace database); None for anything else."""
    if isinstance(err, sqlite3.OperationalError):
        code = getattr(err, "sqlite_errorcode", -1) & 0xFF
        if code == sqlite3.SQLITE_CANTOPEN and home is not None and home.is_dir() and not os.access(home, os.W_OK):
            code = sqlite3.SQLITE_READONLY  # its -shm file cannot be created: the folder is read-only
        fix = _SQLITE_FIXES.get(code)
        if fix is None:
            return None
        where = f"the workspace database in {home}" if home is not None else "the workspace database"
        return f"{where}: {err}; {fix.format(home=home)}"
    if isinstance(err, OSError) and err.errno in _OS_FIXES:
        path = err.filename or home or "a file"
        return f"{path}: {err.strerror}; {_OS_FIXES[err.errno]}"
    return None
