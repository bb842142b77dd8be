"""`tether ui` in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

A real run blocks at its approval gate (`run --wait`); the console is started as its own process by
alice (`--as alice`); she reads the inbox, opens the approval; a form naming anyone else (`tether`) and
a form without the token are refused (403, nothing changed); she approves through the form, and the
run resumes and finishes with the candidate active. Then the run page (notebook, charts), the sample
browser and a signed rollback through the checkpoints page. Screenshots go to a tmp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from starlette.testclient import TestClient
from typer.testing import CliRunner

from agent.cli.main import app as cli_app
from agent.ui import create_app
from conftest import init_workspace, signer, write_test_config
from guardrails import keys
from memory import Store

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
runner = CliRunner()
# The page's own time (request to response end, to load) and bytes (HTML + CSS + scripts, uncompressed).
NAVIGATION_TIMING = """() => { const n = performance.getEntriesByType('navigation')[0];
    return {ms: n.responseEnd - n.startTime, load_ms: n.loadEventEnd - n.startTime,
            bytes: performance.getEntries().reduce((s, e) => s + (e.encodedBodySize || 0), 0)}; }"""


# -- a browser, and the console as its own process ------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the browser tests need Chromium: `apt-get install -y chromium` (`make test` does it)")
    return path


@pytest.fixture()
def page(chromium: str, tmp_path: Path) -> Iterator[Page]:
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium,
                                                       headless=True, args=CHROMIUM_ARGS,
                                                       viewport={"width": 1280, "height": 900})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


class Console:
    """`tether ui --port 0` as a subprocess; `link` is the access link it printed."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(ui_command(home, "--port", "0", *extra), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("tether ui: http"):
                self.link = line.split(": ", 1)[1].strip()
                break
        else:
            raise AssertionError(f"tether ui exited {self.proc.wait()}:\n{''.join(self.lines)}")
        threading.Thread(target=lambda: self.lines.extend(self.proc.stderr or []), daemon=True).start()
        self.base = self.link.split("/?")[0]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def ui_command(home: Path, *args: str) -> list[str]:
    """`tether ui` through the CLI (`python -m agent.cli.ui` is the same command without the rest of the
    CLI, whose imports load torch)."""
    return [sys.executable, "-m", "agent.cli.ui", "--home", str(home), "ui", *args]


