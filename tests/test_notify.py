"""Notifications reach a real loopback HTTP receiver (apprise's json:// and a shell command); a failing
channel is audited and never stops the run."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import NotifyConfig
from agent.run.notify import Notice, make_notice, send
from conftest import init_workspace, tether_cli, write_test_config
from memory import Store


def _receiver() -> tuple[ThreadingHTTPServer, list[dict]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def test_a_notice_reaches_a_url_and_a_command(tmp_path: Path) -> None:
    server, received = _receiver()
    out = tmp_path / "command.json"
    command = f"{sys.executable} -c \"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())\""
    cfg = NotifyConfig(command=command, urls=[f"json://127.0.0.1:{server.server_address[1]}/hook"])
    try:
        failures = send(cfg, Notice("gate", "run-x", 2, "candidate r2 waits", "tether show ap-1"))
    finally:
        server.shutdown()
    assert failures == []
    assert received and "run-x" in received[0]["title"] and "tether show ap-1" in received[0]["message"]
    assert json.loads(out.read_text())["event"] == "gate"
    assert send(NotifyConfig(urls=["json://127.0.0.1:9/nothing"], events=["stopped"]), Notice(
        "gate", "run-x", 1, "d", "r")) == []  # not an event it is configured for: nothing sent


def test_a_run_notifies_at_its_gate_and_a_broken_channel_is_only_logged(tmp_path: Path,
                                                                         tiny_world_model_dir: Path) -> None:
    server, received = _receiver()
    home = tmp_path / "ws"
    init_workspace(home)
    port = server.server_address[1]
    write_test_config(home, tiny_world_model_dir, controller={"rounds": 1},
                      notify={"urls": [f"json://127.0.0.1:{port}/hook"], "command": "/nonexistent/notifier"})
    try:
        result = tether_cli(home, "run")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr  # the broken command did not stop the run
    assert any("waits for a human decision" in r["title"] for r in received)
    assert any(f"tether --home {home.resolve()} show ap-" in r["message"] for r in received)
    store = Store(home / "tether.db")
    failed = [e for e in store.audit_entries() if e.action == "notify.failed"]
    assert failed and "notify.command" in failed[0].details["error"]
    assert store.list_runs()[0].state == "paused"


def test_the_command_runs_in_a_shell_and_the_notice_names_the_workspace_and_the_desk(tmp_path: Path) -> None:
    out = tmp_path / "piped.txt"
    cfg = NotifyConfig(command=f"cat | {sys.executable} -c 'import json, sys; print(json.load(sys.stdin)[\"link\"])' "
                               f"> {out} && echo \"$TETHER_HOME\" >> {out}", desk_url="http://127.0.0.1:8765/")
    notice = make_notice(cfg, "gate", "run-x", 2, "candidate r2 waits", tmp_path / "my ws", "show ap-1",
                         "approvals/ap-1")
    assert notice.review == f"tether --home '{(tmp_path / 'my ws').resolve()}' show ap-1"
    assert "Desk: http://127.0.0.1:8765/approvals/ap-1" in notice.body
    assert send(cfg, notice) == []
    link, home = out.read_text().split("\n")[:2]
    assert (link, home) == ("http://127.0.0.1:8765/approvals/ap-1", str((tmp_path / "my ws").resolve()))
    with pytest.raises(ValidationError):
        NotifyConfig(desk_url="javascript:alert(1)")
