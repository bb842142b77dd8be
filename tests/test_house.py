"""The house: no import cycles between files, guardrails load no torch, the shared vocabulary is a leaf,
and the interventions are named in one place."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("agent", "policies", "guardrails", "tools", "memory")


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """file module -> the tether modules it imports (anywhere in the file: a function-level import is
    a dependency too)."""
    files = {_module(p): p for room in ROOMS for p in (REPO / room).rglob("*.py")}
    files["tether_types"] = REPO / "tether_types.py"
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(f"{target}."):
                    deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_file_imports_itself_back_through_others() -> None:
    # Package faces (__init__ re-exporting their modules) are not files of their own here.
    graph = {k: {d for d in v if not _is_face(d)} for k, v in _graph().items() if not _is_face(k)}
    assert _cycles(graph) == []


def _is_face(module: str) -> bool:
    path = REPO / Path(*module.split("."))
    return (path / "__init__.py").is_file()


def test_the_shared_vocabulary_imports_nothing_of_tether() -> None:
    assert _graph()["tether_types"] == set()


def test_guardrails_load_no_torch() -> None:
    modules = [_module(p) for p in (REPO / "guardrails").glob("*.py")]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + (
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'trl', 'peft')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_interventions_are_named_once_and_the_graph_is_built_from_them() -> None:
    from agent.graph import build_graph
    from tether_types import INTERVENTIONS

    nodes = set(build_graph().nodes)
    assert set(INTERVENTIONS) <= nodes
    # No second list of them anywhere: no tuple, list, set or Literal[...] of strings naming them all.
    second: list[str] = []
    for room in ROOMS:
        for path in (REPO / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                elts = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else []
                if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple):
                    elts = node.slice.elts
                names = {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if set(INTERVENTIONS) <= names:
                    second.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert second == []
