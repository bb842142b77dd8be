"""Environment failures are messages, not tracebacks: a full disk, a read-only, missing or locked
workspace each end as one line naming the path and the fix (exit 1, or 2 for a missing workspace),
read-only commands work on a read-only workspace, and an incomplete tiny model is reported, never
silently rebuilt.

How each failure is made, for real where the machine allows it:
- read-only workspace: `chmod -R a-w` when not root; as root (chmod binds nothing) a read-only bind
  mount in a private user + mount namespace (`unshare -rm`); skipped, with the reason, where neither works.
- full disk, portable: SQLite's own limit, `PRAGMA max_page_count` at the file's page count on a copy
  rebuilt with 512-byte pages (so every row written needs a new page): SQLite raises the same
  SQLITE_FULL "database or disk is full" a full disk gives.
- full disk, real: a 2 MiB tmpfs mounted in a private namespace and filled (ENOSPC from the kernel).
- locked database: another connection holding BEGIN EXCLUSIVE, with `--busy-timeout 0.2`.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.common import CliState
from agent.cli.main import app
from conftest import init_workspace, public_key_pem, tether_cli, write_test_config
from memory import SCHEMA_VERSION, Run, Store
from memory import schema as store_schema
from memory.base import BUSY_TIMEOUT_MS, SchemaOutdatedError, StoreBase
from tools.worlds.tiny import model as tiny

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

READ_ONLY_COMMANDS = (["status"], ["status", "--json"], ["approvals"], ["checkpoints"], ["audit", "verify"],
                      ["audit", "list"], ["constitution", "show"], ["reviewer", "list"])

# Runs CLI commands in one process (one start-up for many commands) and reports each as JSON; an
# exception other than the exit itself is what a user would see as a traceback.
DRIVER = r"""
import json, sys
from typer.testing import CliRunner
from agent.cli.main import app
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args)
    crash = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
    out.append({"args": args, "code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "crash": crash})
print(json.dumps(out))
"""


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def assert_clean(result, code: int) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def settle(home: Path) -> None:
    """Close what this process left open, and drop the empty WAL files a read-only open leaves, so the
    workspace is as a finished command leaves it."""
    gc.collect()
    wal = home / "tether.db-wal"
    if wal.exists() and wal.stat().st_size == 0:
        wal.unlink()
        (home / "tether.db-shm").unlink(missing_ok=True)


@functools.cache
def namespaces_work() -> bool:
    """Whether `unshare -rm` gives this user a private namespace in which to mount (a tmpfs, a bind)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null || "
                            "mount -t tmpfs none /tmp"], capture_output=True)
    return probe.returncode == 0


def read_only_technique() -> str:
    if os.geteuid() != 0:
        return "chmod"
    if namespaces_work():
        return "mount"
    pytest.skip("running as root (chmod does not stop root) and no user namespaces (unshare -rm) for a "
                "read-only mount: the read-only workspace cannot be made here")


def run_read_only(home: Path, commands: list[list[str]]) -> list[dict]:
    """Each command through the CLI on a read-only view of `home` (see read_only_technique)."""
    settle(home)
    batch = json.dumps([["--home", str(home), *c] for c in commands])
    driver = [sys.executable, "-c", DRIVER, batch]
    if read_only_technique() == "mount":
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        result = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(home), *driver],
                                capture_output=True, text=True, cwd=ROOT, timeout=600)
    else:
        paths = [home, *home.rglob("*")]
        try:
            for p in paths:
                p.chmod(0o555 if p.is_dir() else 0o444)
            result = subprocess.run(driver, capture_output=True, text=True, cwd=ROOT, timeout=600)
        finally:
            for p in paths:
                p.chmod(0o755 if p.is_dir() else 0o644)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def add_run(home: Path, run_id: str, state: str) -> None:
    with Store(home / "tether.db") as store:
        store.create_run(Run(id=run_id, config={}, config_sha256="0" * 64, seed=0, rounds_budget=1,
                             constitution_version=1, invariants={}, invariants_sha256="0" * 64, state=state,
                             round=0, thread_id=run_id))
    lock = home / "runs" / run_id / "run.lock"  # as the process that drove it leaves it
    lock.parent.mkdir(parents=True)
    lock.write_text("12345")


