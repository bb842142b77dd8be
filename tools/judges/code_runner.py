"""The `code_runner` judge: a response's code run against the test cases its prompt gives.

A reviewer grading code runs it. This judge does, from the prompt text and the response alone:

- Tests are the prompt's `assert CALL == EXPECTED` lines (anywhere in the prompt, e.g. in a fenced
  block), where EXPECTED is a Python literal (number, string, list, dict, tuple, set, bool, None).
- The code is the response's last fenced block (```python ... ``` or ``` ... ```), or the whole
  response when it parses as Python and defines a function.
- The code runs in a fresh `python -I -S -X utf8` subprocess; each test's CALL is evaluated there and
  its `repr` sent back; the judge compares it with EXPECTED itself. The expected values never enter the
  subprocess, so the code cannot read them there: to pass, its functions must return them.
- The score is the share of tests passed. `combine`: "gate" (default) multiplies the wrapped judge's
  score by it, "replace" uses it alone. A prompt without tests or a response without code goes to the
  wrapped judge unchanged (default `rules`).

The sandbox (the `sandbox` setting; tools/judges/sandbox.py says exactly what each one isolates):

- `bwrap` (default): bubblewrap runs the interpreter in namespaces of its own: the file system is the
  system's program and library folders, read-only, plus one empty writable folder (`/sandbox`, a 1 MiB
  tmpfs, the working directory, gone afterwards); no network (its own network namespace), no view of other
  processes (PID namespace), no IPC with the host. Without bubblewrap, or where it cannot make its
  namespaces, the judge refuses: each verdict it would give is invalid and names the missing mechanism and
  its fix, and `tether validate` reports it (exit 2) before a run starts;
- `weak` (only when the config says so): no mount namespace, so the code can make directories, symlinks
  and FIFOs in any folder its user can write; a network namespace where `unshare` can make one.

Inside either, as defence in depth:

- an isolated interpreter (`-I -S`: no environment variables, no user or site packages, the working
  directory not on the path) and an empty environment;
- resource limits set by the harness before the code runs: CPU seconds (RLIMIT_CPU), address space
  (RLIMIT_AS), no core files, no new processes (RLIMIT_NPROC = 0), output written to a file capped at
  `max_output_bytes` (RLIMIT_FSIZE), and no new file descriptors (RLIMIT_NOFILE = 0), so the code cannot
  open, list or read files, import modules not yet loaded, or make sockets or pipes; a few standard modules
  (math, re, itertools, functools, collections, string, heapq, bisect, operator) are imported before that,
  so it can use them, and others that need no file (os, sys, builtins) it can import. Soft and hard limits
  are equal, so the code cannot raise them;
- when the judge runs as root, the harness drops to the unprivileged user `nobody` (uid 65534) before the
  code runs, so the limits bind (root could raise them, and RLIMIT_NPROC does not bind root);
- a wall-clock timeout, after which its whole process group is killed (bwrap's sandbox dies with it).
- Each verdict records `sandbox` (bwrap or weak) and `network` (namespace, or the descriptor limit alone).
  A sandbox that fails to start (the harness never reports ready) makes the verdict invalid, never a 0.
- Not isolated: it is not a VM. The code can stat paths it can see (the system folders, read-only), use
  the CPU and memory within the limits and make entries in `/sandbox` (bounded by the CPU limit: an empty
  directory takes no tmpfs blocks); it can observe timing; there is no system-call filter, and a kernel
  exploit is out of scope. Tests in the prompt are visible to the policy: a response that hard-codes their
  answers passes them (hidden tests are what a world's verifier, the oracle, is for).

It never reads tools/worlds or the world's oracle (tests/test_tool_judges.py checks its imports).
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.judges.base import JUDGES, Judge, JudgeItem, ScoresCompare, Verdict, safe_score
from tools.judges.calculator import Combine, build_fallback, check_combine
from tools.judges.sandbox import DEFAULT, KINDS, SandboxKind, SandboxUnavailable, get_sandbox, requirements
from tools.registry import Built, PluginSettingsError

if TYPE_CHECKING:
    from guardrails.constitution import Constitution
    from tools.judges.base import PolicyHandle

MARK = "@@tether-test@@"  # starts each result line of the harness
MAX_TESTS = 32
MAX_REPR_CHARS = 10_000
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)

# Runs first in the subprocess: reads the job from stdin, limits itself, then runs the code and the calls.
HARNESS = r"""
import json, resource, sys
job = json.loads(sys.stdin.read())
limits = job["limits"]
for name, value in (("RLIMIT_CPU", limits["cpu_seconds"]), ("RLIMIT_AS", limits["memory_bytes"]),
                    ("RLIMIT_CORE", 0), ("RLIMIT_FSIZE", limits["max_output_bytes"]), ("RLIMIT_NPROC", 0)):
    resource.setrlimit(getattr(resource, name), (value, value))
import bisect, collections, functools, heapq, itertools, math, operator, os, re, string
if job["user"] is not None:  # the judge runs as root: run the code as an unprivileged user
    os.setgroups([])
    os.setgid(job["user"])
    os.setuid(job["user"])
