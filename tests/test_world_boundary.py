"""The tiny world is one World among others: nothing outside tools/worlds/tiny/ imports its code.

Every room reaches it through the `World` protocol and the `WORLDS` registry (tools/worlds/base.py).
The one import from outside is the registration in tools/worlds/__init__.py, which imports the
package (and no name from it), as judges and monitors register theirs. Tests and benchmarks are
harnesses, not rooms: they may exercise the tiny world directly.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("agent", "policies", "guardrails", "memory", "tools")
TINY = "tools.worlds.tiny"
TINY_DIR = REPO / "tools" / "worlds" / "tiny"
REGISTRATION = REPO / "tools" / "worlds" / "__init__.py"


def _module_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    return _module_of(path) if path.name == "__init__.py" else _module_of(path).rpartition(".")[0]


def _imported(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import, each `from X import a, b` also as X.a and X.b (a submodule), relative
    imports resolved against `package`, and those inside functions too (a lazy import is still an import)."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def _is_tiny(module: str) -> bool:
    return module == TINY or module.startswith(f"{TINY}.")


def test_nothing_outside_the_tiny_world_imports_it() -> None:
    offenders = []
    for room in ROOMS:
        for path in sorted((REPO / room).rglob("*.py")):
            if TINY_DIR in path.parents:
                continue
            for line, module in _imported(path.read_text(), _package_of(path)):
                if not _is_tiny(module):
                    continue
                if path == REGISTRATION and module == TINY:  # `from tools.worlds import tiny` registers it
                    continue
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert offenders == []


def test_the_registration_imports_the_package_only() -> None:
    tiny = [m for _, m in _imported(REGISTRATION.read_text(), "tools.worlds") if _is_tiny(m)]
    assert tiny == [TINY]


def test_the_check_sees_a_lazy_and_a_relative_import() -> None:
    # The rule must be able to fail: a function-level import and a relative one are both found.
    source = "def f():\n    from tools.worlds.tiny.model import TinySpec\n    from .tiny import families\n"
    assert [m for _, m in _imported(source, "tools.worlds") if _is_tiny(m)] == [
        "tools.worlds.tiny.model", "tools.worlds.tiny.model.TinySpec", "tools.worlds.tiny",
        "tools.worlds.tiny.families"]
    assert [m for _, m in _imported("import tools.worlds.tiny.families\n", "agent") if _is_tiny(m)] == [
        "tools.worlds.tiny.families"]
