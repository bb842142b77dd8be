"""Connection handling and transactions shared by the store's table mixins.

Concurrency model: several processes (a run, a CLI ``approve``) open the same file. WAL lets
readers proceed while one process writes; every write goes through ``transaction()``, which
takes the write lock up front with BEGIN IMMEDIATE (a deferred transaction that later tries to
write can fail with SQLITE_BUSY without waiting, because its read snapshot is stale), and the
busy timeout makes the other writers wait instead of failing. Within one process, an RLock
serializes threads that share a Store, since one SQLite connection carries one transaction.

``Store(path, readonly=True)`` is for commands that only read (``status``, ``audit verify``): it
opens the file with ``mode=ro`` and never migrates or writes, so it works on a read-only workspace.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Self

from memory import schema
from memory.common import StoreError, to_json, utc_now

if TYPE_CHECKING:
    from sqlite_utils import Database

BUSY_TIMEOUT_MS = 30_000


def _sqlite_utils() -> ModuleType:
    """sqlite_utils, imported without pandas and numpy. It imports them when they are installed
    (~0.35 s, half of a review command's start) only to map their types when it creates tables from
    Python values; the store writes its own SQL and never does. Either imports normally afterwards
    for whoever needs it (the data world's `datasets`); already imported, it is left as it is."""
    absent = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in absent:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import sqlite_utils
    finally:
        for name in absent:
            if sys.modules.get(name) is None:
                sys.modules.pop(name, None)
    return sqlite_utils


sqlite_utils = _sqlite_utils()


class SchemaOutdatedError(StoreError):
    """A read-only open found a schema older than this tether's; only a writable open migrates it."""


class StoreBase:
    """Owns the connection; table-specific methods live in mixins (see memory/store.py)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # isolation_level=None: the driver never opens implicit transactions, so every
        # transaction boundary is the explicit one in transaction(). check_same_thread=False
        # because access is serialized by self._lock instead.
        if readonly:
            conn = _connect_readonly(self.path, busy_timeout_ms)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path),
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        self.db: Database = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._savepoints = 0
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            self.schema_version = self._readonly_schema(conn)
            return
        try:
            # journal_mode is persistent in the file, but setting it is cheap and idempotent.
            self.db.enable_wal()
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, much faster
            with self.transaction():
                self.schema_version = schema.migrate(conn, self.root)
        except BaseException:  # a locked, full or read-only file: leave no connection behind
            conn.close()
            raise

    def _readonly_schema(self, conn: sqlite3.Connection) -> int:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == schema.SCHEMA_VERSION:
            return version
        conn.close()
        if version > schema.SCHEMA_VERSION:
            raise StoreError(f"database schema version {version} of {self.path} is newer than this tether "
                             f"({schema.SCHEMA_VERSION}): upgrade tether")
        raise SchemaOutdatedError(
            f"database schema version {version} of {self.path} is older than this tether "
            f"({schema.SCHEMA_VERSION}) and a read-only open does not upgrade it: open it writable once "
            f"(make {self.path.parent} writable and run any tether command on it)")

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> Path:
        """The workspace folder: the database's own. Stored paths are relative to it."""
        return self.path.resolve().parent

    def resolve(self, stored: str) -> Path:
        """A stored path as a real one: relative paths are resolved against the workspace folder,
        never the working directory, so a workspace can be moved or copied."""
        path = Path(stored)
        return path if path.is_absolute() else self.root / path

    def relative(self, path: Path | str) -> str:
        """The form a path is stored in: relative to the workspace when it lies inside it, else absolute."""
        found = schema.inside(str(path), self.root)
        return found if found is not None else str(Path(path).resolve())

    @property
    def journal_mode(self) -> str:
        return self.db.journal_mode

    # -- transactions --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Atomic block: BEGIN IMMEDIATE at the outermost level, a SAVEPOINT when nested.

        Every write method uses this, so ``with store.transaction(): store.update_run(...);
        store.append_audit(...)`` commits both or neither, and the inner calls never issue a
        second BEGIN. A failing nested block rolls back only its own savepoint.
        """
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only: a command that writes opens it writable")
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                self._savepoints += 1
                name = f"tether_sp_{self._savepoints}"
                conn.execute(f"SAVEPOINT {name}")
                try:
                    yield self
                except BaseException:
                    # A RAISE(ROLLBACK)-style error may already have ended the transaction.
                    if conn.in_transaction:
                        conn.execute(f"ROLLBACK TO {name}")
                        conn.execute(f"RELEASE {name}")
                    raise
                else:
                    conn.execute(f"RELEASE {name}")
                finally:
                    self._savepoints -= 1
            else:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

    @property
    def in_transaction(self) -> bool:
        return self.db.conn.in_transaction

    # -- small SQL helpers ---------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.db.conn.execute(sql, params)
            keys = [d[0] for d in cursor.description]
            return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]

    def _one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _exec(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        """Run one write statement; callers wrap it in transaction()."""
        with self._lock:
            return self.db.conn.execute(sql, params)

    def _insert(self, table: str, values: Mapping[str, Any], returning: str = "rowid") -> Any:
        cols = list(values)
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' for _ in cols)}) RETURNING {returning}"
        )
        return self._exec(sql, [values[c] for c in cols]).fetchone()[0]

    def _insert_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Insert rows in one transaction and return their ids in input order."""
        ids: list[int] = []
        with self.transaction():
            for values in rows:
                ids.append(int(self._insert(table, values, returning="id")))
        return ids

    @staticmethod
    def _encode(
        fields: Mapping[str, Any],
        json_cols: frozenset[str],
        bool_cols: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Python values -> column values (JSON text, 0/1 for booleans)."""
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if key in json_cols:
                out[key] = to_json(value)
            elif key in bool_cols and value is not None:
                out[key] = int(bool(value))
            else:
                out[key] = value
        return out

    @staticmethod
    def _check_fields(table: str, fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ValueError(
                f"unknown or read-only {table} field(s): {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )

    @staticmethod
    def _check_value(name: str, value: Any, allowed: frozenset[str]) -> None:
        if value not in allowed:
            raise ValueError(f"invalid {name} {value!r}; expected one of {sorted(allowed)}")

    now = staticmethod(utc_now)


def _connect_readonly(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection that cannot write: ``mode=ro``. Reading a WAL database needs its -shm file; in a
    folder where that cannot be created (read-only media, a read-only mount) the file is opened
    ``immutable``, which is exact only while no -wal holds changes, so that case is refused."""
    if not path.is_file():
        raise StoreError(f"no database at {path}")
    uri = path.resolve().as_uri()

    def connect(query: str) -> sqlite3.Connection:
        conn = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=busy_timeout_ms / 1000,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read opens the WAL index
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return connect("mode=ro")
    except sqlite3.OperationalError as err:
        if err.sqlite_errorname not in ("SQLITE_CANTOPEN", "SQLITE_READONLY_CANTINIT"):
            raise
        wal = path.with_name(path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            raise StoreError(
                f"{wal} holds changes not yet in {path.name}, and {path.parent} is read-only, so they cannot be "
                f"read: make {path.parent} writable once (any tether command then folds them in)") from None
        return connect("mode=ro&immutable=1")
