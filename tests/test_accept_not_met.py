"""A target not met is said out loud: approving such a candidate needs `--accept-not-met` (the desk: a
checkbox), and the acknowledgement is in the reviewer's signed statement. Every view shows the interval.

On a real run paused at its gate: the tiny model starts far above refuse-serious-harm's 0.25 target (a
ratchet), so its first candidate passes within the ratchet without meeting the target.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agent.ui import create_app
from conftest import clone_workspace, raw_db, signer, tether_cli
from guardrails.statements import parse
from memory import Store


@pytest.fixture()
def gated(gated_workspace, tmp_path: Path) -> tuple[Path, str, str]:
    return clone_workspace(gated_workspace, tmp_path / "ws")


def _view(home: Path, approval_id: str) -> dict:
    return json.loads(tether_cli(home, "show", approval_id, "--json", check=True).stdout)


def _written(home: Path, approval_id: str) -> tuple[list, list, str]:
    store = Store(home / "tether.db")
    return store.audit_entries(), store.signatures(approval_id=approval_id), store.get_approval(approval_id).status


def test_approving_a_target_not_met_needs_accept_not_met_and_is_signed(gated) -> None:
    home, run_id, approval_id = gated
    view = _view(home, approval_id)
    harm = next(r for r in view["invariants"] if r["id"] == "refuse-serious-harm")
    assert view["targets_not_met"] == ["refuse-serious-harm"], view["invariants"]
    # The interval: rate, lower-upper, n and level, the upper end above the target while within the ratchet.
    assert harm["lower"] <= harm["rate"] <= harm["upper"] and harm["n"] == 9 and harm["confidence"] == 0.95
    assert harm["passed"] and not harm["met_target"] and harm["target"] < harm["upper"] <= harm["bound"]
    shown = tether_cli(home, "show", approval_id, check=True)
    interval = f"{harm['lower']:.3f}–{harm['upper']:.3f}"
    assert interval in shown.stdout and "95%" in shown.stdout and "target NOT MET" in shown.stdout
    assert f"tether approve {approval_id} --by NAME --accept-not-met" in shown.stderr
    summary = json.loads(tether_cli(home, "approvals", "--json", check=True).stdout)[0]["summary"]
    assert f"[{interval}, n=9, 95%]" in summary  # the gate's summary

    before = _written(home, approval_id)
    refused = tether_cli(home, "approve", approval_id, "--by", "alice")
    assert refused.returncode == 2, refused.stderr
    assert "--accept-not-met" in refused.stderr and "refuse-serious-harm" in refused.stderr
    assert _written(home, approval_id) == before  # nothing written, still pending

    approved = tether_cli(home, "approve", approval_id, "--by", "alice", "--accept-not-met", "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "approved"
    store = Store(home / "tether.db")
    [sig] = store.signatures(approval_id=approval_id)
    assert parse(sig.statement).predicate["accept_not_met"] == ["refuse-serious-harm"]  # under the signature
    signed = [e for e in store.audit_entries(subject=approval_id) if e.action == "approval.signed"]
    assert signed[-1].details["accept_not_met"] == ["refuse-serious-harm"]
    after = _view(home, approval_id)["signatures"]
    assert after["verified"] and after["signed"][0]["accept_not_met"] == ["refuse-serious-harm"]
    assert "accepted target NOT MET: refuse-serious-harm" in tether_cli(home, "show", approval_id).stderr
    assert tether_cli(home, "audit", "verify").returncode == 0
    assert tether_cli(home, "resume", run_id).returncode == 0  # the gate activates it: the signature verifies
    assert store.get_run(run_id).active_checkpoint == f"{run_id}-r1"

    # The acknowledgement is covered by the signature: a statement edited to drop it no longer verifies.
    edited = sig.statement.replace('"accept_not_met":["refuse-serious-harm"],', "")
    assert edited != sig.statement
    with raw_db(home) as db:
        db.execute("UPDATE signatures SET statement = ? WHERE id = ?", (edited, sig.id))
    assert not _view(home, approval_id)["signatures"]["verified"]


def test_the_desk_shows_the_interval_and_needs_the_same_acknowledgement(gated) -> None:
    home, _, approval_id = gated
    app = create_app(home, reviewer=signer("alice"))
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.get(f"/?token={app.state.secrets.access}").status_code == 200
    page = client.get(f"/approvals/{approval_id}")
    harm = next(r for r in _view(home, approval_id)["invariants"] if r["id"] == "refuse-serious-harm")
    assert f"{harm['lower']:.3f}–{harm['upper']:.3f}" in page.text and "95%" in page.text
    assert 'name="accept_not_met"' in page.text and "Target NOT MET: refuse-serious-harm" in page.text
    form = {"decision": "approve", "csrf_token": app.state.secrets.csrf}

    before = _written(home, approval_id)
    refused = client.post(f"/approvals/{approval_id}/decide", data=form)
    assert refused.status_code == 400 and "accept-not-met" in refused.text
    assert _written(home, approval_id) == before

    approved = client.post(f"/approvals/{approval_id}/decide", data={**form, "accept_not_met": "1"})
    assert approved.status_code == 200 and f"{approval_id} approved by alice" in approved.text
    [sig] = Store(home / "tether.db").signatures(approval_id=approval_id)
    assert parse(sig.statement).predicate["accept_not_met"] == ["refuse-serious-harm"]
    assert '<td class="accepted">refuse-serious-harm</td>' in client.get(f"/approvals/{approval_id}").text
