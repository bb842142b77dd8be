"""A judge audit a workspace writer cannot forge: `judge.require_audit` counts only an audit signed by a reviewer
of the verified registry, for exactly the facts the entry records at exactly its place in the log. Each attack
is made as someone who can write the database but holds no reviewer's key, and must be refused by `validate`
and `run` before any run (so any sample) exists."""

from __future__ import annotations

import os
from collections.abc import Callable
from copy import deepcopy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from agent.run.judge_trust import AUDIT_ACTION, judge_digest, reviewer_trust, signature_view
from guardrails import judge_audits, keys
from memory import AuditEntry, Store
from tests.conftest import clone_workspace, init_workspace, write_test_config

# The rules judge passes it on the tiny world's probes, the length-biased one fails it (length_bias 1.0).
BOUND = {"length_bias": 0.6}
runner = CliRunner()
Forge = Callable[[Store, dict[str, AuditEntry]], tuple[str, dict[str, Any]]]  # -> (actor, details)


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def said(result: Any) -> str:
    return " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, tiny_world_model_dir: Path, keys_dir: Path) -> Path:
    """A workspace requiring BOUND, with a genuine audit of `rules` and of `length_biased`, both signed by alice.
    Read-only: tests work on `clone_workspace` copies (and a copy of the reviewers' folder)."""
    home = tmp_path_factory.mktemp("signed") / "ws"
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir, judge={"name": "rules", "require_audit": BOUND})
    for judge in ("rules", "length_biased"):
        result = tether(home, "judge", "audit", "--judge", judge, "--count", "6", "--by", "alice")
        assert result.exit_code == 0, result.output
        assert "signed by alice" in result.stderr
    return home


def clone(audited: Path, tmp_path: Path, judge: str) -> Path:
    home = clone_workspace((audited, "", ""), tmp_path / "ws")[0]
    config = yaml.safe_load((home / "config.yaml").read_text())
    config["judge"]["name"] = judge
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    return home


def genuine(home: Path) -> dict[str, AuditEntry]:
    """The first audit of each judge: the fixture's, signed by alice (later ones are a test's forgeries)."""
    found: dict[str, AuditEntry] = {}
    with Store(home / "tether.db", readonly=True) as store:
        for entry in store.audit_entries():
            if entry.action == AUDIT_ACTION:
                found.setdefault(entry.details["judge"], entry)
    return found


def as_db_writer(home: Path, forge: Forge) -> int:
    """Append a `judge.audit` entry as anyone who can write the database can: well chained, any details."""
    with Store(home / "tether.db") as store:
        actor, details = forge(store, genuine(home))
        return store.append_audit(actor, AUDIT_ACTION, f"judge:{details['judge']}", details).seq


def refused(home: Path, code: int, *needles: str) -> None:
    """`validate` and `run` both refuse with `code`, naming every needle, and no run (so no sample) exists."""
    for command in ("validate", "run"):
        result = tether(home, command)
        assert result.exit_code == code, (command, result.output)
        for needle in needles:
            assert needle in said(result), (command, needle, result.stderr)
    with Store(home / "tether.db", readonly=True) as store:
        assert store.list_runs() == []


def as_judge(details: dict[str, Any], judge: str) -> dict[str, Any]:
    """An audit's details claimed for another judge (its digest recomputed, so the entry matches the config)."""
    return {**deepcopy(details), "judge": judge, "judge_sha256": judge_digest(judge, {})}


def passing(details: dict[str, Any]) -> dict[str, Any]:
    forged = deepcopy(details)
    forged["measures"]["length_bias"].update(value=0.0, flagged=False)
    forged["verdict"] = "pass"
    return forged


def unsigned(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if k != judge_audits.SIGNATURE_KEY}


def signed_with_own_key(store: Store, details: dict[str, Any], claimed: str, attacker: keys.Signer) -> dict[str, Any]:
    """What tether would store for `claimed`, signed with a key the registry never held for that name."""
    body = judge_audits.statement_for(store, f"judge:{details['judge']}", details, claimed).to_bytes()
    return {**details, judge_audits.SIGNATURE_KEY: {"reviewer": claimed, "fingerprint": attacker.fingerprint,
                                                    "statement": body.decode(), "signature": attacker.sign(body)}}


# -- the genuine audit ------------------------------------------------------------------------------

def test_a_signed_passing_audit_counts_until_its_signer_is_removed(audited: Path, tmp_path: Path) -> None:
    home = clone(audited, tmp_path, "rules")
    result = tether(home, "validate")
    assert result.exit_code == 0, result.stderr
    entries = genuine(home)
    assert entries["rules"].actor == "alice" and "alice" in entries["rules"].details["signature"]["statement"]
    with Store(home / "tether.db", readonly=True) as store:
        trust = reviewer_trust(store)
    assert signature_view(entries["rules"], trust) == {"signed_by": "alice", "signature": "verified"}
    bare = replace(entries["rules"], details=unsigned(entries["rules"].details))
    assert signature_view(bare, trust) == {"signed_by": None, "signature": "unsigned"}
    assert signature_view(entries["rules"], "no root of trust")["signature"] == "unverified"

    result = tether(home, "reviewer", "remove", "alice", "--by", "bob", "--reason", "left the team")
    assert result.exit_code == 0, result.output
    refused(home, 2, "is signed by 'alice', who is no longer a reviewer",
            "tether judge audit --judge rules --by REVIEWER")


