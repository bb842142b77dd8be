"""The root of trust outside the workspace, attacked as someone with write access to the workspace (its
database included) but not to a reviewer's key folder would.

- Re-rooting the registry (delete every reviewer event, make yourself the first reviewer, re-add the real
  reviewers under your signature, chain the audit entries correctly) activates nothing and is named.
- An event naming an audit head the chain does not carry is refused.
- A folder with no pin for the workspace refuses to vouch for it until a person pins it, with the root
  learned from the first reviewer.
- Witnessed heads: a tail cut after the last signature but before a reviewer's last look is found.
- People stay separate: `reviewer add` takes a public key and never makes another person's private key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from agent.run.runner import RunTamperError, resume_run
from agent.run.workspace import Workspace
from conftest import clone_workspace, raw_db, signer
from guardrails import keys, trust
from guardrails.statements import Statement
from memory import Store
from memory.guarded import GuardedWrites

runner = CliRunner()


def tether(home: Path, *args: str, stdin: str | None = None):
    return runner.invoke(app, ["--home", str(home), *args], input=stdin)


@pytest.fixture()
def gated(gated_workspace, tmp_path: Path) -> tuple[Path, str, str]:
    return clone_workspace(gated_workspace, tmp_path / "ws")


def _add_event(store: Store, by: keys.Signer, name: str, public_hex: str, head: tuple[int, str]) -> None:
    """A correctly signed, correctly audited registry event, written straight into the database."""
    statement = Statement("reviewer", name, keys.fingerprint(public_hex), {
        "decision": "reviewer.add", "reviewer": by.name, "public_key": public_hex, "note": None,
        "workspace": store.meta("workspace_id"), "time": store.now(), "audit_head": {"seq": head[0], "hash": head[1]},
    })
    body = statement.to_bytes()
    with store.transaction():
        event = GuardedWrites(store).add_reviewer_event("add", name, public_hex, keys.fingerprint(public_hex), by.name,
                                                        body.decode(), by.sign(body))
        store.append_audit(by.name, "reviewer.add", name, {
            "fingerprint": keys.fingerprint(public_hex), "event": event.seq, "note": None,
            "statement_sha256": hashlib.sha256(body).hexdigest()})


def _reroot(home: Path, mallory: keys.Signer) -> None:
    """The attack of issue 17: mallory becomes the registry's first reviewer, naming the real workspace.init
    entry as her head, and re-adds the real reviewers' public keys under her own signature."""
    store = Store(home / "tether.db")
    real = store.reviewer_events()
    with raw_db(home) as db:
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                     "AND tbl_name = 'reviewer_events'").fetchall():
            db.execute(f"DROP TRIGGER {trigger}")
        db.execute("DELETE FROM reviewer_events")
    first = store.audit_entry(1)
    _add_event(store, mallory, "mallory", mallory.public_hex, (1, first.hash))
    for event in real:
        _add_event(store, mallory, event.name, event.public_key, store.audit_head())


def _attacker_folder(tmp_path: Path) -> tuple[Path, keys.Signer]:
    folder = tmp_path / "mallory-keys"
    return folder, keys.create_key(folder, "mallory")


