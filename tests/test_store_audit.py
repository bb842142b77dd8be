"""Tests for the hash-chained audit log in memory/audit.py: verification and tamper detection."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory import GENESIS_HASH, Store, entry_hash


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "tether.db")
    yield s
    s.close()


def raw(store: Store) -> sqlite3.Connection:
    """A plain connection that bypasses the Store, as a tamperer would."""
    return sqlite3.connect(store.path, isolation_level=None)


# -- audit -------------------------------------------------------------------------------


def _fill_audit(store: Store, n: int = 5) -> None:
    for i in range(n):
        store.append_audit("tester", "act", f"subj-{i}", {"i": i, "tags": ["a", "b"]})


def test_audit_chain_verifies(store: Store) -> None:
    assert store.verify_audit().ok and store.verify_audit().entries == 0
    _fill_audit(store)
    entries = store.audit_entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[2].details == {"i": 2, "tags": ["a", "b"]}
    report = store.verify_audit()
    assert (report.ok, report.entries, report.first_bad_seq, report.reason) == (True, 5, None, None)
    assert [e.seq for e in store.audit_entries(subject="subj-3")] == [4]


def test_audit_update_and_delete_rejected_by_trigger(store: Store) -> None:
    _fill_audit(store, 2)
    conn = raw(store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = 2")
    conn.close()
    assert store.verify_audit().ok


def _drop_triggers(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")


def test_tampered_details_detected(store: Store) -> None:
    _fill_audit(store)
    conn = raw(store)
    _drop_triggers(conn)
    conn.execute("""UPDATE audit SET details = '{"i":99,"tags":["a","b"]}' WHERE seq = 3""")
    conn.close()
    report = store.verify_audit()
    assert not report.ok and report.first_bad_seq == 3 and "hash" in report.reason
    assert report.entries == 2


def test_rehashed_tamper_detected_at_next_entry(store: Store) -> None:
    _fill_audit(store)
    e = store.audit_entries()[1]
    forged = entry_hash(e.seq, e.at, "mallory", e.action, e.subject, e.details, e.prev_hash)
    conn = raw(store)
    _drop_triggers(conn)
    conn.execute("UPDATE audit SET actor = 'mallory', hash = ? WHERE seq = 2", (forged,))
    conn.close()
    report = store.verify_audit()
    assert not report.ok and report.first_bad_seq == 3 and "prev_hash" in report.reason


def test_deleted_middle_row_is_a_gap(store: Store) -> None:
    _fill_audit(store)
    conn = raw(store)
    _drop_triggers(conn)
    conn.execute("DELETE FROM audit WHERE seq = 3")
    conn.close()
    report = store.verify_audit()
    assert not report.ok and report.first_bad_seq == 3 and "missing" in report.reason  # the deleted entry


def test_truncated_tail_detected_and_triggers_restored(store: Store) -> None:
    _fill_audit(store)
    conn = raw(store)
    _drop_triggers(conn)
    conn.execute("DELETE FROM audit WHERE seq >= 4")
    conn.close()
    report = store.verify_audit()
    assert not report.ok and report.first_bad_seq == 4 and "truncated" in report.reason
    # Re-opening the store re-creates the append-only triggers.
    Store(store.path).close()
    conn = raw(store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = 1")
    conn.close()


def test_audit_rejects_non_json_details(store: Store) -> None:
    with pytest.raises(TypeError):
        store.append_audit("ann", "x", None, {"obj": object()})
    assert store.audit_entries() == [] and store.verify_audit().ok
