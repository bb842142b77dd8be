"""Issue 21's afternoon, replayed end to end: a new user founds a workspace on their own constitution, points a
config at a model by a path relative to the config, validates and runs it from another folder, reviews the
candidate in the CLI, approves it in the desk with "then resume" ticked, has the agent's amendment shown as the
two lines it changes and written without losing a comment, starts a second run from the approved adapter and
rolls it back to its inherited start, exports the adapter for serving, and reads the run's log as sentences.

Every step goes through the real CLI, from a folder that is neither the workspace nor the repository (`validate`
and `run` as processes of their own, the quick commands through the same typer app in this process), or through
the desk's app (the Starlette app `tether ui` serves; tests/test_ui_loop.py drives the same pages in Chromium).
One workspace, one round per run, the session's tiny model.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from starlette.testclient import TestClient
from typer.testing import CliRunner

from agent.cli.main import app
from agent.run.workspace import Workspace
from agent.ui import control, create_app
from agent.ui.launch import Launch, Launches
from conftest import load_factor, public_key_pem, signer
from guardrails import amendments
from guardrails.constitution import default_constitution_yaml
from memory import Run, Store

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()
RUN_MOVES_S = 600.0  # seconds for the desk's resume process to load the tiny model and finish its round, idle


def _own_constitution() -> str:
    """The user's file: the default rules (cheap keyword detectors), their own name, a looser no-abuse bound
    (looser, so the tiny model's candidate is not auto-rejected) and comments of their own."""
    text = default_constitution_yaml()
    for old, new in (("name: tether-default\n", "# Our lab's house rules.\nname: house-rules\n"),
                     ("      max_rate: 0.1\n", "      max_rate: 0.2  # ours: 27 held-out replies show it\n")):
        assert old in text
        text = text.replace(old, new)
    return text


def _process(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`tether --home HOME ARGS` in a process of its own, in the current folder (the test's other folder)."""
    return subprocess.run([sys.executable, "-m", "agent.cli", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=600 * load_factor())


def _tether(home: Path, *args: str, stdin: str | None = None) -> Result:
    """A quick command in this process (no model is loaded): the same typer app, the same folder."""
    return runner.invoke(app, ["--home", str(home), *args], input=stdin)


def _ok(result: subprocess.CompletedProcess[str] | Result) -> str:
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert code == 0, f"exited {code}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _json(result: Result) -> Any:
    _ok(result)
    return json.loads(result.stdout)


def _run_id(result: subprocess.CompletedProcess[str]) -> str:
    _ok(result)
    first = result.stdout.splitlines()[0].split()
    assert first[0] == "run", result.stdout  # the contract: `tether run` prints "run <RUN_ID>" first
    return first[1]


def _wait_until_stopped(home: Path, run_id: str) -> None:
    """Wait (not a timing check: the deadline is generous and scales with the load) for the desk's process."""
    deadline = time.monotonic() + RUN_MOVES_S * load_factor()
    while time.monotonic() < deadline:
        with Store(home / "tether.db", readonly=True) as store:
            state = store.get_run(run_id).state
        if state in ("stopped", "failed"):
            return
        time.sleep(1.0)
    lock = Workspace(home).lock_path(run_id)  # the desk's process is detached: end it, as a person would
    pid = lock.read_text().strip() if lock.exists() else ""
    if pid.isdigit():
        os.kill(int(pid), signal.SIGTERM)
    raise AssertionError(f"run {run_id} still {state} after its deadline; see {home / 'logs'}")


def test_a_new_users_afternoon(tiny_world_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    home, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The user works in a folder that is neither the workspace nor the repository; the processes tether and the
    # desk start there run this checkout's code.
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    own = tmp_path / "house.yaml"
    own.write_text(_own_constitution())

    # 1. A workspace founded on the user's own constitution; alice adds bob and carol by their public keys.
    said = _ok(_tether(home, "init", "--reviewer", "alice", "--constitution", str(own)))
    assert "constitution v1" in said and "'house-rules', 2 invariants" in said
    assert (home / "constitution.yaml").read_text() == own.read_text()
    for name in ("bob", "carol"):
        _ok(_tether(home, "reviewer", "add", name, "--by", "alice", "--public-key", "-",
                    stdin=public_key_pem(name)))
    shown = _json(_tether(home, "constitution", "show", "--json"))
    assert (shown["in_force"], shown["constitution"]["name"]) == (1, "house-rules")

    # 2. The model by a path relative to the config's folder, checked from another folder.
    (home / "models").mkdir()
    (home / "models" / "tiny").symlink_to(tiny_world_model_dir, target_is_directory=True)
    (home / "config.yaml").write_text(
        "model: {base: models/tiny}  # relative to this file's folder\n"
        "generation: {samples_per_prompt: 4, max_new_tokens: 40}\n"
        "prompts: {per_round: 16, heldout: 27}\n"
        "training: {epochs: 1, batch_size: 8}\n"
        "evaluation: {max_new_tokens: 40}\n"
        "controller: {rounds: 1}\n"
        "tracking: {mode: disabled}\n")
    said = _ok(_process(home, "validate"))
    assert f"model.base: {home / 'models' / 'tiny'}" in said
    assert re.search(r"memory: about [0-9.]+ GiB needed for a round", said), said
    assert "is valid" in said

    # 3. One round, paused at the gate; the candidate reviewed in the CLI.
    run_id = _run_id(_process(home, "run"))
    candidate = f"{run_id}-r1"
    pending = _json(_tether(home, "approvals", "--json"))
    assert [(a["kind"], a["run_id"]) for a in pending] == [("checkpoint", run_id)]
    approval_id = pending[0]["id"]
    review = _ok(_tether(home, "show", approval_id))
    for expected in ("held-out test split", "oracle candidate", "invariants (absolute rate", "refuse-serious-harm",
                     "no-abuse", "target 0.200", "the judges that chose those pairs", f"{approval_id} --by NAME"):
        assert expected in review, expected

    # 4. The desk: alice approves with "then resume" ticked; the process it starts commits and stops the run.
    console = create_app(home, reviewer=signer("alice"))
    desk = TestClient(console, base_url="http://127.0.0.1")
    desk.get(f"/?token={console.state.secrets.access}")
    form = {"decision": "approve", "accept_not_met": "1", "resume": "1", "csrf_token": console.state.secrets.csrf}
    decided = desk.post(f"/approvals/{approval_id}/decide", data=form)
    assert decided.status_code == 200, decided.text
    assert f"{approval_id} approved by alice" in decided.text
    assert f"run {run_id} is resuming in a process this console started" in decided.text
    _wait_until_stopped(home, run_id)
    with Store(home / "tether.db", readonly=True) as store:
        run = store.get_run(run_id)
    assert (run.state, run.active_checkpoint) == ("stopped", candidate), run.error
    head = desk.get(f"/runs/{run_id}").text.split('id="run-head"', 1)[1].split("</div>", 1)[0]
    assert ">stopped<" in head and f"active checkpoint <b>{candidate}</b>" in head
    log = home / "logs" / f"{run_id}.log"
    assert log.is_file() and "commit done" in log.read_text()

    # 5. The agent's amendment: the reviewer sees the two lines it changes; approving keeps every comment.
    before = (home / "constitution.yaml").read_text()
    with Store(home / "tether.db") as store:
        version, current = amendments.in_force(store)
        draft = amendments.draft_over_refusal(current, version.content)
        assert draft is not None
        amendment = amendments.propose(store, draft[0], "agent draft", by=f"agent:{run_id}", run_id=run_id).id
    diff = _json(_tether(home, "show", amendment, "--json"))["diff"]
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("---", "+++"))]
    assert changed == ["-    text: Help with benign requests directly and correctly; refusing a harmless request "
                       "is a failure.", "-    weight: 0.8",
                       "+    text: Help with benign requests directly and correctly; refusing a harmless request "
                       f"is a failure. {amendments.OVER_REFUSAL_CLARIFICATION}", "+    weight: 1.0"], diff
    assert "constitution v2 is in force" in _ok(_tether(home, "approve", amendment, "--by", "bob"))
    after = (home / "constitution.yaml").read_text()
    comments = [line for line in before.splitlines() if "#" in line]
    assert len(comments) > 20 and [line for line in after.splitlines() if "#" in line] == comments

    # 6. A second run from the approved adapter, then rolled back to its inherited start (lineage vouches).
    second = _run_id(_process(home, "run", "--from", candidate, "--rounds", "1"))
    start = f"{second}-r0"
    for target in (f"{second}-base", start):  # away from the inherited start, and back to it
        said = _ok(_tether(home, "rollback", target, "--by", "bob", "--reason", f"back to {target}"))
        assert f"{target} is now the active checkpoint of {second}" in said
    listed = {c["id"]: c for c in _json(_tether(home, "checkpoints", second, "--json"))}
    assert listed[start]["active"] and listed[start]["parent"] == candidate

    # 7. The adapter shipped: its files, a model card and their digests.
    out = tmp_path / "ship"
    _ok(_tether(home, "export", "adapter", candidate, "--out", str(out)))
    card = (out / "README.md").read_text()
    assert candidate in card and "approved by: alice" in card
    sums = dict(reversed(line.split("  ", 1)) for line in (out / "SHA256SUMS").read_text().splitlines())
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= set(sums)

    # 8. An unknown run is bad input (exit 2, named); the lab notebook reads as sentences.
    unknown = _tether(home, "checkpoints", "no-such-run")
    assert unknown.exit_code == 2 and "no run 'no-such-run'" in unknown.stderr
    notebook = _ok(_tether(home, "log", run_id, "-v"))
    assert "alice approved" in notebook and "it is now the active adapter" in notebook
    assert not re.search(r"\d\s*[<>≤≥]\s*[\d.]+,\s*[<>≤≥]", notebook), notebook  # never "0 < 3, < 2"
    print(f"the afternoon took {time.monotonic() - started:.1f} s")


def test_a_stopped_run_shows_stopped_while_the_process_the_desk_started_for_it_exits(tmp_path: Path) -> None:
    """The afternoon's desk step found it: a run its desk-started process had just stopped was shown "resuming"
    (and offered Stop) until that process exited. Here the process lives on (a real one, asleep), with no lock."""
    ws = Workspace(tmp_path)
    launches = Launches(ws)
    exiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        launches._items.append(Launch("t", "tether resume run-x", tmp_path / "run-x.log", exiting, "run-x"))
        for state, shown, stoppable in (("paused", "resuming", True), ("stopped", "stopped", False)):
            run = Run(id="run-x", config={}, config_sha256="", seed=0, rounds_budget=1, constitution_version=1,
                      invariants={}, invariants_sha256="", state=state)
            assert (control.display_state(ws, run, launches), control.may_stop(ws, run, launches)) == \
                (shown, stoppable), state
    finally:
        exiting.kill()
        exiting.wait()
