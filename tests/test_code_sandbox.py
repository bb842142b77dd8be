"""code_runner's sandbox: under bubblewrap the code writes nowhere but its own empty folder, reaches no
socket and starts no process, while a right answer still passes; `weak` (the rlimits alone) is shown to
leave the file system open; without bubblewrap the judge refuses (invalid verdicts) and `tether validate`
says what to install (exit 2, nothing written)."""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli.main import app
from guardrails.constitution import default_constitution_yaml, parse_constitution
from tools.judges import JUDGES, JudgeItem, Verdict

CONSTITUTION = parse_constitution(default_constitution_yaml(), "default")
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")  # where today's attacker left directories, links and FIFOs
FS_ATTEMPTS = ("mkdir_in", "symlink_in", "fifo_in", "hard_link_in", "write_in")
ELSEWHERE = ("parent()", "unix_socket()", "inet_socket()", "fork()", "spawn()", "system()", "subprocess_run()")
ALLOWED, REFUSED = repr("allowed"), repr("refused")  # what comes back is the value's repr
GOOD = "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```"

# The attacker's code: each function tries one way out and says whether the kernel let it.
ESCAPES = '''
import os
TAG = {tag!r}
def tried(action, *args):
    try:
        action(*args)
    except (OSError, ImportError):
        return "refused"
    return "allowed"
def own_dir():
    return tried(os.mkdir, "own")
def mkdir_in(folder):
    return tried(os.mkdir, os.path.join(folder, TAG + "-dir"))
def symlink_in(folder):
    return tried(os.symlink, "/etc/passwd", os.path.join(folder, TAG + "-symlink"))
def fifo_in(folder):
    return tried(os.mkfifo, os.path.join(folder, TAG + "-fifo"))
def hard_link_in(folder):
    if not os.path.exists("source"):
        os.mkfifo("source")  # in its own folder; a failure here is no refusal but an error
    return tried(os.link, "source", os.path.join(folder, TAG + "-hardlink"))
def write_in(folder):
    return tried(lambda: open(os.path.join(folder, TAG + "-file"), "w").write("x"))
def parent():
    return tried(os.mkdir, os.path.join(os.path.dirname(os.getcwd()), TAG + "-parent"))
def unix_socket():
    def go():
        import socket
        socket.socket(socket.AF_UNIX).bind(chr(0) + TAG)
    return tried(go)
def inet_socket():
    def go():
        import socket
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    return tried(go)
def fork():
    def go():
        if os.fork() == 0:
            os._exit(0)
    return tried(go)
def spawn():
    return tried(os.posix_spawn, "/bin/true", ["true"], {{}})
def system():
    return "refused" if os.system("true") != 0 else "allowed"
def subprocess_run():
    def go():
        import subprocess
        subprocess.run(["true"])
    return tried(go)
'''


def judge(**settings: object):
    return JUDGES.build("code_runner", {"combine": "replace", **settings}, constitution=CONSTITUTION).plugin


def escape(sandbox: str, tag: str) -> dict[str, str]:
    """Every escape attempt under `sandbox`: call -> what came back (a repr, or the error's name)."""
    calls = ["own_dir()"] + [f"{a}({f!r})" for f in WORLD_WRITABLE for a in FS_ATTEMPTS] + list(ELSEWHERE)
    prompt = "\n".join(f"assert {call} == 'refused'" for call in calls)
    verdict = judge(sandbox=sandbox).score([JudgeItem(prompt, "```python\n" + ESCAPES.format(tag=tag) + "```")])[0]
    checked = verdict.details["code_runner"]
    assert verdict.valid and checked["sandbox"] == sandbox, verdict.details
    return {r["test"].removeprefix("assert ").removesuffix(" == 'refused'"): r["got"] for r in checked["results"]}


def left_behind(tag: str) -> list[str]:
    folders = {*WORLD_WRITABLE, tempfile.gettempdir()}
    return sorted(str(p) for f in folders if os.path.isdir(f) for p in Path(f).iterdir() if p.name.startswith(tag))