def test_a_rerooted_registry_activates_nothing_and_is_named(gated, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home, run_id, approval_id = gated
    real_folder = os.environ["TETHER_KEYS_DIR"]
    folder, mallory = _attacker_folder(tmp_path)
    _reroot(home, mallory)
    refused = tether(home, "approve", approval_id, "--by", "bob")  # a real reviewer, from the real folder
    assert refused.exit_code == 1 and "re-roots the registry" in refused.output, refused.output

    # In mallory's own folder the forgery is self-consistent: she pins herself and signs an approval.
    monkeypatch.setitem(os.environ, "TETHER_KEYS_DIR", str(folder))
    assert tether(home, "reviewer", "pin", "--root", mallory.fingerprint).exit_code == 0
    forged = tether(home, "approve", approval_id, "--by", "mallory", "--accept-not-met")
    assert forged.exit_code == 0, forged.output

    # Every check made from a real reviewer's folder replays from the real root and refuses.
    monkeypatch.setitem(os.environ, "TETHER_KEYS_DIR", real_folder)
    for command in (["reviewer", "list"], ["audit", "verify"]):
        result = tether(home, *command)
        assert result.exit_code == 1, (command, result.output)
        assert "re-roots the registry" in result.output and "'alice'" in result.output, result.output
    ws = Workspace(home)
    with pytest.raises(RunTamperError):
        resume_run(ws, Store(ws.db_path), run_id, say=lambda _m: None, wait=False, progress=False)
    store = Store(home / "tether.db")
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-base"
    assert "tamper.detected" in [e.action for e in store.audit_entries()]


def test_a_reviewer_event_naming_a_head_the_chain_lacks_is_refused(gated) -> None:
    home, _, approval_id = gated
    store = Store(home / "tether.db")
    dave = keys.create_key(home.parent / "dave-keys", "dave")
    _add_event(store, signer("alice"), "dave", dave.public_hex, (store.audit_head()[0] + 50, "f" * 64))
    for command in (["reviewer", "list"], ["audit", "verify"], ["approve", approval_id, "--by", "alice"]):
        result = tether(home, *command)
        assert result.exit_code == 1, (command, result.output)
        assert "reviewer event 4 (add 'dave')" in result.output, result.output
        assert "does not carry" in result.output or "truncated" in result.output, result.output
    assert store.get_approval(approval_id).status == "pending"


def test_an_event_recorded_before_the_head_it_names_is_refused(gated) -> None:
    """Events are replayed in order: one whose head runs backwards was slipped in after the fact."""
    home, _, _ = gated
    store = Store(home / "tether.db")
    dave = keys.create_key(home.parent / "dave-keys", "dave")
    _add_event(store, signer("alice"), "dave", dave.public_hex, (2, store.audit_entry(2).hash))
    result = tether(home, "reviewer", "list")
    assert result.exit_code == 1 and "before the event preceding it" in result.output, result.output


def test_a_folder_without_a_pin_refuses_until_a_person_pins_the_root(gated, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home, _, approval_id = gated
    bobs = tmp_path / "bob-keys"
    bobs.mkdir(mode=0o700)
    shutil.copy2(Path(os.environ["TETHER_KEYS_DIR"]) / "bob.pem", bobs / "bob.pem")
    monkeypatch.setitem(os.environ, "TETHER_KEYS_DIR", str(bobs))
    root = Store(home / "tether.db").reviewer_events()[0].fingerprint  # alice's, as she told bob

    result = tether(home, "approve", approval_id, "--by", "bob")
    assert result.exit_code == 1 and "no root of trust" in result.output and "reviewer pin" in result.output
    assert tether(home, "reviewer", "pin").exit_code == 2  # a person states the root they were given
    wrong = tether(home, "reviewer", "pin", "--root", "ab" * 8)
    assert wrong.exit_code == 1 and "not the key" in wrong.output
    workspace_id = Store(home / "tether.db").meta("workspace_id")
    assert trust.load(workspace_id) is None
    assert tether(home, "reviewer", "pin", "--root", root[:16]).exit_code == 0
    assert trust.load(workspace_id).fingerprint == root
    assert tether(home, "approve", approval_id, "--by", "bob", "--accept-not-met").exit_code == 0


def test_a_pin_refuses_a_workspace_whose_first_entry_was_replaced(gated) -> None:
    home, _, _ = gated
    with raw_db(home) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET hash = ? WHERE seq = 1", ("e" * 64,))
    result = tether(home, "reviewer", "list")
    assert result.exit_code == 1 and "re-rooted" in result.output, result.output


def _cut_after(home: Path, seq: int) -> None:
    with raw_db(home) as db:
        db.execute("DROP TRIGGER audit_no_delete")
        db.execute("DELETE FROM audit WHERE seq > ?", (seq,))
        db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit'", (seq,))


def test_a_tail_cut_after_the_last_signature_is_found_by_a_witnessed_head(gated) -> None:
    home, _, approval_id = gated
    assert tether(home, "approve", approval_id, "--by", "alice", "--accept-not-met").exit_code == 0
    store = Store(home / "tether.db")
    signed_end = store.audit_head()[0]
    for n in range(3):  # the run writes on after the last signature; a reviewer then looks
        store.append_audit("tether", "round.note", None, {"n": n})
    assert tether(home, "approvals").exit_code == 0
    seen = trust.witnessed(store.meta("workspace_id"))
    assert seen is not None and seen.seq == signed_end + 3

    _cut_after(home, signed_end)
    assert Store(home / "tether.db").verify_audit().ok  # the chain alone cannot tell
    result = tether(home, "audit", "verify")
    assert result.exit_code == 1 and "truncated" in result.output and "approvals" in result.output, result.output


def test_a_tail_rewritten_after_a_reviewers_look_is_found(gated) -> None:
    home, _, _ = gated
    store = Store(home / "tether.db")
    end = store.audit_head()[0]
    store.append_audit("tether", "round.note", None, {"n": 1})
    assert tether(home, "status").exit_code == 0
    _cut_after(home, end)
    store.append_audit("tether", "round.note", None, {"n": 2})  # same length, another entry
    result = tether(home, "audit", "verify")
    assert result.exit_code == 1 and "rewritten" in result.output, result.output


def test_the_window_a_witness_cannot_close(gated) -> None:
    """Documented: entries written after every reviewer's last look and cut before the next one leave no
    trace (the README says so). Nothing is witnessed by the run's own commands."""
    home, _, _ = gated
    store = Store(home / "tether.db")
    assert tether(home, "status").exit_code == 0
    end = store.audit_head()[0]
    store.append_audit("tether", "round.note", None, {"n": 1})
    _cut_after(home, end)
    assert tether(home, "audit", "verify").exit_code == 0


def test_reviewer_add_takes_a_public_key_and_never_makes_a_private_one(gated, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    home, _, _ = gated
    folder = Path(os.environ["TETHER_KEYS_DIR"])
    result = tether(home, "reviewer", "add", "erin", "--by", "alice")
    assert result.exit_code == 2 and "--public-key" in result.output
    assert not keys.has_key(folder, "erin")

    erins = tmp_path / "erin-keys"
    monkeypatch.setitem(os.environ, "TETHER_KEYS_DIR", str(erins))
    made = runner.invoke(app, ["reviewer", "keygen", "erin"])
    assert made.exit_code == 0 and "BEGIN PUBLIC KEY" in made.stdout
    monkeypatch.setitem(os.environ, "TETHER_KEYS_DIR", str(folder))
    added = tether(home, "reviewer", "add", "erin", "--by", "alice", "--public-key", "-", stdin=made.stdout)
    assert added.exit_code == 0, added.output
    assert "reviewer pin --root" in added.output
    assert not keys.has_key(folder, "erin") and keys.has_key(erins, "erin")
