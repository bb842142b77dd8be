"""Confined inputs: every file a run reads because a config or a constitution names it.

A config, a constitution, a world's data files and an invariant's probe file are names someone else may
have written, in a workspace someone else may have prepared. `confine` is the one gate they all pass:
the path, symlinks followed, must resolve inside the workspace or a data root the config lists
(`inputs.roots`), never inside a reviewer key folder (the key folder from $TETHER_KEYS_DIR and the
default one: private keys, trust pins), and be a regular file or folder (no device, FIFO or socket).
Line-based files are then read in bounded pieces (`read_lines`): a line over `InputLimits.line_bytes`
or a file over `InputLimits.file_bytes` is refused, naming the file and the line, before it is held in
memory whole.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from guardrails import keys
from tether_types import EXIT_USAGE, TetherError

MAX_LINE_BYTES = 1024 * 1024  # 1 MiB: a prompt, a probe or a record is text a person could read
MAX_FILE_BYTES = 256 * 1024 * 1024  # 256 MiB: a prompt set that large is a wrong path, not a data set
ROOTS_FIX = "copy it into the workspace, or add its folder to the config's data roots (inputs.roots)"


class InputRefused(TetherError, ValueError):
    """An input file that is outside where a run may read, or breaks a size limit: one line naming the
    file, where it resolved to and the fix."""
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class InputLimits:
    line_bytes: int = MAX_LINE_BYTES
    file_bytes: int = MAX_FILE_BYTES


@dataclass(frozen=True)
class Inputs:
    """Where a run may read its named inputs from, and how much of them."""

    workspace: Path
    roots: tuple[Path, ...] = ()
    keys_dirs: tuple[Path, ...] = field(default_factory=lambda: key_folders())
    limits: InputLimits = InputLimits()

    def locate(self, name: str, label: str) -> Path:
        """`name` as a config or constitution writes it (relative: to the workspace), confined."""
        given = Path(name).expanduser()
        path = given if given.is_absolute() else self.workspace / given
        return confine(path, (self.workspace, *self.roots), self.keys_dirs, label)


def key_folders() -> tuple[Path, ...]:
    """The reviewer key folders no input may come from: this user's ($TETHER_KEYS_DIR) and the default."""
    return tuple(dict.fromkeys((keys.resolve_keys_dir().resolve(), keys.default_keys_dir().resolve())))


def confine(path: Path, roots: Sequence[Path], keys_dirs: Sequence[Path], label: str, *,
            fix: str = ROOTS_FIX) -> Path:
    """`path` resolved (symlinks followed) when it lies inside one of `roots` and touches no key folder;
    InputRefused naming it, where it resolved to and `fix` otherwise. A path that does not exist is returned
    for its reader to report."""
    resolved = path.resolve()
    where = f"{label}: {path}" + (f" resolves to {resolved}, which is" if resolved != path else " is")
    for folder in (k.resolve() for k in keys_dirs):
        if resolved.is_relative_to(folder) or folder.is_relative_to(resolved):
            raise InputRefused(f"{where} inside the reviewer key folder {folder}: tether never reads a key "
                               "folder as input; point it at a data file in the workspace")
    allowed = [r.resolve() for r in roots]
    if not any(resolved.is_relative_to(r) for r in allowed):
        raise InputRefused(f"{where} outside every folder it may be read from ({', '.join(map(str, allowed))}): "
                           + fix)
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        return resolved
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputRefused(f"{where} not a regular file (a device, FIFO or socket): point it at a data file")
    return resolved


def check_size(path: Path, limits: InputLimits, label: str) -> int:
    """The size of a file (or of every file under a folder); InputRefused when it is over the limit."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    size = sum(p.stat().st_size for p in files)
    if size > limits.file_bytes:
        raise InputRefused(f"{label}: {path} is {_mib(size)}, over the {_mib(limits.file_bytes)} limit for an input "
                           "file (inputs.max_file_bytes): point it at the right file, or raise the limit")
    return size


def read_lines(path: Path, limits: InputLimits, label: str) -> Iterator[tuple[int, bytes]]:
    """(line number, the line's bytes with its ending) of a file, read a line at a time and never more
    than `limits.line_bytes` of one: InputRefused naming the file and line at the first line over the
    limit, and when the bytes read pass `limits.file_bytes` (a file growing while read too)."""
    check_size(path, limits, label)
    total = 0
    with path.open("rb") as fh:
        number = 0
        while line := fh.readline(limits.line_bytes + 2):  # content + "\r\n" at most
            number += 1
            total += len(line)
            if total > limits.file_bytes:
                raise InputRefused(f"{label}: {path} passed the {_mib(limits.file_bytes)} limit for an input file "
                                   f"(inputs.max_file_bytes) at line {number}")
            if len(_content(line)) > limits.line_bytes:
                raise InputRefused(f"{label}: {path} line {number} is longer than the {limits.line_bytes} bytes "
                                   "an input line may hold (inputs.max_line_bytes): split the record, or raise "
                                   "the limit")
            yield number, line


def _content(line: bytes) -> bytes:
    """A line without its ending ("\\n" or "\\r\\n"); a line cut at the read limit keeps all its bytes."""
    if line.endswith(b"\r\n"):
        return line[:-2]
    return line[:-1] if line.endswith(b"\n") else line


def _mib(n: int) -> str:
    if n < 2**20:
        return f"{n} bytes"
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"
