"""Shared CLI plumbing: the workspace option, exit codes, JSON and table output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from agent.workspace import Workspace, WorkspaceError, resolve_home
from memory import Store

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2

# Piped output (a log, another program) gets wide tables instead of rich's 80-column default.
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@dataclass
class CliState:
    home: Path | None = None


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """Progress and narration go to stderr so stdout stays clean for --json."""
    err_console.print(message, soft_wrap=True)


def workspace(ctx: typer.Context) -> Workspace:
    state: CliState = ctx.ensure_object(CliState)
    return Workspace(resolve_home(state.home))


def open_store(ctx: typer.Context) -> tuple[Workspace, Store]:
    ws = workspace(ctx)
    try:
        ws.require()
    except WorkspaceError as err:
        fail(str(err))
    return ws, Store(ws.db_path)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    out_console.print(table)
