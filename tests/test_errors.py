"""One error root: every exception tether defines is a `TetherError` with its exit code and fix, and the
CLI turns one into a message and an exit code in one place (agent/cli/common.py `TetherGroup`); the web
console maps the same exit codes to HTTP statuses in one helper."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
from pathlib import Path

import typer
from typer.testing import CliRunner

from agent.cli.common import TetherGroup
from agent.ui.actions import refusal
from guardrails.errors import DeniedError, GateError, TamperError, TransientError
from tether_types import EXIT_CHECK_FAILED, EXIT_USAGE, TetherError

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("agent", "policies", "guardrails", "tools", "memory")
BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                      if isinstance(value, type) and issubclass(value, BaseException)}


def _files() -> dict[str, Path]:
    files = {"tether_types": REPO / "tether_types.py"}
    for room in ROOMS:
        for path in (REPO / room).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _exception_classes() -> list[type[BaseException]]:
    """Every exception class defined at the top level of a tether module (each module with a class that
    has a base is imported to resolve it)."""
    found: list[type[BaseException]] = []
    for module, path in sorted(_files().items()):
        tree = ast.parse(path.read_text(), str(path))
        names = [node.name for node in tree.body if isinstance(node, ast.ClassDef) and node.bases]
        if not names:
            continue
        loaded = importlib.import_module(module)
        found += [cls for name in names
                  if inspect.isclass(cls := getattr(loaded, name)) and issubclass(cls, BaseException)]
    return found


def test_every_exception_class_derives_from_tether_error() -> None:
    classes = _exception_classes()
    assert len(classes) > 30  # the walk found them (guardrails, memory, policies, tools, agent)
    # A signal turned into an exception (SIGTERM as `Terminated`) is a BaseException like KeyboardInterrupt, on
    # purpose: it must pass every `except Exception` on its way up. It is not an error, so it has no exit code.
    signals = [c for c in classes if not issubclass(c, Exception)]
    assert [c.__qualname__ for c in signals] == ["Terminated"]
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes
               if issubclass(c, Exception) and not issubclass(c, TetherError)]
    assert not outside, f"derive these from tether_types.TetherError (directly or via their room's root): {outside}"
    wrong = [c.__qualname__ for c in classes
             if issubclass(c, TetherError) and c.exit_code not in (EXIT_CHECK_FAILED, EXIT_USAGE)]
    assert not wrong, wrong


def test_no_exception_class_hides_inside_a_function() -> None:
    """A class defined inside a function escapes the walk above: exceptions live at a module's top level."""
    nested = []
    for module, path in _files().items():
        tree = ast.parse(path.read_text(), str(path))
        top = {id(node) for node in tree.body}
        nested += [f"{module}.{node.name}" for node in ast.walk(tree)
                   if isinstance(node, ast.ClassDef) and id(node) not in top
                   and any(isinstance(b, ast.Name) and (b.id in BUILTIN_EXCEPTIONS or b.id.endswith("Error"))
                           for b in node.bases)]
    assert not nested, nested


def _cli_files() -> list[Path]:
    return sorted((REPO / "agent" / "cli").glob("*.py"))


def _only_translates(handler: ast.ExceptHandler) -> bool:
    """`except X as err: fail(str(err), ...)`: a clause that only turns an error into an exit code."""
    if handler.name is None or len(handler.body) != 1 or not isinstance(handler.body[0], ast.Expr):
        return False
    call = handler.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "fail" and call.args):
        return False
    first = call.args[0]
    return (isinstance(first, ast.Call) and isinstance(first.func, ast.Name) and first.func.id == "str"
            and len(first.args) == 1 and isinstance(first.args[0], ast.Name) and first.args[0].id == handler.name)


def _handlers(tree: ast.AST) -> list[tuple[str | None, ast.ExceptHandler]]:
    """Every except clause with the class it is in (None: outside any class)."""
    found: list[tuple[str | None, ast.ExceptHandler]] = []

    def visit(node: ast.AST, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ExceptHandler):
                found.append((cls, child))
            visit(child, child.name if isinstance(child, ast.ClassDef) else cls)

    visit(tree, None)
    return found


def test_the_cli_maps_errors_to_exit_codes_in_one_place() -> None:
    translating, roots = [], []
    for path in _cli_files():
        for cls, handler in _handlers(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(REPO)}:{handler.lineno}"
            if isinstance(handler.type, ast.Name) and handler.type.id == "TetherError":
                roots.append(f"{cls}: {where}")
            elif _only_translates(handler):
                translating.append(where)
    assert not translating, ("these clauses only print the error and exit, which TetherGroup does for every "
                             f"TetherError: remove them (or give the class its exit_code): {translating}")
    assert len(roots) == 1 and roots[0].startswith("TetherGroup:"), roots


class _Stale(TetherError):
    exit_code = EXIT_USAGE
    hint = "run `tether init` again"


def test_a_tether_error_ends_as_its_message_its_fix_and_its_exit_code() -> None:
    app = typer.Typer(cls=TetherGroup, add_completion=False)

    @app.command()
    def stale() -> None:
        raise _Stale("the workspace [b]is[/b] stale")

    @app.command()
    def tampered() -> None:
        raise TamperError("the audit chain is broken at entry 3")

    runner = CliRunner()
    result = runner.invoke(app, ["stale"])
    assert result.exit_code == EXIT_USAGE and isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert lines == ["error: the workspace [b]is[/b] stale", "fix: run `tether init` again"], lines
    result = runner.invoke(app, ["tampered"])
    assert result.exit_code == EXIT_CHECK_FAILED
    assert result.stderr.splitlines() == ["error: the audit chain is broken at entry 3"]
    assert "Traceback" not in result.stderr


def test_the_console_maps_the_same_exit_codes_to_http_statuses() -> None:
    assert refusal(TamperError("forged")).status == 403
    assert refusal(DeniedError("the proposer may not approve")).status == 403
    assert refusal(GateError("not pending")).status == 400
    assert refusal(TransientError("adapter missing")).status == 503
    assert refusal(_Stale("stale")).message == "stale; fix: run `tether init` again"
