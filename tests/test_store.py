"""Tests for memory/: typed round-trips, transactions, approvals under concurrency, audit chain."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory import (
    SCHEMA_VERSION,
    ApprovalStateError,
    Checkpoint,
    NewJudgment,
    NewPair,
    NewSample,
    NotFoundError,
    Run,
    Store,
)
from memory.guarded import GuardedWrites

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "tether.db")
    yield s
    s.close()


def make_run(store: Store, run_id: str = "run-1", **kw: object) -> Run:
    fields: dict = {
        "id": run_id,
        "config": {"model": "tiny", "lr": 1e-4, "nested": {"k": [1, 2]}},
        "config_sha256": "c" * 64,
        "seed": 7,
        "rounds_budget": 3,
        "constitution_version": 1,
        "invariants": [{"id": "no-harm", "text": "never"}],
        "invariants_sha256": "i" * 64,
    }
    fields.update(kw)
    return store.create_run(Run(**fields))


def raw(store: Store) -> sqlite3.Connection:
    """A plain connection that bypasses the Store, as a tamperer would."""
    return sqlite3.connect(store.path, isolation_level=None)


# -- opening -----------------------------------------------------------------------------


def test_wal_busy_timeout_and_schema_version(store: Store, tmp_path: Path) -> None:
    assert store.journal_mode == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    make_run(store)
    again = Store(tmp_path / "tether.db")  # idempotent re-open keeps data
    assert again.get_run("run-1") is not None
    again.close()


# -- runs and rounds ---------------------------------------------------------------------


def test_run_round_trip_and_update(store: Store) -> None:
    run = make_run(store)
    assert run.config == {"model": "tiny", "lr": 1e-4, "nested": {"k": [1, 2]}}
    assert run.invariants == [{"id": "no-harm", "text": "never"}]
    assert run.state == "running" and run.round == 0 and run.active_checkpoint is None
    assert run.created_at.endswith("Z") and run.updated_at == run.created_at
    assert store.get_run("run-1") == run
    assert store.get_run("nope") is None

    time.sleep(0.002)
    updated = store.update_run("run-1", state="paused", round=2)
    assert (updated.state, updated.round, updated.active_checkpoint) == ("paused", 2, None)
    assert updated.updated_at > run.updated_at and updated.created_at == run.created_at
    assert store.get_run("run-1") == updated

    with pytest.raises(ValueError, match="bogus"):
        store.update_run("run-1", bogus=1)
    with pytest.raises(ValueError):
        store.update_run("run-1", created_at="x")
    with pytest.raises(ValueError):
        store.update_run("run-1", state="exploded")
    with pytest.raises(NotFoundError):
        store.update_run("missing", state="stopped")
    # Guardrails' columns are not the store's to update: only memory.guarded writes them.
    for column in ("active_checkpoint", "config", "config_sha256", "constitution_version", "invariants",
                   "base_model"):
        with pytest.raises(ValueError, match=column):
            store.update_run("run-1", **{column: "x"})


def test_list_runs_newest_first(store: Store) -> None:
    for i in range(3):
        make_run(store, f"run-{i}")
    assert [r.id for r in store.list_runs()] == ["run-2", "run-1", "run-0"]


def test_rounds_upsert(store: Store) -> None:
    make_run(store)
    first = store.upsert_round("run-1", 1, judge={"name": "rubric", "settings": {"t": 0}})
    assert first.started_at and first.started_at.endswith("Z")
    assert first.judge == {"name": "rubric", "settings": {"t": 0}} and first.monitors is None
    second = store.upsert_round("run-1", 1, monitors={"diversity": 0.4}, n_pairs=12)
    # Only the named fields change; earlier ones are kept.
    assert second.judge == first.judge and second.started_at == first.started_at
    assert second.monitors == {"diversity": 0.4} and second.n_pairs == 12
    store.upsert_round("run-1", 0, action="train", outcome="approved")
    assert [r.round for r in store.rounds("run-1")] == [0, 1]
    assert store.get_round("run-1", 0).outcome == "approved"
    assert store.get_round("run-1", 9) is None
    with pytest.raises(ValueError):
        store.upsert_round("run-1", 1, nonsense=True)


# -- samples, judgments, pairs, decisions -------------------------------------------------


def test_samples_judgments_pairs(store: Store) -> None:
    make_run(store)
    rows = [
        NewSample("run-1", 1, "train", f"p{i % 10}", "q?", "math", f"a{i}", 3, i // 10)
        for i in range(2000)
    ]
    rows.append(NewSample("run-1", 1, "heldout", "h0", "q?", "math", "x", 1, 0, "ck-1"))
    ids = store.add_samples(rows)
    assert len(ids) == 2001 and len(set(ids)) == 2001 and ids == sorted(ids)
    train = store.samples("run-1", 1, split="train")
    assert len(train) == 2000 and train[0].id == ids[0] and train[0].response == "a0"
    assert train[0].checkpoint_id is None
    assert [s.id for s in store.samples("run-1", 1, checkpoint_id="ck-1")] == [ids[-1]]
    assert len(store.samples("run-1", 1, checkpoint_id=None)) == 2000
    assert len(store.samples("run-1", 1)) == 2001
    assert store.samples("run-1", 2) == []
    store.add_samples([NewSample("run-1", 2, "train", "p99", "q?", "math", "r", 1, 0)])
    assert store.used_prompt_ids("run-1") == [f"p{i}" for i in range(10)] + ["p99"]  # first use, train only
    assert store.used_prompt_ids("run-1", before_round=2) == [f"p{i}" for i in range(10)]
    assert store.get_sample(ids[-1]).split == "heldout"
    with pytest.raises(ValueError):
        store.add_samples([NewSample("run-1", 1, "dev", "p", "q", "f", "r", 1)])  # not a split

    jids = store.add_judgments(
        [
            NewJudgment(ids[0], "rubric", 0.75, True, "SCORE: 0.75", {"rule": "ok"}),
            NewJudgment(ids[1], "rubric", None, False, "garbled"),
        ]
    )
    judged = store.judgments("run-1", 1)
    assert [j.id for j in judged] == jids
    assert judged[0].score == 0.75 and judged[0].valid is True
    assert judged[0].details == {"rule": "ok"}
    assert judged[1].score is None and judged[1].valid is False and judged[1].details == {}
    assert store.judgments("run-1", 2) == []
    assert len(store.judgments("run-1", 1, judge="other")) == 0

    pids = store.add_pairs([NewPair("run-1", 1, "p0", "q?", ids[0], ids[1], "a0", "a1", 0.5)])
    (pair,) = store.pairs("run-1", 1)
    assert pair.id == pids[0] and pair.chosen_sample_id == ids[0] and pair.margin == 0.5


def test_decisions_ordered_with_signals(store: Store) -> None:
    make_run(store)
    store.add_decision("run-1", 0, "train", "scores improving", {"mean": 0.5, "flags": []})
    d2 = store.add_decision("run-1", 1, "stop", "budget", {"nan": None}, actor="human:ann")
    log = store.decisions("run-1")
    assert [d.action for d in log] == ["train", "stop"]
    assert log[0].signals == {"mean": 0.5, "flags": []} and log[0].actor == "controller"
    assert log[1] == d2 and d2.at.endswith("Z")
    assert store.decisions("run-1", round=1) == [d2]


# -- checkpoints, evaluations, constitution -----------------------------------------------


def test_checkpoints_round_trip_and_update(store: Store) -> None:
    make_run(store)
    writes = GuardedWrites(store)
    base = writes.add_checkpoint(Checkpoint("base", None, 0, "base", "/m/base"))
    assert base.sha256 is None and base.metrics == {} and base.invariant_ok is None
    cand = writes.add_checkpoint(
        Checkpoint("ck-1", "run-1", 1, "candidate", "/m/ck1", "s" * 64, "base", {"oracle": 0.6})
    )
    assert cand.created_at.endswith("Z")
    writes.set_checkpoint_status("ck-1", "pending")
    writes.set_invariant_verdict("ck-1", True, {"ok": True, "results": []})
    updated = store.update_checkpoint("ck-1", metrics={"oracle": 0.6, "inv": {"a": 1}})
    assert updated.status == "pending" and updated.invariant_ok is True
    assert updated.invariant_report == {"ok": True, "results": []}
    assert updated.metrics == {"oracle": 0.6, "inv": {"a": 1}}
    assert store.get_checkpoint("ck-1") == updated
    assert [c.id for c in store.checkpoints()] == ["base", "ck-1"]
    assert [c.id for c in store.checkpoints("run-1")] == ["ck-1"]
    for column in ("created_at", "status", "invariant_ok", "sha256", "path", "invariant_report"):
        with pytest.raises(ValueError):
            store.update_checkpoint("ck-1", **{column: "x"})
    with pytest.raises(ValueError):
        writes.set_checkpoint_status("ck-1", "active")
    with pytest.raises(NotFoundError):
        writes.set_checkpoint_status("nope", "approved")


def test_evaluation_cache(store: Store) -> None:
    assert store.get_evaluation("ck-1", "h" * 64, "rubric") is None
    store.put_evaluation("ck-1", "h" * 64, "rubric", 0.5, 0.7, {"n": 40})
    store.put_evaluation("ck-1", "h" * 64, "other", 0.5, 0.1)
    ev = store.put_evaluation("ck-1", "h" * 64, "rubric", 0.6, None, {"n": 41})
    assert (ev.oracle, ev.judge_score, ev.details) == (0.6, None, {"n": 41})
    assert store.get_evaluation("ck-1", "h" * 64, "rubric") == ev
    assert store.get_evaluation("ck-1", "h" * 64, "other").judge_score == 0.1


def test_constitution_versions_dedup(store: Store) -> None:
    assert store.latest_constitution() is None
    add = GuardedWrites(store).add_constitution_version
    v1 = add("a: 1\n", "a" * 64, "i" * 64, "init")
    same = add("a: 1\n", "a" * 64, "i" * 64, "someone")
    assert v1.version == 1 and same == v1
    v2 = add("a: 2\n", "b" * 64, "i" * 64, "ann", "ap-1", "tweak")
    assert v2.version == 2 and v2.approval_id == "ap-1" and v2.note == "tweak"
    assert store.latest_constitution() == v2
    assert [v.version for v in store.constitution_versions()] == [1, 2]
    assert store.get_constitution_version(1).content == "a: 1\n"
    # Re-adding an older text is a real change relative to the latest, so it is a new version.
    assert add("a: 1\n", "a" * 64, "i" * 64, "x").version == 3


# -- approvals ---------------------------------------------------------------------------


def test_approvals_decided_once(store: Store) -> None:
    make_run(store)
    writes = GuardedWrites(store)
    ap = writes.create_approval(
        "checkpoint", "ck-1", "s" * 64, "candidate 1", {"oracle": 0.6}, run_id="run-1"
    )
    assert ap.id.startswith("ap-") and len(ap.id) == 11
    assert ap.status == "pending" and ap.payload == {"oracle": 0.6} and ap.decided_by is None
    cons = writes.create_approval("constitution", 2, "c" * 64, "amend principle 3")
    assert cons.subject == "2" and cons.run_id is None
    assert [a.id for a in store.approvals(status="pending")] == [ap.id, cons.id]
    assert [a.id for a in store.approvals(run_id="run-1")] == [ap.id]
    assert store.approval_for_subject("constitution", 2) == cons
    assert store.approval_for_subject("checkpoint", "zzz") is None

    done = writes.decide_approval(ap.id, "approved", "ann", "looks fine")
    assert (done.status, done.decided_by, done.note) == ("approved", "ann", "looks fine")
    assert done.decided_at.endswith("Z")
    with pytest.raises(ApprovalStateError) as err:
        writes.decide_approval(ap.id, "rejected", "bob", "no")
    assert err.value.approval.decided_by == "ann"
    assert store.get_approval(ap.id) == done
    with pytest.raises(ValueError):
        writes.decide_approval(cons.id, "pending", "ann")
    with pytest.raises(NotFoundError):
        writes.decide_approval("ap-00000000", "approved", "ann")
    with pytest.raises(ValueError):
        writes.create_approval("model", "x", "s", "bad kind")


_APPROVER = """
import sys, time
from pathlib import Path
from memory import Store, ApprovalStateError
from memory.guarded import GuardedWrites
db, approval_id, name, go = sys.argv[1:5]
store = Store(Path(db))
while not Path(go).exists():
    time.sleep(0.005)