def propose(home: Path, tmp_path: Path) -> str:
    doc = yaml.safe_load((home / "constitution.yaml").read_text())
    doc["name"] = "renamed"
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text(yaml.safe_dump(doc))
    assert_clean(tether(home, "constitution", "propose", str(proposal), "--by", "zed"), 0)
    return json.loads(tether(home, "approvals", "--json").stdout)[0]["id"]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    init_workspace(home)
    return home


# -- a read-only store and a read-only workspace ----------------------------------------------------


def test_a_read_only_store_reads_and_never_writes(home: Path, tmp_path: Path) -> None:
    """Technique: Store(readonly=True) on a copy; the file's bytes and mtime are unchanged."""
    copy = tmp_path / "copy" / "tether.db"
    copy.parent.mkdir()
    settle(home)
    shutil.copy2(home / "tether.db", copy)
    before, mtime = copy.read_bytes(), copy.stat().st_mtime_ns
    with Store(copy, readonly=True) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert len(store.audit_entries()) >= 3 and store.list_runs() == []
        with pytest.raises(Exception, match="opened read-only"):
            store.append_audit("tether", "test.write", None, {})
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.db.conn.execute("INSERT INTO workspace_meta (key, value) VALUES ('k', 'v')")
    assert copy.read_bytes() == before and copy.stat().st_mtime_ns == mtime


def test_a_read_only_open_refuses_an_older_schema(home: Path, tmp_path: Path) -> None:
    settle(home)
    copy = tmp_path / "tether.db"
    shutil.copy2(home / "tether.db", copy)
    raw = sqlite3.connect(copy, isolation_level=None)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    raw.close()
    before = copy.read_bytes()
    with pytest.raises(SchemaOutdatedError, match="open it writable once"):
        Store(copy, readonly=True)
    assert copy.read_bytes() == before


def test_read_only_commands_upgrade_an_older_schema_in_a_writable_workspace(home: Path) -> None:
    """As before this change, `status` on a writable workspace brings an older database up to date."""
    settle(home)
    (home / "tether.db").unlink()
    raw = sqlite3.connect(home / "tether.db", isolation_level=None)
    for script in store_schema.MIGRATIONS[:-1]:
        for statement in store_schema._statements(script):
            raw.execute(statement)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    raw.close()
    assert_clean(tether(home, "status", "--json"), 0)
    raw = sqlite3.connect(home / "tether.db")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_read_only_commands_work_on_a_read_only_workspace(home: Path, tmp_path: Path) -> None:
    """Technique: see read_only_technique (chmod, or a read-only bind mount as root)."""
    propose(home, tmp_path)
    add_run(home, "run-paused", "paused")
    settle(home)
    before = snapshot(home)
    pem = tmp_path / "dave.pem"
    pem.write_text(public_key_pem("dave"))
    results = run_read_only(home, [*READ_ONLY_COMMANDS, ["log", "run-paused"], ["checkpoints", "run-paused"],
                                   ["reviewer", "add", "dave", "--by", "alice", "--public-key", str(pem)]])
    for result in results[:-1]:
        assert (result["code"], result["crash"]) == (0, None), result
    assert "run-paused" in results[0]["stdout"] and "renamed" in results[2]["stdout"]  # the pending approval
    assert "audit chain intact" in results[4]["stderr"]
    writes = results[-1]  # a command that writes: one line naming the workspace and the fix
    assert (writes["code"], writes["crash"]) == (1, None), writes
    assert str(home) in writes["stderr"] and "read-only" in writes["stderr"] and "writable" in writes["stderr"]
    assert snapshot(home) == before