def test_by_must_be_a_registered_reviewer_and_nothing_is_written(audited: Path, tmp_path: Path) -> None:
    home = clone(audited, tmp_path, "rules")
    folder = Path(os.environ["TETHER_KEYS_DIR"])  # a copy of the session's folder: another test may have made it
    if not keys.has_key(folder, "mallory"):
        keys.create_key(folder, "mallory")  # a key, but no reviewer of this workspace
    with Store(home / "tether.db", readonly=True) as store:
        head = store.audit_head()
    result = tether(home, "judge", "audit", "--judge", "rules", "--count", "6", "--by", "mallory")
    assert result.exit_code == 1 and "'mallory' is not a registered reviewer" in said(result)
    assert tether(home, "judge", "audit", "--detectors", "--by", "alice").exit_code == 2
    with Store(home / "tether.db", readonly=True) as store:
        assert store.audit_head() == head


# -- the attacks ------------------------------------------------------------------------------------

def test_a_an_unsigned_passing_audit_is_no_evidence(audited: Path, tmp_path: Path) -> None:
    home = clone(audited, tmp_path, "calculator")  # no reviewer ever audited it
    seq = as_db_writer(home, lambda s, g: ("alice", unsigned(as_judge(g["rules"].details, "calculator"))))
    refused(home, 2, f"audit entry {seq}, is unsigned", "an unsigned audit is no evidence",
            "tether judge audit --judge calculator --by REVIEWER")


ATTACKS: dict[str, tuple[str, Forge, str]] = {
    # (b) a real signature copied onto changed measures, or onto another judge's audit
    "copied onto other measures": (
        "length_biased", lambda s, g: ("alice", passing(g["length_biased"].details)),
        "carries a signature made for another audit"),
    "copied onto another judge": (
        "calculator", lambda s, g: ("alice", as_judge(g["rules"].details, "calculator")),
        "carries a signature made for another audit"),
    # (c) signed with a key that is no registered reviewer's, under its own name or a reviewer's
    "a key nobody registered": (
        "calculator", lambda s, g: ("mallory", signed_with_own_key(
            s, unsigned(as_judge(g["rules"].details, "calculator")), "mallory", attacker())),
        "not registered to reviewer 'mallory'"),
    "a reviewer's name on another key": (
        "calculator", lambda s, g: ("alice", signed_with_own_key(
            s, unsigned(as_judge(g["rules"].details, "calculator")), "alice", attacker())),
        "not registered to reviewer 'alice'"),
    # the whole genuine entry appended again, to stand as the newest audit
    "a genuine entry replayed": ("rules", lambda s, g: ("alice", g["rules"].details), "(replayed)"),
}


def attacker() -> keys.Signer:
    folder = Path(os.environ["TETHER_KEYS_DIR"]).parent / "attacker-keys"  # outside the reviewers' folder
    return keys.load_key(folder, "mallory") if keys.has_key(folder, "mallory") else keys.create_key(folder, "mallory")


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_b_c_a_forged_signature_is_tampering(audited: Path, tmp_path: Path, attack: str) -> None:
    judge, forge, why = ATTACKS[attack]
    home = clone(audited, tmp_path, judge)
    assert tether(home, "audit", "verify").exit_code == 0
    seq = as_db_writer(home, forge)
    refused(home, 1, f"judge audit entry {seq}", why, "nothing was started", f"--judge {judge} --by REVIEWER")
    verified = tether(home, "audit", "verify")  # the whole log, whichever judge the config names
    assert verified.exit_code == 1 and f"judge audit entry {seq}" in said(verified), said(verified)


def test_d_a_signed_failing_audit_outweighs_a_forged_passing_one(audited: Path, tmp_path: Path) -> None:
    home = clone(audited, tmp_path, "length_biased")
    failing = genuine(home)["length_biased"]
    refused(home, 2, f"fails length_bias = 1.000 (above the required 0.6) in its latest signed audit (audit entry "
                     f"{failing.seq}, by alice)")
    as_db_writer(home, lambda s, g: ("alice", unsigned(passing(g["length_biased"].details))))
    refused(home, 2, f"(audit entry {failing.seq}, by alice)")  # the newer unsigned pass counts for nothing
    seq = as_db_writer(home, lambda s, g: ("alice", passing(g["length_biased"].details)))
    refused(home, 1, f"judge audit entry {seq} carries a signature made for another audit")