def _wait_for_pending(home: Path, run: subprocess.Popen[str], log: Path, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (home / "tether.db").is_file():
            with Store(home / "tether.db", readonly=True) as store:
                pending = store.approvals(status="pending")
            if pending:
                return pending[0].id
        if run.poll() is not None:
            raise AssertionError(f"the run exited {run.returncode} before its gate:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError("the run did not reach its approval gate in time")


def _audit(home: Path) -> list[tuple]:
    with Store(home / "tether.db", readonly=True) as store:
        return [(e.actor, e.action, e.subject, e.details) for e in store.audit_entries()]


def _text(page: Page) -> str:
    return " ".join(page.inner_text("main").split())


# -- the reviewer's desk, end to end ---------------------------------------------------------------


def test_a_reviewer_approves_a_gated_run_in_the_browser(tiny_world_model_dir: Path, tmp_path: Path,
                                                         page: Page) -> None:
    home = tmp_path / "ws"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    init_workspace(home)
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 1})
    run_log = tmp_path / "run.log"
    with run_log.open("w") as log:
        run = subprocess.Popen([sys.executable, "-m", "agent.cli", "--home", str(home), "run", "--wait"],
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    console = None
    try:
        approval_id = _wait_for_pending(home, run, run_log)
        with Store(home / "tether.db", readonly=True) as store:
            approval = store.get_approval(approval_id)
            candidate = store.get_checkpoint(approval.subject)
        run_id = candidate.run_id

        console = Console(home, "--as", "alice")
        first = httpx.get(console.link, follow_redirects=True, timeout=30)
        started_to_first_page = time.monotonic() - console.started
        assert first.status_code == 200 and approval_id in first.text
        assert httpx.get(console.base + "/", timeout=30).status_code == 401  # no access link, no page

        # The inbox: the pending approval with its summary and every invariant line.
        response = page.goto(console.link)
        assert response is not None and response.ok
        assert page.url.rstrip("/") == console.base  # the token left the address bar for a cookie
        inbox = _text(page)
        assert approval_id in inbox and " ".join(approval.summary.split()) in inbox
        lines = [r for r in candidate.invariant_report["results"]]
        assert lines and all(r["id"] in inbox for r in lines)
        assert page.locator("ul.invariants li").count() == len(lines)
        timing = page.evaluate(NAVIGATION_TIMING)
        page.screenshot(path=str(shots / "inbox.png"), full_page=True)

        # Open it: the evidence `tether show` prints.
        page.get_by_role("link", name="Review and decide").click()
        page.wait_for_url(f"**/approvals/{approval_id}")
        shown = _text(page)
        for heading in ("Held-out scores", "Invariants", "Held-out answers that differ most", "Signatures"):
            assert heading in shown
        assert page.locator(".side-by-side").count() >= 1 and "None yet (1 required)" in shown
        page.screenshot(path=str(shots / "approval.png"), full_page=True)

        # A POST without the form's token (but with the access cookie) is refused and changes nothing; so is a
        # form naming anyone but alice: the console signs as the reviewer who started it, never a typed name.
        before = _audit(home)
        csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
        for form in ({"decision": "approve"}, {"decision": "approve", "csrf_token": "forged"},
                     {"by": "tether", "decision": "approve", "csrf_token": csrf},
                     {"by": "bob", "decision": "approve", "csrf_token": csrf}):
            refused = page.request.post(f"{console.base}/approvals/{approval_id}/decide", form=form)
            assert refused.status == 403, form
            assert ("token" if "by" not in form else "signs only as alice") in refused.text(), form
        assert _audit(home) == before
        assert "Signing as alice" in _text(page) and page.locator("input[name=by]").count() == 0

        # alice approves through the form, accepting the target the tiny model has not met (a ratchet: the
        # box is there because it is needed); the waiting run resumes and finishes on the candidate.
        page.fill("textarea[name=note]", "<b>held-out</b> & invariants read")
        page.check("input[name=accept_not_met]")
        with page.expect_response(lambda r: r.url.endswith("/decide")) as answer:
            page.get_by_role("button", name="Approve and sign").click()
        assert answer.value.status == 200
        assert f"{approval_id} approved by alice" in _text(page)
        assert run.wait(timeout=600) == 0, run_log.read_text()[-3000:]
        with Store(home / "tether.db", readonly=True) as store:
            finished = store.get_run(run_id)
        assert finished.state == "stopped" and finished.active_checkpoint == candidate.id
        # Stored strings print literally: the note is text, not markup.
        page.goto(f"{console.base}/approvals/{approval_id}")
        assert "<b>held-out</b> & invariants read" in page.inner_text("main")
        assert page.locator("main td b").count() == 0

        # The run page: the lab notebook and its interactive charts (Plotly, every one drawn with data).
        page.goto(f"{console.base}/runs/{run_id}", wait_until="load")
        assert "round 1" in " ".join(page.locator("pre.notebook").all_inner_texts())
        run_timing = page.evaluate(NAVIGATION_TIMING)
        charts = page.locator("#run-charts div.chart")
        assert charts.count() > 0
        page.wait_for_function("() => [...document.querySelectorAll('#run-charts div.chart')]"
                               ".every(c => c.classList.contains('js-plotly-plot') && c.data.length > 0)",
                               timeout=60_000)
        page.screenshot(path=str(shots / "run.png"), full_page=True)

        # The sample browser: every pair's chosen and rejected response is marked.
        page.goto(f"{console.base}/runs/{run_id}/rounds/1")
        with Store(home / "tether.db", readonly=True) as store:
            pairs = store.pairs(run_id, 1)
        assert page.locator(".badge.chosen").count() == len(pairs) == page.locator(".badge.rejected").count()

        # Roll back to the base through the checkpoints page, signed as alice.
        page.goto(f"{console.base}/checkpoints?run={run_id}")
        base = f"{run_id}-base"
        form = page.locator("details.rollback", has_text=f"Roll back to {base}")
        form.locator("summary").click()
        form.locator("textarea[name=reason]").fill("browser test")
        with page.expect_response(lambda r: r.url.endswith("/rollback")) as answer:
            form.get_by_role("button", name="Roll back and sign").click()
        assert answer.value.status == 200 and f"{base} is now the active checkpoint of {run_id}" in _text(page)
        with Store(home / "tether.db", readonly=True) as store:
            assert store.get_run(run_id).active_checkpoint == base

        # The console loaded no model code, before or after serving every page.
        maps = Path(f"/proc/{console.proc.pid}/maps")
        if maps.exists():
            assert "libtorch" not in maps.read_text()
        report = {"started_to_first_page_s": round(started_to_first_page, 3), "inbox_ms": round(timing["ms"], 1),
                  "inbox_load_ms": round(timing["load_ms"], 1), "inbox_bytes": timing["bytes"],
                  "run_page_first_load_ms": round(run_timing["load_ms"], 1), "run_page_bytes": run_timing["bytes"],
                  "screenshots": sorted(str(p) for p in shots.glob("*.png"))}
        print("\nui:", json.dumps(report))
        assert all(p.stat().st_size > 10_000 for p in shots.glob("*.png")) and len(report["screenshots"]) == 3
    finally:
        if console is not None:
            console.close()
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=60)


# -- cheaper checks, no model -----------------------------------------------------------------------