def test_status_of_a_running_run_works_on_a_read_only_workspace(home: Path) -> None:
    add_run(home, "run-crashed", "running")  # its process is gone: status shows it failed
    settle(home)
    [result] = run_read_only(home, [["status", "--json"]])
    assert (result["code"], result["crash"]) == (0, None), result
    assert json.loads(result["stdout"])[0]["state"] == "failed"


# -- a full disk ---------------------------------------------------------------------------------------


def cap_at_page_count(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """Rebuild `db` with 512-byte pages and make every Store opened on it unable to grow the file."""
    raw = sqlite3.connect(db, isolation_level=None)
    for statement in ("PRAGMA journal_mode = DELETE", "PRAGMA page_size = 512", "VACUUM",
                      "PRAGMA journal_mode = WAL"):
        raw.execute(statement)
    raw.close()
    opened = StoreBase.__init__

    def capped(self: StoreBase, *args, **kwargs) -> None:
        opened(self, *args, **kwargs)
        pages = self.db.conn.execute("PRAGMA page_count").fetchone()[0]
        self.db.conn.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(StoreBase, "__init__", capped)


def test_run_and_approve_on_a_full_disk_exit_1_and_write_nothing(
    tmp_path: Path, tiny_world_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Technique: SQLite's page limit (max_page_count) raises the SQLITE_FULL a full disk raises."""
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir)
    approval_id = propose(home, tmp_path)
    settle(home)
    with Store(home / "tether.db", readonly=True) as store:
        audit_before = store.audit_entries()
    cap_at_page_count(monkeypatch, home / "tether.db")
    for args in (["run"], ["approve", approval_id, "--by", "alice"]):
        result = tether(home, *args)
        assert_clean(result, 1)
        assert f"the workspace database in {home}: database or disk is full" in result.stderr
        assert "free space" in result.stderr and result.stdout == ""
    monkeypatch.undo()
    with Store(home / "tether.db", readonly=True) as store:
        assert store.list_runs() == [] and store.audit_entries() == audit_before
        assert store.get_approval(approval_id).status == "pending"


FULL_TMPFS = r"""
import json, os, shutil, subprocess, sys
from pathlib import Path
from typer.testing import CliRunner
from agent.cli.main import app
mount, home, approval_id = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
ws = mount / "ws"
shutil.copytree(home, ws)
def fill(leave: int) -> None:
    stat = os.statvfs(mount)
    with open(mount / f"filler-{leave}", "wb") as fh:
        fh.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
def invoke(*args):
    r = CliRunner().invoke(app, list(args))
    crash = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
    return {"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "crash": crash}
fill(36 * 1024)  # room for the WAL index (32 KiB), not for the first WAL frame
out = [invoke("--home", str(ws), "approve", approval_id, "--by", "alice")]
fill(0)
out.append(invoke("--home", str(mount / "new"), "init", "--reviewer", "alice"))
print(json.dumps(out))
"""


def test_a_real_full_filesystem(home: Path, tmp_path: Path) -> None:
    """Technique: a 2 MiB tmpfs in a private user + mount namespace, filled (ENOSPC from the kernel)."""
    if not namespaces_work():
        pytest.skip("no user namespaces (unshare -rm) to mount a small tmpfs in: the real full disk is not "
                    "made here (the max_page_count test covers SQLITE_FULL)")
    approval_id = propose(home, tmp_path)
    settle(home)
    mount = tmp_path / "mnt"
    mount.mkdir()
    result = subprocess.run(["unshare", "-rm", sys.executable, "-c", FULL_TMPFS, str(mount), str(home), approval_id],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    approve, init = json.loads(result.stdout)
    assert (approve["code"], approve["crash"]) == (1, None), approve
    assert "database or disk is full" in approve["stderr"] and "free space" in approve["stderr"]
    assert (init["code"], init["crash"]) == (1, None), init
    # the first write that fails may be a file's (ENOSPC) or the new store's (SQLITE_FULL, or SQLITE_IOERR when
    # the journal cannot grow): each is named with its fix, never a traceback
    assert any(m in init["stderr"] for m in ("No space left on device", "disk is full", "full, or failing")), init
    assert any(fix in init["stderr"] for fix in ("free space", "check the disk")), init
    assert str(mount / "new") in init["stderr"]


# -- a missing or locked workspace ---------------------------------------------------------------------


def test_a_missing_workspace_exits_2_with_the_fix(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    result = tether_cli(nowhere, "status")  # the real entry point
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"no tether workspace at {nowhere}" in result.stderr and "tether init" in result.stderr
    for args in (["approve", "ap-x", "--by", "alice"], ["run"], ["audit", "list"], ["reviewer", "list"]):
        assert_clean(tether(nowhere, *args), 2)
    assert not nowhere.exists()
    half = tmp_path / "half"  # config and constitution, but its database is gone
    half.mkdir()
    (half / "config.yaml").write_text("{}\n")
    (half / "constitution.yaml").write_text("name: x\n")
    assert_clean(tether(half, "status"), 2)
    assert not (half / "tether.db").exists()


def test_a_locked_database_gives_a_clean_message(home: Path, tmp_path: Path) -> None:
    assert BUSY_TIMEOUT_MS == 30_000 and CliState().busy_timeout_ms == 30_000  # the default stays 30 s
    settle(home)
    holder = sqlite3.connect(home / "tether.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        pem = tmp_path / "dave.pem"
        pem.write_text(public_key_pem("dave"))
        result = tether_cli(home, "--busy-timeout", "0.2", "reviewer", "add", "dave", "--by", "alice",
                            "--public-key", str(pem))
        assert time.monotonic() - started < 60
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"the workspace database in {home}: database is locked" in result.stderr
        assert "another process holds its lock" in result.stderr and "`tether status`" in result.stderr
        assert_clean(tether(home, "status"), 0)  # readers are not blocked by a writer (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    names = [r["name"] for r in json.loads(tether(home, "reviewer", "list", "--json").stdout)]
    assert "dave" not in names


# -- an incomplete tiny model --------------------------------------------------------------------------


def test_an_incomplete_tiny_model_is_reported_and_rebuilt_only_on_request(
    tmp_path: Path, tiny_world_model_dir: Path
) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    write_test_config(home, Path("tiny"), model={"tiny_steps": 5, "threads": 1}, controller={"rounds": 1})
    target = home / "models" / "tiny-s0-n5"
    shutil.copytree(tiny_world_model_dir, target)  # a copy: the session's model is never touched
    (target / "model.safetensors").unlink()
    before = snapshot(target)
    result = tether(home, "run")
    assert_clean(result, 2)
    assert f"the embedded tiny model in {target} is incomplete (model.safetensors missing)" in result.stderr
    assert "tether run --rebuild-model" in result.stderr and "nothing was started" in result.stderr
    assert snapshot(target) == before and sorted(p.name for p in target.parent.iterdir()) == [target.name]
    with Store(home / "tether.db", readonly=True) as store:
        assert store.list_runs() == []

    # --rebuild-model rebuilds it; the run it then starts is stopped at its first node (a 5-step model).
    env = {**os.environ, "TETHER_FAULT": "plan:before", "TETHER_TEST_FAULTS": "1"}
    rebuilt = subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), "run", "--rebuild-model"],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert rebuilt.returncode == -signal.SIGKILL, rebuilt.stderr
    assert f"rebuilding the embedded tiny model into {target}" in rebuilt.stderr
    assert tiny.build_state(target, tiny.TinySpec(steps=5, seed=0)) == "built"
    built = json.loads((target / tiny.MARKER_FILE).read_text())
    assert built["spec"]["steps"] == 5
    assert built["thread_choice"]["setting"] == 1 == built["threads"]  # the run's model.threads built it