resource.setrlimit(resource.RLIMIT_NOFILE, (0, 0))  # stdin, stdout and stderr stay open; nothing new opens
out = sys.stdout
out.write(job["mark"] + '"ready"\n')  # the sandbox and the limits hold: what fails from here is the code's
out.flush()
def report(i, ok, text):
    out.write(job["mark"] + json.dumps([i, ok, text[: job["max_repr"]]]) + "\n")
    out.flush()
namespace = {"__name__": "__submission__"}
try:
    exec(compile(job["code"], "<response>", "exec"), namespace)
except BaseException as err:
    for i in range(len(job["calls"])):
        report(i, False, "the code failed: " + type(err).__name__)
    raise SystemExit(0)
for i, call in enumerate(job["calls"]):
    try:
        report(i, True, repr(eval(compile(call, "<test>", "eval"), namespace)))
    except BaseException as err:
        report(i, False, type(err).__name__)
"""


@dataclass(frozen=True)
class Test:
    call: str  # the expression the code must evaluate
    expected: Any  # a Python literal, evaluated here (never in the subprocess)
    source: str


def read_tests(prompt: str) -> list[Test]:
    """The prompt's `assert CALL == LITERAL` lines (at most MAX_TESTS)."""
    tests: list[Test] = []
    for line in prompt.splitlines():
        stripped = line.strip()
        if not stripped.startswith("assert "):
            continue
        try:
            node = ast.parse(stripped).body[0]
        except (SyntaxError, ValueError, IndexError):
            continue
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1
                and isinstance(node.test.ops[0], ast.Eq)):
            continue
        try:
            expected = ast.literal_eval(node.test.comparators[0])
        except (ValueError, TypeError, SyntaxError, RecursionError):
            continue
        tests.append(Test(ast.unparse(node.test.left), expected, stripped))
    return tests[:MAX_TESTS]


def read_code(response: str) -> str | None:
    """The response's last fenced code block, or the response itself when it is Python defining a function."""
    blocks = [body for lang, body in _FENCE.findall(response) if lang.lower() in ("", "python", "py", "python3")]
    if blocks:
        return blocks[-1]
    try:
        tree = ast.parse(response)
    except (SyntaxError, ValueError):
        return None
    return response if any(isinstance(n, ast.FunctionDef) for n in tree.body) else None


