"""Connection handling and transactions shared by the store's table mixins.

Concurrency model: several processes (a run, a CLI ``approve``) open the same file. WAL lets
readers proceed while one process writes; every write goes through ``transaction()``, which
takes the write lock up front with BEGIN IMMEDIATE (a deferred transaction that later tries to
write can fail with SQLITE_BUSY without waiting, because its read snapshot is stale), and the
busy timeout makes the other writers wait instead of failing. Within one process, an RLock
serializes threads that share a Store, since one SQLite connection carries one transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from memory import schema
from memory.common import to_json, utc_now

BUSY_TIMEOUT_MS = 30_000


class StoreBase:
    """Owns the connection; table-specific methods live in mixins (see memory/store.py)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the driver never opens implicit transactions, so every
        # transaction boundary is the explicit one in transaction(). check_same_thread=False
        # because access is serialized by self._lock instead.
        conn = sqlite3.connect(
            str(self.path),
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._savepoints = 0
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # journal_mode is persistent in the file, but setting it is cheap and idempotent.
        self.db.enable_wal()
        conn.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, much faster
        with self.transaction():
            self.schema_version = schema.migrate(conn)

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict]:
        with self._lock:
            cursor = self.db.conn.execute(sql, params)
            keys = [d[0] for d in cursor.description]
            return [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]

    def _one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> dict | None:
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
