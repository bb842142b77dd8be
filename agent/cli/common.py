"""Shared CLI plumbing: the workspace option, exit codes, JSON and table output, and the one place
where errors become a message and an exit code: a `TetherError` from any command (its message, its fix,
its exit code), and a failure of the machine (a full disk, a read-only or locked workspace).

Everything printed here is literal: user and stored strings (names, notes, reasons, summaries, paths)
are rich `Text`, never markup, so `--by '[/]'` prints as typed and cannot crash the output.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from agent.run.workspace import Workspace, environment_problem, resolve_home
from guardrails import keys
from guardrails.errors import GuardrailError
from memory import Store
from memory.base import BUSY_TIMEOUT_MS, SchemaOutdatedError
from tether_types import EXIT_CHECK_FAILED, EXIT_USAGE, TetherError

# Piped output (a log, another program) gets wide tables instead of rich's 80-column default.
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@dataclass
class CliState:
    home: Path | None = None
    busy_timeout_ms: int = BUSY_TIMEOUT_MS


def fail(message: str, code: int = EXIT_USAGE, hint: str = "") -> NoReturn:
    """`error: MESSAGE` on stderr (and `fix: HINT` after it, when given), then exit `code`."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    if hint:
        err_console.print(Text.assemble(("fix:", "bold"), " ", hint), soft_wrap=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """Progress and narration go to stderr so stdout stays clean for --json. Printed literally."""
    err_console.print(Text(message), soft_wrap=True)


def say_check(ok: bool, message: str) -> None:
    """`message` after a green ✓ or a red ✗; the message itself is printed literally."""
    mark = ("✓", "green") if ok else ("✗", "red")
    err_console.print(Text.assemble(mark, " ", message), soft_wrap=True)


def workspace(ctx: typer.Context) -> Workspace:
    state: CliState = ctx.ensure_object(CliState)
    return Workspace(resolve_home(state.home))


def open_store(ctx: typer.Context, *, readonly: bool = False, witness: bool = True) -> tuple[Workspace, Store]:
    """The workspace and its store. Commands that only read pass readonly=True: they then work on a
    read-only workspace and never write, except that a schema older than this tether is upgraded
    first when the workspace is writable (as it always was). A person's command witnesses the audit head
    when it ends (guardrails/trust.py); the run's own commands (`run`, `resume`) pass witness=False."""
    ws = workspace(ctx)
    ws.require()
    timeout = ctx.ensure_object(CliState).busy_timeout_ms
    if witness:
        ctx.call_on_close(lambda: _witness(ws, timeout, ctx.command_path))
    if not readonly:
        return ws, Store(ws.db_path, busy_timeout_ms=timeout)
    try:
        return ws, Store(ws.db_path, busy_timeout_ms=timeout, readonly=True)
    except SchemaOutdatedError as outdated:
        try:
            Store(ws.db_path, busy_timeout_ms=timeout).close()
        except (sqlite3.OperationalError, OSError) as err:
            fail(f"{outdated}; opening it writable failed: {environment_problem(err, ws.home) or err}",
                 EXIT_CHECK_FAILED)
    return ws, Store(ws.db_path, busy_timeout_ms=timeout, readonly=True)


def _witness(ws: Workspace, timeout_ms: int, command: str) -> None:
    """Record the audit head this command leaves behind in the reviewer's folder, where the workspace's
    writers do not reach. Only for a workspace this folder pinned; a failure to write is said, not fatal."""
    from guardrails import trust

    try:
        with Store(ws.db_path, busy_timeout_ms=timeout_ms, readonly=True) as store:
            workspace_id = store.meta("workspace_id")
            if workspace_id is not None and trust.load(workspace_id) is not None:
                trust.record(store, workspace_id, command)
    except (OSError, sqlite3.Error, GuardrailError) as err:
        say(f"warning: the audit head was not witnessed in {trust.folder()}: {err}")


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table whose title and cells print literally: each is a `Text` (a caller may pass a styled
    `Text` of its own); None prints as an empty cell."""
    table = Table(title=Text(title), title_justify="left")
    for column in columns:
        table.add_column(Text(column), overflow="fold")
    for row in rows:
        table.add_row(*[v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row])
    out_console.print(table)


class SignerRefused(TetherError):
    """A name or key that cannot decide; the message says why (and how to fix it). CLI exit 1."""


class SignerNameInvalid(SignerRefused):
    """A NAME that is no name at all ('', markup, spaces): bad input, refused before anything is written."""
    exit_code = EXIT_USAGE


def require_name(name: str) -> None:
    """SignerNameInvalid (exit 2) for a --by that is no name at all: no one's attempt, so nothing is written.
    The software's own actors (`tether`, `agent:RUN`) are names, and their attempts are audited."""
    actor = name.lower() in keys.RESERVED_NAMES or name.lower().startswith("agent:")
    if not actor and keys.NAME_PATTERN.match(name) is None:
        raise SignerNameInvalid(f"--by {keys.name_problem(name)}; nothing was written")


def signer(store: Store, name: str, subject: str | None = None) -> keys.Signer:
    """The private key of reviewer `name` from the user's key folder (never the workspace), with its
    passphrase from $TETHER_KEY_PASSPHRASE or a prompt. A name or key that cannot decide raises
    SignerRefused (exit 1) and, when it concerns a subject, is audited: a refused decision. A malformed
    name is not a decision by anyone: SignerNameInvalid (exit 2), nothing written."""
    require_name(name)
    problem = keys.name_problem(name)
    folder = keys.resolve_keys_dir()
    if problem is None and not keys.has_key(folder, name):
        problem = (f"no private key for '{name}' in {folder}: only a registered reviewer signs (set "
                   f"${keys.KEYS_ENV}, or have a reviewer run `tether reviewer add {name}`)")
    if problem is None:
        try:
            return keys.load_key(folder, name, _passphrase(folder, name))
        except keys.KeyStoreError as err:
            problem = str(err)
    if subject is not None:
        store.append_audit("tether", "decision.refused", subject, {"by": name, "reason": problem})
    raise SignerRefused(problem)


def _passphrase(folder: Path, name: str) -> str | None:
    env = os.environ.get(keys.PASSPHRASE_ENV)
    if env is not None:
        return env
    if keys.is_encrypted(folder, name) and sys.stdin.isatty():
        return getpass.getpass(f"passphrase for reviewer key '{name}': ")
    return None


class TetherGroup(TyperGroup):
    """The root command group and the one place where errors become exit codes: every command runs
    inside it, so a `TetherError` from anywhere ends as `error: MESSAGE` (and its fix) on stderr and its
    exit code, and an environment failure from anywhere (the store, the graph checkpointer, a file
    write) as one line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TetherError as err:
            fail(str(err), err.exit_code, err.hint)
        except (sqlite3.OperationalError, OSError) as err:
            state = ctx.find_object(CliState)
            home = Workspace(resolve_home(state.home if state else None)).home
            problem = environment_problem(err, home)
            if problem is None:
                raise
            fail(problem, EXIT_CHECK_FAILED)