try:
    GuardedWrites(store).decide_approval(approval_id, "approved", name, "concurrent")
    print("won")
except ApprovalStateError:
    print("lost")
"""

_APPENDER = """
import sys, time
from pathlib import Path
from memory import Store
db, name, go, n = sys.argv[1:5]
while not Path(go).exists():
    time.sleep(0.005)
store = Store(Path(db))
for i in range(int(n)):
    store.append_audit(name, "tick", None, {"i": i})
print("done")
"""


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    outs = []
    for p in procs:
        out, errs = p.communicate(timeout=120)
        assert p.returncode == 0, errs
        outs.append(out.strip())
    return outs


def test_concurrent_approvers_exactly_one_wins(store: Store, tmp_path: Path) -> None:
    ap = GuardedWrites(store).create_approval("checkpoint", "ck-1", "s" * 64, "candidate")
    go = tmp_path / "go"
    procs = [_spawn(_APPROVER, str(store.path), ap.id, f"user{i}", str(go)) for i in range(4)]
    time.sleep(1.0)  # let the children import and open the store before releasing them
    go.touch()
    results = _finish(procs)
    assert sorted(results) == ["lost", "lost", "lost", "won"]
    decided = store.get_approval(ap.id)
    assert decided.status == "approved"
    assert decided.decided_by == f"user{results.index('won')}"


def test_concurrent_audit_appends_on_fresh_db(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "tether.db"  # no process has created it yet
    go = tmp_path / "go"
    procs = [_spawn(_APPENDER, str(db), f"proc{i}", str(go), "40") for i in range(3)]
    go.touch()
    assert _finish(procs) == ["done"] * 3
    with Store(db) as store:
        report = store.verify_audit()
        assert report.ok and report.entries == 120, report
        assert store.journal_mode == "wal"


# -- transactions ------------------------------------------------------------------------


def test_transaction_commits_or_rolls_back_together(store: Store) -> None:
    make_run(store)
    with store.transaction():
        store.update_run("run-1", state="paused")
        entry = store.append_audit("ann", "pause", "run-1", {"why": "test"})
    assert store.get_run("run-1").state == "paused" and entry.seq == 1

    with pytest.raises(RuntimeError), store.transaction():
        store.update_run("run-1", state="stopped")
        store.append_audit("ann", "stop", "run-1", {})
        raise RuntimeError("boom")
    assert store.get_run("run-1").state == "paused"
    assert len(store.audit_entries()) == 1
    assert not store.in_transaction

    # A failing nested block rolls back only itself.
    with store.transaction():
        store.append_audit("ann", "outer", None, {})
        with pytest.raises(ValueError), store.transaction():
            store.append_audit("ann", "inner", None, {})
            store.update_run("run-1", bogus=1)
    assert [e.action for e in store.audit_entries()] == ["pause", "outer"]
    assert store.verify_audit().ok


def test_store_shared_between_threads(store: Store) -> None:
    def work(name: str) -> None:
        for i in range(25):
            with store.transaction():
                store.append_audit(name, "tick", None, {"i": i})

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = store.verify_audit()
    assert report.ok and report.entries == 100