@pytest.fixture()
def proposed(tmp_path: Path) -> tuple[Path, str]:
    """A workspace with a constitution change proposed by bob (no run, no model)."""
    home = tmp_path / "ws"
    init_workspace(home)
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text((home / "constitution.yaml").read_text().replace("weight: 0.3", "weight: 0.4"))
    result = runner.invoke(cli_app, ["--home", str(home), "constitution", "propose", str(proposal), "--by", "bob"])
    assert result.exit_code == 0, result.output
    with Store(home / "tether.db", readonly=True) as store:
        return home, store.approvals(status="pending")[0].id


def _client(home: Path, reviewer: str | None) -> tuple[TestClient, str]:
    app = create_app(home, reviewer=None if reviewer is None else signer(reviewer))
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.get("/").status_code == 401
    assert client.get(f"/?token={app.state.secrets.access}").status_code == 200
    return client, app.state.secrets.csrf


def test_a_constitution_change_is_a_diff_and_its_proposer_is_refused_as_by_the_cli(proposed) -> None:
    home, approval_id = proposed
    client, csrf = _client(home, "bob")  # bob proposed it; his console may not approve it
    page = client.get(f"/approvals/{approval_id}")
    assert page.status_code == 200
    assert '<span class="del">-    weight: 0.3</span>' in page.text
    assert '<span class="add">+    weight: 0.4</span>' in page.text
    assert f'name="csrf_token" value="{csrf}"' in page.text

    before = _audit(home)
    assert client.post(f"/approvals/{approval_id}/decide", data={"decision": "approve"}).status_code == 403
    assert _audit(home) == before

    refused = client.post(f"/approvals/{approval_id}/decide", data={"decision": "approve", "csrf_token": csrf})
    assert refused.status_code == 403
    web_entry = _audit(home)[-1]
    assert web_entry[:3] == ("tether", "approval.refused", approval_id) and web_entry[3]["by"] == "bob"
    assert web_entry[3]["reason"] in refused.text.replace("&#39;", "'")
    cli = runner.invoke(cli_app, ["--home", str(home), "approve", approval_id, "--by", "bob"])
    assert cli.exit_code == 1 and web_entry[3]["reason"] in " ".join(cli.output.split())
    assert _audit(home)[-1] == web_entry

    # alice's console signs as alice, whatever name a form types; a console started by no one signs nothing.
    alices, alice_csrf = _client(home, "alice")
    reader, reader_csrf = _client(home, None)
    before = _audit(home)
    for client_, form in ((alices, {"by": "bob", "decision": "approve", "csrf_token": alice_csrf}),
                          (reader, {"decision": "approve", "csrf_token": reader_csrf}),
                          (reader, {"by": "alice", "decision": "approve", "csrf_token": reader_csrf})):
        assert client_.post(f"/approvals/{approval_id}/decide", data=form).status_code == 403
    assert _audit(home) == before
    assert "reads only" in reader.get(f"/approvals/{approval_id}").text

    approved = alices.post(f"/approvals/{approval_id}/decide", data={"decision": "approve", "csrf_token": alice_csrf})
    assert approved.status_code == 200 and "constitution v2 is in force" in approved.text
    assert alices.get("/", headers={"host": "evil.example"}).status_code == 400  # no DNS rebinding


def test_the_console_signs_only_as_a_registered_reviewer_with_their_key(proposed, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    home, _ = proposed
    folder = Path(os.environ["TETHER_KEYS_DIR"])
    assert not keys.has_key(folder, "nokey-ui")
    nokey = runner.invoke(cli_app, ["--home", str(home), "ui", "--as", "nokey-ui"])
    assert nokey.exit_code == 1 and "no private key for 'nokey-ui'" in nokey.output
    stranger = tmp_path / "stranger-keys"
    keys.create_key(stranger, "alice")  # a key named alice, but not the one registered
    monkeypatch.setitem(os.environ, "TETHER_KEYS_DIR", str(stranger))
    shutil.copytree(folder / "trust", stranger / "trust")
    impostor = runner.invoke(cli_app, ["--home", str(home), "ui", "--as", "alice"])
    assert impostor.exit_code == 1 and "not a registered reviewer" in impostor.output, impostor.output


def test_the_console_listens_on_loopback_unless_told_and_loads_no_model(proposed) -> None:
    home, _ = proposed
    refused = subprocess.run(ui_command(home, "--host", "0.0.0.0", "--port", "0"), capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    console = Console(home, "--host", "0.0.0.0", "--allow-remote")
    try:
        assert any(line.startswith("warning: serving on 0.0.0.0") for line in console.lines)
    finally:
        console.close()
    probe = ("import sys; from pathlib import Path; from starlette.testclient import TestClient; "
             "from agent.ui import create_app; app = create_app(Path(sys.argv[1])); "
             "c = TestClient(app, base_url='http://127.0.0.1'); c.get('/?token=' + app.state.secrets.access); "
             "[c.get(p).raise_for_status() for p in ('/', '/runs', '/checkpoints')]; "
             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe, str(home)], capture_output=True, text=True, timeout=120,
                            env={**os.environ})
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
