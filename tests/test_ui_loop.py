"""The desk runs the loop (issue 21.6), in headless Chromium: on a clone of the session's gated run (paused at
round 1's gate, its budget cut to that one round), alice approves in the browser and resumes the run from its
page, which moves to resuming and then stopped without a reload; the interactive charts are Plotly's, with a
pending candidate labelled pending; the samples page filters; a run started from the Runs page is stopped from
its own page while its process drives it; the compare page overlays both runs. Without a browser: a console
started without --as shows no controls and refuses their POSTs, and a decision on a run whose process waits at
its gate (`run --wait`) says that the run goes on, never to run `tether resume`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_ui
from playwright.sync_api import Page, expect
from starlette.testclient import TestClient
from test_ui import Console, _audit, _text

from agent.config import TetherConfig
from agent.run.lifecycle import reconfigure
from agent.run.locks import run_lock
from agent.run.workspace import Workspace
from agent.ui import create_app
from conftest import clone_workspace, signer
from memory import Store

chromium, page = test_ui.chromium, test_ui.page  # the browser fixtures of tests/test_ui.py
RUN_MOVES_S = 600_000  # ms for a run process to start, load the tiny model and get where a test waits for it


def _one_round(home: Path, run_id: str) -> None:
    """Cut the run's budget to the round it is paused in, as `tether resume --config` would: after its gate it
    commits and stops, so the test drives one round, not two."""
    with Store(home / "tether.db") as store:
        run = store.get_run(run_id)
        config = TetherConfig.model_validate(run.config)
        config = config.model_copy(update={"controller": config.controller.model_copy(update={"rounds": 1})})
        assert reconfigure(store, run, config, "test")


def _end_run_processes(home: Path) -> None:
    """The runs the desk started are detached (they outlive the console): end any still driving here."""
    for lock in (home / "runs").glob("*/run.lock"):
        text = lock.read_text().strip()
        if text.isdigit() and Path(f"/proc/{text}").exists():
            cmdline = Path(f"/proc/{text}/cmdline").read_bytes()
            if b"agent.cli" in cmdline and str(home).encode() in cmdline:
                os.kill(int(text), signal.SIGTERM)


@pytest.fixture()
def gated(gated_workspace, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    home, run_id, approval_id = clone_workspace(gated_workspace, tmp_path / "ws")
    yield home, run_id, approval_id
    _end_run_processes(home)


def _badge(page: Page) -> str:
    return page.locator("#run-head h1 .badge").inner_text()


def test_the_desk_resumes_starts_stops_and_compares_runs(gated, page: Page) -> None:
    home, run_id, approval_id = gated
    _one_round(home, run_id)
    console = Console(home, "--as", "alice")
    try:
        page.goto(console.link)

        # The run page: Plotly charts with data; the candidate waiting for a reviewer is "pending", never "not
        # approved" (no one has decided it).
        page.goto(f"{console.base}/runs/{run_id}")
        page.wait_for_function("() => document.querySelectorAll('#run-charts .js-plotly-plot').length > 0")
        names = page.evaluate("() => document.querySelector('#chart-scores').data.map(t => t.name)")
        assert "candidate, pending" in names and not any("not approved" in n for n in names), names
        assert page.evaluate("() => document.querySelector('#chart-scores').data[0].x.length") >= 2
        assert _badge(page) == "paused"

        # The samples page, filtered on the server: chosen responses only; one family; a score range.
        with Store(home / "tether.db", readonly=True) as store:
            chosen_ids = {p.chosen_sample_id for p in store.pairs(run_id, 1)}
            family = store.samples(run_id, 1, split="train")[0].family
        page.goto(f"{console.base}/runs/{run_id}/rounds/1?pair=chosen")
        rows = page.locator("table.responses tbody tr")
        assert rows.count() == len(chosen_ids) > 0
        assert page.locator("table.responses tbody tr.chosen").count() == rows.count()
        page.select_option("select[name=family]", family)
        page.fill("input[name=min]", "0")
        page.fill("input[name=max]", "1")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**family=*")
        badges = page.locator(".sample-group .answer-head .badge")
        assert badges.count() > 0 and set(badges.all_inner_texts()) == {family}
        assert page.request.get(f"{console.base}/runs/{run_id}/rounds/1?min=high").status == 400

        # alice approves in the browser and leaves "then resume" unticked: the page says how to resume.
        page.goto(f"{console.base}/approvals/{approval_id}")
        page.check("input[name=accept_not_met]")
        page.uncheck("input[name=resume]")
        page.get_by_role("button", name="Approve and sign").click()
        assert f"{approval_id} approved by alice; resume run {run_id} from its page here" in _text(page)

        # She resumes it from its page: it shows resuming, then stopped, and the page was never reloaded.
        page.goto(f"{console.base}/runs/{run_id}")
        page.get_by_role("button", name="Resume").click()
        assert f"run {run_id} is resuming in a process this console started" in _text(page)
        assert page.url.endswith(f"/runs/{run_id}")  # the address of the page, not of the form's POST
        page.evaluate("() => { window.sameDocument = true; }")
        expect(page.locator("#run-head h1 .badge")).to_have_text("stopped", timeout=RUN_MOVES_S)
        assert page.evaluate("() => window.sameDocument === true")  # updated in place
        with Store(home / "tether.db", readonly=True) as store:
            resumed = store.get_run(run_id)
        assert resumed.state == "stopped" and resumed.active_checkpoint == f"{run_id}-r1"
        assert "run.resume" in [a for _, a, s, _ in _audit(home) if s == run_id]
        log = home / "logs" / f"{run_id}.log"
        assert log.is_file() and "commit done" in log.read_text()

        # A new run from the Runs page (seed 7, one round); its id appears there without a reload, and alice
        # stops it from its page while its process drives it (SIGTERM first, then `tether stop`'s function).
        page.goto(f"{console.base}/runs")
        page.fill("input[name=rounds]", "1")
        page.fill("input[name=seed]", "7")
        page.get_by_role("button", name="Start").click()
        assert "`tether run --rounds 1 --seed 7` started from this console" in _text(page)
        link = page.locator("table.launches tr", has_text="tether run --rounds 1").locator("a")
        expect(link).to_have_count(1, timeout=RUN_MOVES_S)
        second = link.inner_text()
        link.click()
        expect(page.locator("#run-head h1 .badge")).to_have_text("running", timeout=RUN_MOVES_S)
        page.locator("details.stop summary").click()
        page.fill("details.stop textarea[name=reason]", "started to test the desk")
        page.get_by_role("button", name="Stop and sign").click()
        assert f"run {second} stopped by alice" in _text(page)
        with Store(home / "tether.db", readonly=True) as store:
            assert store.get_run(second).state == "stopped"
        stops = [(actor, d) for actor, action, subject, d in _audit(home) if action == "run.stop" and subject == second]
        assert stops and stops[-1][0] == "alice" and stops[-1][1]["reason"] == "started to test the desk"

        # Both runs side by side: their held-out scores overlaid, and the setting that differs.
        page.goto(f"{console.base}/compare?a={run_id}&b={second}")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length === 1")
        traces = page.evaluate("() => document.querySelector('#chart-compare').data.map(t => t.name)")
        assert any(n.startswith(f"{run_id}: active after the round") for n in traces), traces
        assert f"{second}: no held-out scores yet" in _text(page)  # stopped before its first evaluation
        differences = page.locator("table.config-diff tbody tr").all_inner_texts()
        assert any(row.split()[:3] == ["seed", "0", "7"] for row in differences), differences
    finally:
        console.close()


def _client(home: Path, reviewer: str | None) -> tuple[TestClient, str]:
    app = create_app(home, reviewer=None if reviewer is None else signer(reviewer))
    client = TestClient(app, base_url="http://127.0.0.1")
    client.get(f"/?token={app.state.secrets.access}")
    return client, app.state.secrets.csrf


def test_a_reading_console_has_no_controls_and_a_waiting_run_goes_on_by_itself(gated) -> None:
    home, run_id, approval_id = gated
    reader, csrf = _client(home, None)
    shown = reader.get(f"/runs/{run_id}").text
    assert "reads only" in shown and "/resume" not in shown and "/stop" not in shown
    assert 'action="/runs/start"' not in reader.get("/runs").text
    before = _audit(home)
    for url, form in ((f"/runs/{run_id}/resume", {}), (f"/runs/{run_id}/stop", {"reason": "no"}),
                      ("/runs/start", {"rounds": "1"})):
        refused = reader.post(url, data={**form, "csrf_token": csrf})
        assert refused.status_code == 403 and "reads only" in refused.text, url
    assert _audit(home) == before and not (home / "logs").exists()  # nothing started, nothing written

    alices, alice_csrf = _client(home, "alice")
    assert alices.post("/runs/start", data={"rounds": "0", "csrf_token": alice_csrf}).status_code == 400
    assert alices.post(f"/runs/{run_id}/stop", data={"reason": " ", "csrf_token": alice_csrf}).status_code == 400
    assert alices.post(f"/runs/{run_id}/resume", data={"by": "bob", "csrf_token": alice_csrf}).status_code == 403
    assert _audit(home) == before and not (home / "logs").exists()

    # The run's process waits at its gate (`tether run --wait` holds the run's lock): the page says it goes on.
    with run_lock(Workspace(home), run_id):
        assert "goes on by itself" in alices.get(f"/approvals/{approval_id}").text
        form = {"decision": "approve", "accept_not_met": "1", "resume": "1", "csrf_token": alice_csrf}
        decided = alices.post(f"/approvals/{approval_id}/decide", data=form)
        assert decided.status_code == 200
        assert f"run {run_id} goes on: the process waiting at its gate continues it now" in decided.text
        assert "tether resume" not in decided.text.split('class="flash')[1].split("</p>")[0]
    assert not (home / "logs").exists()  # this console started nothing
