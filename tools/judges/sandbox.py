"""Where the `code_runner` judge runs a response's code: the command put before the interpreter.

Two sandboxes, named by the judge's `sandbox` setting:

- `bwrap` (default): bubblewrap (https://github.com/containers/bubblewrap) makes a mount namespace whose
  root is an empty, read-only tmpfs holding read-only binds of the system's program and library folders
  (/usr, /bin, /sbin, /lib*; /etc/ld.so.cache) and of the interpreter's own prefix, a fresh read-only /dev
  (null, zero, urandom, ...), no /proc, and one writable folder, `/sandbox`: an empty tmpfs of WORKDIR_BYTES,
  the working directory, gone when the run ends. /tmp, /dev/shm, /var/tmp, the workspace, home folders and
  every other host path are absent or read-only, so mkdir, symlink, mkfifo, hard links and renames fail
  outside `/sandbox`. It also unshares the network (no interface up), IPC, PID, UTS and cgroup namespaces,
  starts a new session (no terminal to inject into) and dies with its parent. Run as root it keeps only
  CAP_SETUID and CAP_SETGID, which the harness spends dropping to `nobody`; run as another user it makes a
  user namespace (unprivileged user namespaces must be allowed) in which no further user namespace can be
  made (`--disable-userns`).
- `weak`: no mount namespace: the code can create directories, symlinks and FIFOs in any folder its user can
  write (e.g. /tmp). A network namespace of its own where `unshare` can make one (`unshare -n` as root,
  `unshare -rn` with unprivileged user namespaces otherwise), else none.

Without bubblewrap, or where it cannot make its namespaces, `bwrap` refuses: `get_sandbox` raises
`SandboxUnavailable` naming what is missing and how to install it, and `requirements` reports it to
`tether validate`. Nothing falls back to `weak` unless the config says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from tether_types import EXIT_USAGE, TetherError

SandboxKind = Literal["bwrap", "weak"]
KINDS: tuple[SandboxKind, ...] = ("bwrap", "weak")
DEFAULT: SandboxKind = "bwrap"
WORKDIR = "/sandbox"  # the one writable folder inside the bwrap sandbox
WORKDIR_BYTES = 1 << 20  # its size: the code cannot open files, so it holds directory entries at most
FIX = ("install bubblewrap (as root: apt-get install -y bubblewrap; `make test` and `make demo` do it), or accept "
       "a sandbox that does not isolate the file system with the judge setting `sandbox: weak`")
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxUnavailable(TetherError, RuntimeError):
    """The configured sandbox cannot be made on this machine; the message says why and what to do."""
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Sandbox:
    kind: SandboxKind
    prefix: tuple[str, ...]  # the command before the interpreter
    interpreter: str  # the Python to run (a path the sandbox can see)
    network: str  # "namespace" | "descriptor limit"


def get_sandbox(kind: SandboxKind) -> Sandbox:
    """The sandbox `kind` on this machine; raises SandboxUnavailable when it is `bwrap` and bwrap cannot run."""
    if kind == "weak":
        prefix = _network_prefix()
        return Sandbox("weak", prefix, sys.executable, "namespace" if prefix else "descriptor limit")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(f"the bwrap sandbox needs bubblewrap, which is not on PATH: {FIX}")
    prefix, interpreter = _bwrap_prefix(bwrap), os.path.realpath(sys.executable)
    problem = _probe(prefix, interpreter)
    if problem is not None:
        raise SandboxUnavailable(f"{bwrap} cannot make the sandbox here ({problem}); as a user other than root it "
                                 f"needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                                 f"or an AppArmor profile that allows bwrap them); else {FIX}")
    return Sandbox("bwrap", prefix, interpreter, "namespace")


def requirements(settings: Mapping[str, Any]) -> list[str]:
    """What this machine lacks for a code_runner with `settings` (its registry `requires` hook, run by
    `tether validate` and a run's pre-flight)."""
    kind = settings.get("sandbox", DEFAULT)
    if kind not in KINDS:
        return [f"sandbox must be one of {', '.join(KINDS)}, got {kind!r}"]
    try:
        get_sandbox(kind)
    except SandboxUnavailable as err:
        return [str(err)]
    return []


def _interpreter_roots(interpreter: str) -> list[str]:
    """The folders the interpreter needs besides the system's: its installation prefix (stdlib and
    extension modules), and a virtual environment's folder when the interpreter is a copy inside one."""
    roots = [os.path.realpath(sys.base_prefix)]
    if not interpreter.startswith(roots[0] + os.sep):
        roots.append(os.path.dirname(os.path.dirname(interpreter)))
    return [r for r in roots if not any(r == top or r.startswith(top + os.sep) for top in _SYSTEM)]


def _bwrap_prefix(bwrap: str) -> tuple[str, ...]:
    args = [bwrap]
    for top in _SYSTEM:  # a merged /usr makes /bin, /lib, ... symlinks: recreate them as such
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]  # where the loader finds libraries
    for root in _interpreter_roots(os.path.realpath(sys.executable)):
        args += ["--ro-bind", root, root]
    args += ["--dev", "/dev", "--size", str(WORKDIR_BYTES), "--perms", "0777", "--tmpfs", WORKDIR,
             "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKDIR,
             "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:  # no user namespace: the harness drops to the host's nobody, so RLIMIT_NPROC binds
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    return (*args, "--")


@cache
def _probe(prefix: tuple[str, ...], interpreter: str) -> str | None:
    """None when `prefix` starts the interpreter, else what went wrong (once per prefix and process)."""
    try:
        done = subprocess.run([*prefix, interpreter, "-I", "-S", "-c", "pass"], capture_output=True, timeout=60,
                              check=False, env={})
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    if done.returncode == 0:
        return None
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return (lines[-1] if lines else f"exit status {done.returncode}")[:300]


@cache
def _network_prefix() -> tuple[str, ...]:
    """The `weak` sandbox's command prefix: a network namespace of its own where this machine allows one,
    `unshare -n` as root (the code then runs as nobody), `unshare -rn` otherwise; else none."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    prefix = (unshare, "-n") if os.geteuid() == 0 else (unshare, "-rn")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    return prefix if probe.returncode == 0 else ()
