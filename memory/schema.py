"""Database schema and migrations, versioned with ``PRAGMA user_version``.

Each entry of MIGRATIONS moves the schema from version i to i + 1 and runs inside the caller's
BEGIN IMMEDIATE transaction, so two processes opening a fresh database at once cannot both
migrate it. Enum-like columns are validated in Python rather than with CHECK constraints, so a new
status value never needs a table rebuild.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path, PurePath

from memory.common import StoreError

_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    config TEXT NOT NULL,
    config_sha256 TEXT NOT NULL,
    seed INTEGER NOT NULL,
    rounds_budget INTEGER NOT NULL,
    constitution_version INTEGER NOT NULL,
    invariants TEXT NOT NULL,
    invariants_sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    round INTEGER NOT NULL DEFAULT 0,
    active_checkpoint TEXT,
    thread_id TEXT,
    error TEXT,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL REFERENCES runs(id),
    round INTEGER NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    action TEXT,
    judge TEXT,
    monitors TEXT,
    n_prompts INTEGER,
    n_samples INTEGER,
    n_pairs INTEGER,
    outcome TEXT,
    PRIMARY KEY (run_id, round)
);

CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    round INTEGER NOT NULL,
    split TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    family TEXT NOT NULL,
    checkpoint_id TEXT,
    response TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    sample_index INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS samples_run_round ON samples (run_id, round, split);

CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    judge TEXT NOT NULL,
    score REAL,
    valid INTEGER NOT NULL,
    raw TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS judgments_sample ON judgments (sample_id);

CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    round INTEGER NOT NULL,
    prompt_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    chosen_sample_id INTEGER NOT NULL REFERENCES samples(id),
    rejected_sample_id INTEGER NOT NULL REFERENCES samples(id),
    chosen TEXT NOT NULL,
    rejected TEXT NOT NULL,
    margin REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pairs_run_round ON pairs (run_id, round);

CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    round INTEGER NOT NULL,
    action TEXT NOT NULL,
    rationale TEXT NOT NULL,
    signals TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_run ON decisions (run_id, id);

-- run_id is nullable and parent is not a foreign key: a base model may be registered before
-- (or shared across) runs, and a parent may live in another workspace.
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    run_id TEXT REFERENCES runs(id),
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT,
    parent TEXT,
    created_at TEXT NOT NULL,
    metrics TEXT NOT NULL,
    invariant_ok INTEGER
);
CREATE INDEX IF NOT EXISTS checkpoints_run ON checkpoints (run_id);

CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    run_id TEXT,
    subject TEXT NOT NULL,
    subject_sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    summary TEXT NOT NULL,
    payload TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status);
CREATE INDEX IF NOT EXISTS approvals_subject ON approvals (kind, subject);

CREATE TABLE IF NOT EXISTS constitution_versions (
    version INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    invariants_sha256 TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    approval_id TEXT,
    note TEXT
);

CREATE TABLE IF NOT EXISTS evaluations (
    checkpoint_id TEXT NOT NULL,
    heldout_sha256 TEXT NOT NULL,
    judge TEXT NOT NULL,
    oracle REAL,
    judge_score REAL,
    details TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (checkpoint_id, heldout_sha256, judge)
);

-- AUTOINCREMENT although seq is assigned explicitly: sqlite_sequence then remembers the
-- highest seq ever written, which lets verify_audit notice a truncated tail.
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""

# Interventions: the judge slot a run is on, and the prompts a run wrote or mutated for itself.
_V2 = """
ALTER TABLE runs ADD COLUMN judge_slot INTEGER NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS run_prompts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    id TEXT NOT NULL,
    round INTEGER NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    family TEXT NOT NULL,
    meta TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
);
"""

# Guardrails: reviewers and their signatures, the base model pinned per run, the invariant report
# apart from the agent's metrics, and a workspace id that signed statements name.
_V3 = """
ALTER TABLE runs ADD COLUMN base_model TEXT;
ALTER TABLE checkpoints ADD COLUMN invariant_report TEXT;

CREATE TABLE IF NOT EXISTS workspace_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS reviewer_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    signed_by TEXT NOT NULL,
    statement TEXT NOT NULL,
    signature TEXT NOT NULL,
    at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS signatures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id TEXT,
    subject TEXT NOT NULL,
    decision TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    statement TEXT NOT NULL,
    signature TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signatures_approval ON signatures (approval_id);
CREATE INDEX IF NOT EXISTS signatures_subject ON signatures (subject);
"""

# What each controller decision led to (agent/controller/outcomes.py): written pending when it is logged and
# measured once the rounds of its window are done. `process` and `cpu_mark` (the deciding process's CPU seconds
# then) price the rounds between two decisions of one process.
_V4 = """
CREATE TABLE IF NOT EXISTS decision_outcomes (
    decision_id INTEGER PRIMARY KEY REFERENCES decisions(id),
    run_id TEXT NOT NULL REFERENCES runs(id),
    round INTEGER NOT NULL,
    process TEXT NOT NULL,
    cpu_mark REAL NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_outcomes_run ON decision_outcomes (run_id, decision_id);
"""

# Served generation: the model name a completions server answered a sample with (the adapter it used).
_V5 = """
ALTER TABLE samples ADD COLUMN served_by TEXT;
"""

# Re-created on every open (IF NOT EXISTS), so a dropped trigger comes back with the next Store.
AUDIT_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused'); END;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a script into complete statements (trigger bodies contain ';')."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def migrate(conn: sqlite3.Connection, root: Path) -> int:
    """Bring the schema to SCHEMA_VERSION; the caller holds a write transaction.

    Statements go through ``execute`` one by one because ``executescript`` would commit the
    caller's transaction. ``root`` is the workspace folder (the database's own), against which
    stored paths are made relative when a version-2 workspace is upgraded.
    """
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {current} is newer than this tether ({SCHEMA_VERSION})"
        )
    for version in range(current, SCHEMA_VERSION):
        for statement in _statements(MIGRATIONS[version]):
            conn.execute(statement)
        if version == 2:
            _relative_checkpoint_paths(conn, root)
    for statement in _statements(AUDIT_TRIGGERS):
        conn.execute(statement)
    if current != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION


def inside(path: str, root: Path) -> str | None:
    """`path` relative to `root` when it lies inside it, else None."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def workspace_relative(path: str, root: Path) -> str:
    """A pre-v3 stored path as the workspace-relative path it stands for, when it names something inside
    the workspace; anything else (a user's model folder, a hub id) is returned unchanged.

    Before schema v3 paths were stored relative to whatever directory the run was started from (or
    absolute under wherever the workspace then was), so they are recognised by the workspace's own
    layout: ``runs/<run>/adapters/<checkpoint>`` anywhere, ``models/<name>`` when relative.
    """
    pure = PurePath(path)
    if pure.is_absolute() and (found := inside(path, root)) is not None:
        return found
    parts = pure.parts
    for i in range(len(parts) - 3):
        if parts[i] == "runs" and parts[i + 2] == "adapters":
            return PurePath(*parts[i:]).as_posix()
    if not pure.is_absolute() and "models" in parts[:-1]:
        start = len(parts) - 1 - parts[::-1].index("models")
        return PurePath(*parts[start:]).as_posix()
    return path


def _relative_checkpoint_paths(conn: sqlite3.Connection, root: Path) -> None:
    for ck_id, path in conn.execute("SELECT id, path FROM checkpoints").fetchall():
        relative = workspace_relative(path, root)
        if relative != path:
            conn.execute("UPDATE checkpoints SET path = ? WHERE id = ?", (relative, ck_id))