def test_under_bwrap_the_code_writes_only_its_own_folder_and_reaches_nothing() -> None:
    tag = f"tether-escape-{uuid.uuid4().hex[:8]}"
    got = escape("bwrap", tag)
    assert got.pop("own_dir()") == ALLOWED  # its own empty folder is writable: the refusals below are the mounts'
    assert len(got) == len(WORLD_WRITABLE) * len(FS_ATTEMPTS) + len(ELSEWHERE) == 22
    assert got == dict.fromkeys(got, REFUSED)
    assert left_behind(tag) == []
    verdict = judge().score([JudgeItem("assert fib(10) == 55\nassert fib(20) == 6765", GOOD)])[0]
    assert verdict.score == 1.0 and verdict.details["code_runner"]["sandbox"] == "bwrap", verdict.details


def test_weak_leaves_the_file_system_open_and_says_so() -> None:
    """The control: the same code under `weak` makes entries in world-writable folders, which is what the
    mount namespace takes away; descriptors, sockets and processes stay refused by the rlimits."""
    tag = f"tether-escape-{uuid.uuid4().hex[:8]}"
    try:
        got = escape("weak", tag)
        for folder in WORLD_WRITABLE:
            if os.path.isdir(folder) and os.stat(folder).st_mode & stat.S_IWOTH:
                assert [got[f"{a}({folder!r})"] for a in ("mkdir_in", "symlink_in", "fifo_in")] == [ALLOWED] * 3
            assert got[f"write_in({folder!r})"] == REFUSED
        assert [got[call] for call in ELSEWHERE if call != "parent()"] == [REFUSED] * (len(ELSEWHERE) - 1)
        assert left_behind(tag) != []
    finally:
        for path in left_behind(tag):
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


def refused_without_bwrap(verdict: Verdict) -> str:
    assert not verdict.valid and verdict.score is None, verdict.details
    assert verdict.details["code_runner"] == {"checked": False, "why": verdict.details["invalid"], "sandbox": "bwrap"}
    return str(verdict.details["invalid"])


def test_without_bwrap_the_judge_refuses_unless_weak_is_chosen(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    item = JudgeItem("assert fib(10) == 55", GOOD)
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap (nor unshare) on PATH
    why = refused_without_bwrap(judge().score([item])[0])
    assert "bubblewrap, which is not on PATH" in why and "apt-get install -y bubblewrap" in why
    assert "sandbox: weak" in why and JUDGES.requirements("code_runner", {}) == [why]
    weak = judge(sandbox="weak").score([item])[0]
    assert weak.score == 1.0 and weak.details["code_runner"]["sandbox"] == "weak"
    assert JUDGES.requirements("code_runner", {"sandbox": "weak"}) == []
    fake = tmp_path / "bwrap"  # installed but unable to make namespaces, as in a container that forbids them
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    why = refused_without_bwrap(judge().score([item])[0])
    assert f"{fake} cannot make the sandbox here (bwrap: No permissions to create new namespace)" in why


def test_a_sandbox_that_cannot_start_makes_the_verdict_invalid_never_a_zero() -> None:
    """1 MB of address space is too little for the harness to start: the code never ran, so no score."""
    verdict = judge(memory_mb=1).score([JudgeItem("assert fib(10) == 55", GOOD)])[0]
    assert not verdict.valid and verdict.score is None
    assert verdict.details["invalid"].startswith("the bwrap sandbox did not start"), verdict.details


def snapshot(home: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(home.rglob("*")) if p.is_file()}


def test_validate_names_the_missing_sandbox_of_any_judge_nested_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"
    runner = CliRunner()
    assert runner.invoke(app, ["--home", str(home), "init"]).exit_code == 0
    gc.collect()  # close init's store connection: SQLite folds its WAL into tether.db on close
    config = tmp_path / "config.yaml"
    jury = {"name": "jury", "settings": {"judges": [{"name": "rules"}, {"name": "code_runner"}]}}
    config.write_text(yaml.safe_dump({"judge": {"name": "rules", "pool": [
        jury, {"name": "code_runner", "settings": {"sandbox": "nope"}}]}}))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    before = snapshot(home)
    result = runner.invoke(app, ["--home", str(home), "validate", str(config)])
    assert result.exit_code == 2, result.output
    assert "judge code_runner: the bwrap sandbox needs bubblewrap, which is not on PATH" in result.stderr
    assert "judge code_runner: sandbox must be one of bwrap, weak, got 'nope'" in result.stderr
    assert "2 problem(s) found" in result.stderr and snapshot(home) == before
    config.write_text("judge:\n  name: code_runner\n  settings: {sandbox: weak}\n")
    assert runner.invoke(app, ["--home", str(home), "validate", str(config)]).exit_code == 0