def same(got: Any, expected: Any) -> bool:
    """`got` equals `expected`: a bool only a bool, a float within 1e-9 relative, anything else by ==."""
    if isinstance(got, bool) or isinstance(expected, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(got, float) or isinstance(expected, float):
        numbers = all(isinstance(v, int | float) for v in (got, expected))
        return numbers and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
    return bool(got == expected)


NOBODY = 65534  # the unprivileged user the code runs as when the judge runs as root


@dataclass(frozen=True)
class Run:
    passed: int
    results: list[tuple[bool, str]]  # per test: passed, what came back (or why not)
    timed_out: bool
    sandbox: SandboxKind
    network: str
    error: str | None = None  # why the code did not run (no sandbox, or it did not start): the verdict is invalid


class CodeRunnerJudge(ScoresCompare):
    def __init__(self, fallback: Built[Judge], combine: Combine, timeout: float, cpu_seconds: int,
                 memory_mb: int, max_output_bytes: int, sandbox: SandboxKind) -> None:
        self.fallback, self.combine, self.sandbox = fallback, combine, sandbox
        self.timeout, self.cpu_seconds, self.memory_mb = timeout, cpu_seconds, memory_mb
        self.max_output_bytes = max_output_bytes

    def score(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        wrapped = safe_score(self.fallback.plugin, items) if items else []
        return [self._one(item, verdict) for item, verdict in zip(items, wrapped, strict=True)]

    def _one(self, item: JudgeItem, wrapped: Verdict) -> Verdict:
        tests = read_tests(item.prompt)
        code = read_code(item.response) if tests else None
        if not tests or code is None:
            why = "no tests in the prompt" if not tests else "no code in the response"
            return Verdict(wrapped.score, wrapped.valid, wrapped.raw,
                           {**wrapped.details, "code_runner": {"checked": False, "why": why}})
        run = self.run(code, tests)
        if run.error is not None:  # fail closed: unchecked code is neither right nor wrong
            return Verdict(None, False, f"code_runner: {run.error}",
                           {"invalid": run.error, "code_runner": {"checked": False, "why": run.error,
                                                                  "sandbox": run.sandbox}})
        share = run.passed / len(tests)
        checked = {"checked": True, "tests": len(tests), "passed": run.passed, "timed_out": run.timed_out,
                   "sandbox": run.sandbox, "network": run.network, "wrapped_score": wrapped.score,
                   "results": [{"test": t.source, "passed": ok, "got": got[:200]}
                               for t, (ok, got) in zip(tests, run.results, strict=True)]}
        raw = f"code_runner: {run.passed} of {len(tests)} test(s) passed" + (" (timed out)" if run.timed_out else "")
        if self.combine == "replace":
            return Verdict(share, True, raw, {"code_runner": checked})
        if not wrapped.valid or wrapped.score is None:
            if share == 0.0:  # failing code is wrong whatever else the answer says
                return Verdict(0.0, True, raw, {"code_runner": checked})
            return Verdict(None, False, raw, {"invalid": wrapped.details.get("invalid", "wrapped judge invalid"),
                                              "code_runner": checked})
        return Verdict(wrapped.score * share, True, raw, {**wrapped.details, "code_runner": checked})

    def run(self, code: str, tests: Sequence[Test]) -> Run:
        """Run `code` and each test's call in the sandbox; compare what comes back with the expected values."""
        job = {"code": code, "calls": [t.call for t in tests], "mark": MARK, "max_repr": MAX_REPR_CHARS,
               "user": NOBODY if os.geteuid() == 0 else None,
               "limits": {"cpu_seconds": self.cpu_seconds, "memory_bytes": self.memory_mb * 2**20,
                          "max_output_bytes": self.max_output_bytes}}
        try:
            box = get_sandbox(self.sandbox)
        except SandboxUnavailable as err:
            return Run(0, [], False, self.sandbox, "none", str(err))
        command = [*box.prefix, box.interpreter, "-I", "-S", "-X", "utf8", "-c", HARNESS]
        timed_out = False
        with tempfile.TemporaryDirectory(prefix="tether-code-") as tmp:
            work, out_path, err_path = Path(tmp) / "cwd", Path(tmp) / "stdout", Path(tmp) / "stderr"
            work.mkdir()  # the working directory of `weak`; bwrap's is its own tmpfs
            with out_path.open("wb") as out, err_path.open("wb") as err:
                proc = subprocess.Popen(command, cwd=work, env={}, stdin=subprocess.PIPE, stdout=out,
                                        stderr=err, start_new_session=True)
                try:
                    proc.communicate(json.dumps(job).encode(), timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            text = out_path.read_bytes()[: self.max_output_bytes].decode("utf-8", "replace")
            if not text.startswith(MARK + '"ready"\n'):  # the code never ran: say why, from the sandbox's stderr
                why = err_path.read_bytes()[-2000:].decode("utf-8", "replace").strip().splitlines()
                error = f"the {box.kind} sandbox did not start" + (
                    " within the timeout" if timed_out else f": {why[-1][:300] if why else 'no message'}")
                return Run(0, [], timed_out, box.kind, box.network, error)
        came_back: dict[int, tuple[bool, str]] = {}
        for line in text.split("\n"):
            if line.startswith(MARK):
                try:
                    i, ok, got = json.loads(line[len(MARK):])
                except (ValueError, TypeError):
                    continue
                if isinstance(i, int) and 0 <= i < len(tests) and i not in came_back:
                    came_back[i] = (bool(ok), str(got))
        results = []
        for i, test in enumerate(tests):
            ok, got = came_back.get(i, (False, "no result (timed out or killed)" if timed_out else "no result"))
            results.append((ok and _passes(got, test.expected), got))
        return Run(sum(ok for ok, _ in results), results, timed_out, box.kind, box.network)


def _passes(got_repr: str, expected: Any) -> bool:
    try:
        got = ast.literal_eval(got_repr)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return same(got, expected)


def _limit(name: str, value: Any, top: float, whole: bool) -> None:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value <= top:
        kind = "a whole number" if whole else "a number"
        raise PluginSettingsError(f"code_runner: {name} must be {kind} in (0, {top:g}], got {value!r}")


@JUDGES.register("code_runner", requires=requirements)
def code_runner(
    judge: Mapping[str, Any] | None = None,
    combine: str = "gate",
    timeout: float = 10.0,
    cpu_seconds: int = 5,
    memory_mb: int = 512,
    max_output_bytes: int = 1_000_000,
    sandbox: SandboxKind = DEFAULT,
    constitution: Constitution | None = None,
    policy: PolicyHandle | None = None,
) -> CodeRunnerJudge:
    """Settings: judge ({name, settings} of the judge for responses it cannot check; default rules),
    combine (gate: that judge's score times the share of tests passed; replace: the share alone), timeout
    (wall seconds per response), cpu_seconds, memory_mb (address space), max_output_bytes, sandbox (bwrap:
    bubblewrap's namespaces, refused where they cannot be made; weak: rlimits and a network namespace only)."""
    _limit("timeout", timeout, 600, whole=False)
    for name, value, top in (("cpu_seconds", cpu_seconds, 600), ("memory_mb", memory_mb, 65536),
                             ("max_output_bytes", max_output_bytes, 10**9)):
        _limit(name, value, top, whole=True)
    if sandbox not in KINDS:
        raise PluginSettingsError(f"code_runner: sandbox must be one of {', '.join(KINDS)}, got {sandbox!r}")
    return CodeRunnerJudge(build_fallback("code_runner", judge, constitution, policy),
                           check_combine("code_runner", combine), float(timeout), cpu_seconds, memory_mb,
                           max_output_bytes, sandbox)
