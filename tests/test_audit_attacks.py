"""An audit log that cannot be rewritten quietly: every rewrite an attacker with the database file can make
is reported by `tether audit verify` with exit 1 naming the first bad entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from conftest import clone_workspace, raw_db
from memory import GENESIS_HASH, Store, entry_hash

runner = CliRunner()


@pytest.fixture()
def signed(gated_workspace, tmp_path: Path) -> Path:
    """A copy of a gated run whose candidate alice approved: the log holds signed heads throughout."""
    home, _, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    approve = ["--home", str(home), "approve", approval_id, "--by", "alice", "--accept-not-met"]
    assert runner.invoke(app, approve).exit_code == 0
    assert runner.invoke(app, ["--home", str(home), "audit", "verify"]).exit_code == 0
    return home


def _verify(home: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), "audit", "verify"])
    return result.exit_code, result.output


def _rows(db) -> list[dict]:
    cur = db.execute("SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit ORDER BY seq")
    return [dict(zip([c[0] for c in cur.description], r, strict=True)) for r in cur.fetchall()]


def _rewrite(db, rows: list[dict]) -> None:
    """Replace the whole log with `rows`, renumbered and with every hash recomputed: a perfect forgery
    of the chain itself (triggers dropped first, sqlite_sequence set to match)."""
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit")
    prev = GENESIS_HASH
    for seq, row in enumerate(rows, start=1):
        digest = entry_hash(seq, row["at"], row["actor"], row["action"], row["subject"], json.loads(row["details"]),
                            prev)
        db.execute("INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (seq, row["at"], row["actor"], row["action"], row["subject"], row["details"], prev, digest))
        prev = digest
    db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit'", (len(rows),))


def test_a_recomputed_chain_is_found_by_the_signed_heads(signed: Path) -> None:
    with raw_db(signed) as db:
        rows = _rows(db)
        train = next(r for r in rows if r["action"] == "checkpoint.train")
        train["details"] = train["details"].replace('"steps"', '"stepz"') if '"steps"' in train["details"] else \
            json.dumps({**json.loads(train["details"]), "sha256": "f" * 64}, sort_keys=True, separators=(",", ":"))
        _rewrite(db, rows)
    assert Store(signed / "tether.db").verify_audit().ok  # the chain alone now looks intact
    code, out = _verify(signed)
    assert code == 1 and "rewritten" in out


def test_an_entry_inserted_in_the_middle_is_found(signed: Path) -> None:
    with raw_db(signed) as db:
        rows = _rows(db)
        forged = {**rows[2], "actor": "alice", "action": "approval.signed", "details": "{}"}
        _rewrite(db, [*rows[:3], forged, *rows[3:]])
    code, out = _verify(signed)
    assert code == 1 and "entry" in out


def test_reordered_entries_are_found(signed: Path) -> None:
    with raw_db(signed) as db:
        rows = _rows(db)
        rows[3], rows[4] = rows[4], rows[3]
        _rewrite(db, rows)
    assert _verify(signed)[0] == 1


@pytest.mark.parametrize("how", ["delete", "edit"])
def test_a_deleted_or_edited_entry_breaks_the_chain(signed: Path, how: str) -> None:
    with raw_db(signed) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
        if how == "delete":
            db.execute("DELETE FROM audit WHERE seq = 4")
        else:
            db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 4")
    code, out = _verify(signed)
    assert code == 1 and "entry 4" in out


def test_a_truncated_tail_after_the_last_signed_head_is_found(signed: Path) -> None:
    with raw_db(signed) as db:
        rows = _rows(db)
        last_signed = max(r["seq"] for r in rows if r["action"] == "approval.signed")
        db.execute("DROP TRIGGER audit_no_delete")
        db.execute("DELETE FROM audit WHERE seq >= ?", (last_signed,))  # the signature's own record too
        db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit'", (last_signed - 1,))
    assert Store(signed / "tether.db").verify_audit().ok  # the chain alone cannot tell
    code, out = _verify(signed)
    assert code == 1 and "truncated" in out and f"entry {last_signed}" in out


def test_audit_list_shows_the_entries(signed: Path) -> None:
    result = runner.invoke(app, ["--home", str(signed), "audit", "list", "--json"])
    entries = json.loads(result.stdout)
    assert result.exit_code == 0 and [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert {"workspace.init", "reviewer.add", "run.start", "approval.request", "approval.signed"} <= {
        e["action"] for e in entries}
