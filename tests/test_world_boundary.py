"""The tiny world is one World among others: nothing outside tools/worlds/tiny/ imports its code or
names it or its families.

Every room reaches it through the `World` protocol and the `WORLDS` registry (tools/worlds/base.py).
The one import from outside is the registration in tools/worlds/__init__.py, which imports the
package (and no name from it), as judges and monitors register theirs, and names the default world.
Tests and benchmarks are harnesses, not rooms: they may exercise the tiny world directly.
"""

from __future__ import annotations

import ast
import re
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


# -- names: the world's own and its families' ------------------------------------------------------------
# Code outside the world's folder neither spells its name or a family's as a string (a world's families are
# its own: the adversarial curriculum asks the world which it may join) nor carries "tiny" in an identifier
# (model.base: world, the world's settings) or in a message. Docstrings and comments may mention it as an
# example; the registration names it, and the world it registers as the default.

ROOT_FILES = (REPO / "tether_types.py",)
TINY_WORD = re.compile(r"(?<![a-z])tiny(?![a-z])", re.IGNORECASE)  # in tiny_steps, TINY_MODEL, "the tiny model"
IDENTIFIER_FIELDS = ("id", "attr", "name", "arg", "asname", "module")


def _tiny_names() -> set[str]:
    """The registered names of the worlds the tiny world's folder defines, and its families' names."""
    from tools.worlds import WORLDS
    from tools.worlds.tiny import FAMILIES

    return {n for n in WORLDS.names() if _is_tiny(WORLDS.origin(n).module)} | set(FAMILIES)


def _exempt(tree: ast.AST) -> set[int]:
    """Docstrings, and the key of a record's field spelled like one (`{"harmful": failure.harmful}`: the
    constitution's classification of a prompt, not the family)."""
    exempt = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                exempt.add(id(first.value))
        if isinstance(node, ast.Dict):
            exempt |= {id(k) for k, v in zip(node.keys, node.values, strict=True)
                       if isinstance(k, ast.Constant) and isinstance(v, ast.Attribute) and v.attr == k.value}
    return exempt


def _named(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each string spelling one of `names` or saying "tiny", and each identifier with "tiny"."""
    tree = ast.parse(source)
    exempt = _exempt(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and id(node) not in exempt and (
                    node.value in names or TINY_WORD.search(node.value)):
                found.append((node.lineno, repr(node.value)))
            continue
        for name in IDENTIFIER_FIELDS:
            value = getattr(node, name, None)
            if isinstance(value, str) and TINY_WORD.search(value.replace("_", " ").replace(".", " ")):
                found.append((getattr(node, "lineno", 0), value))
    return found


def test_nothing_outside_the_tiny_world_names_it_or_its_families() -> None:
    names = _tiny_names()
    assert {"tiny", "arithmetic", "howto", "harmful"} <= names  # what the rule looks for, read from the world
    offenders = []
    for path in [*(p for room in ROOMS for p in sorted((REPO / room).rglob("*.py"))), *ROOT_FILES]:
        if TINY_DIR in path.parents or path == REGISTRATION:
            continue
        offenders += [f"{path.relative_to(REPO)}:{line} names {what}" for line, what in _named(path.read_text(), names)]
    assert offenders == []


def test_the_name_check_can_fail() -> None:
    names = {"tiny", "howto", "harmful"}
    source = ('"""A docstring may say the tiny world, as an example."""\n'
              'TINY_MODEL = "tiny"\n'
              'def f(config, failure):\n'
              '    """So may this one: harmful, howto."""\n'
              '    record = {"harmful": failure.harmful}\n'
              '    steps = config.model.tiny_steps\n'
              '    joinable = {"harmful", "howto"}\n'
              '    raise ValueError(f"the embedded tiny model in {steps} is incomplete")\n')
    assert _named(source, names) == [(2, "TINY_MODEL"), (2, "'tiny'"), (6, "tiny_steps"), (7, "'harmful'"),
                                     (7, "'howto'"), (8, "'the embedded tiny model in '")]
