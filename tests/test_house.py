"""The house: no import cycles between files, the rooms in layers (a room imports only rooms below it),
guardrails load no torch, the shared vocabulary is a leaf, the interventions are named in one place, and a
dict keyed by a closed set of names covers the set.

Imports are read from the source (anywhere in a file: a function-level or TYPE_CHECKING-only import is a
dependency too) and resolved through package faces: `from memory import Store` is an import of the module
that defines Store (memory.store), not of memory/__init__.py."""

from __future__ import annotations

import ast
import functools
import io
import subprocess
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The layer order, lowest first: a module may import its own room and the rooms below it, never one above.
# tests/ and benchmarks/ sit outside the house and may import anything.
LAYERS = ("tether_types", "memory", "policies", "guardrails", "tools", "agent")
ROOMS = LAYERS[1:]
# A dict literal that names only some members of a closed set says so on its first line with this comment
# (and why): `{"a": 1, "b": 2}  # partial keys: "c" is handled above`.
PARTIAL_MARK = "partial keys:"


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _files() -> dict[str, Path]:
    files = {_module(p): p for room in ROOMS for p in (REPO / room).rglob("*.py")}
    files["tether_types"] = REPO / "tether_types.py"
    return files


@functools.cache
def _tree(module: str) -> ast.Module:
    path = _files()[module]
    return ast.parse(path.read_text(), str(path))


def _is_face(module: str) -> bool:
    return _files()[module].name == "__init__.py"


def _file_of(dotted: str) -> str | None:
    """The longest prefix of a dotted name that is a tether module, if any."""
    while dotted and dotted not in _files():
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, relative imports resolved against `module`."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if _is_face(module) else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _bindings(module: str, nodes: list[ast.stmt] | None = None) -> Iterator[tuple[str | None, str, str | None]]:
    """(local name, tether module, attribute or None) for each import in `module` (anywhere in it, or in
    `nodes`). The local name is None for `import a.b.c` (it binds `a`, but what it imports is a.b.c)."""
    for node in ast.walk(_tree(module)) if nodes is None else nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _file_of(alias.name)
                if target:
                    yield alias.asname or (None if "." in alias.name else alias.name), target, None
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            if _file_of(source) is not None:
                for alias in node.names:
                    yield alias.asname or alias.name, source, (None if alias.name == "*" else alias.name)


@functools.cache
def _exports(face: str) -> dict[str, tuple[str, str | None]]:
    """What a package face re-exports: name -> (module, attribute) of its top-level import that binds it."""
    return {name: (source, attr) for name, source, attr in _bindings(face, _tree(face).body) if name}


def _resolve(source: str, attr: str | None, seen: frozenset[str] = frozenset()) -> str:
    """The module that defines `attr` of `source` (or `source` itself): submodules and face re-exports followed."""
    module = _file_of(source) or source
    if attr is None or module != source:  # source is no file (a folder without a face): its nearest file
        return module
    if f"{module}.{attr}" in _files():
        return f"{module}.{attr}"
    if _is_face(module) and attr in _exports(module) and module not in seen:
        inner, inner_attr = _exports(module)[attr]
        return _resolve(inner, inner_attr, seen | {module})
    return module


def _attribute_uses(module: str) -> dict[str, set[str]]:
    """local name -> the attributes read off it (`memory.Store` -> {"memory": {"Store"}})."""
    uses: dict[str, set[str]] = {}
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            uses.setdefault(node.value.id, set()).add(node.attr)
    return uses


@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    """file module -> the tether modules it imports, through package faces to the defining module. A face
    stays a dependency only for what it defines itself (or a module object used whole)."""
    graph: dict[str, frozenset[str]] = {}
    for name in _files():
        uses = _attribute_uses(name)
        deps: set[str] = set()
        for local, source, attr in _bindings(name):
            target = _resolve(source, attr)
            if local and _is_face(target) and uses.get(local):  # `import pkg` / `from a import pkg`, then pkg.X
                deps |= {_resolve(target, used) for used in uses[local]}
            else:
                deps.add(target)
        # A module's own package faces run before it anyway; importing one is not an edge back.
        graph[name] = frozenset(d for d in deps if d != name and not name.startswith(f"{d}."))
    return graph


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
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


def test_imports_through_a_package_face_resolve_to_the_defining_module() -> None:
    """memory/ and tools/judges/ faces only re-export: every import of a name through them resolves to the
    module that defines it, so neither face is anyone's dependency."""
    graph = _graph()
    assert "memory.store" in graph["agent.cli.main"]  # from memory import Store
    assert "tools.judges.base" in graph["agent.cli.validate"]  # from tools.judges import JUDGES
    assert sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if d in ("memory", "tools.judges")) == []


def test_no_file_imports_itself_back_through_others() -> None:
    assert _cycles(_graph()) == []


def test_the_rooms_are_layered() -> None:
    """tether_types < memory < policies < guardrails < tools < agent: no module imports a room above its own.
    A TYPE_CHECKING-only import counts: it is the same coupling, only deferred (and a checker follows it)."""
    def layer(module: str) -> int:
        return LAYERS.index(module.partition(".")[0])

    upward = sorted(f"{m} -> {d}" for m, deps in _graph().items() for d in deps if layer(d) > layer(m))
    assert upward == []


def test_the_shared_vocabulary_imports_nothing_of_tether() -> None:
    assert _graph()["tether_types"] == set()


def test_guardrails_load_no_torch() -> None:
    modules = [_module(p) for p in (REPO / "guardrails").glob("*.py")]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + (
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'trl', 'peft')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _intervention_names() -> set[str]:
    from agent.interventions import interventions

    return {spec.name for spec in interventions()}


def test_the_graph_has_a_node_per_intervention() -> None:
    from agent.run.graph import build_graph

    assert _intervention_names() <= set(build_graph().nodes)


def test_interventions_are_named_once() -> None:
    """Each by its own module: no tuple, list, set, dict's keys or Literal[...] of strings names them all."""
    names = _intervention_names()
    second: list[str] = []
    for module, path in _files().items():
        for node in ast.walk(_tree(module)):
            elts: list[ast.expr | None] = list(node.elts) if isinstance(node, ast.Tuple | ast.List | ast.Set) else []
            if isinstance(node, ast.Dict):
                elts = list(node.keys)
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple):
                elts = list(node.slice.elts)
            if names <= {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}:
                second.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert second == []


# -- dicts keyed by a closed set of names -------------------------------------------------------------------


def _literal_members(module: str, node: ast.expr | None, known: dict[str, frozenset[str]]) -> frozenset[str] | None:
    """The string members of a `Literal[...]` (or a union of them and of other such aliases), else None."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        values = [e.value for e in elts if isinstance(e, ast.Constant)]
        return frozenset(values) if values and all(isinstance(v, str) for v in values) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _literal_members(module, node.left, known), _literal_members(module, node.right, known)
        return None if left is None or right is None else left | right
    if isinstance(node, ast.Name):
        return _name_members(module, node.id, known)
    return None


def _name_members(module: str, name: str, known: dict[str, frozenset[str]]) -> frozenset[str] | None:
    """The members of the Literal alias (or `get_args(...)` tuple of one) that `name` means in `module`:
    one of its own (`known`) or one it imports."""
    if name in known:
        return known[name]
    return next((_literals(_resolve(source, attr)).get(attr) for local, source, attr in _bindings(module)
                 if local == name and attr is not None), None)


@functools.cache
def _literals(module: str) -> dict[str, frozenset[str]]:
    """Module-level `Name = Literal[...]` aliases of `module`, and `NAMES = get_args(Alias)` tuples."""
    found: dict[str, frozenset[str]] = {}
    for node in _tree(module).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        else:
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "get_args":
            value = value.args[0] if value.args else None
        members = _literal_members(module, value, found)
        if isinstance(target, ast.Name) and members:
            found[target.id] = members
    return found


def _dict_keys(module: str, node: ast.Dict) -> frozenset[str]:
    """The string keys of a dict literal, with `**{k: ... for k in NAMES}` over a Literal's names counted."""
    keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None and isinstance(value, ast.DictComp) and len(value.generators) == 1:
            spread = value.generators[0].iter
            if isinstance(spread, ast.Name):
                keys |= _name_members(module, spread.id, _literals(module)) or set()
    return frozenset(keys)


def _comments(path: Path) -> dict[int, str]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return {t.start[0]: t.string for t in tokens if t.type == tokenize.COMMENT}


@functools.cache
def _closed_sets() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """Every module's Literals of names ("module.Name" -> members), and tether_types' own (the shared vocabulary)."""
    everywhere = {f"{m}.{n}": v for m in _files() for n, v in _literals(m).items()}
    return everywhere, {n: v for n, v in everywhere.items() if n.startswith("tether_types.")}


def _lacks(keys: frozenset[str], everywhere: dict[str, frozenset[str]], shared: dict[str, frozenset[str]]) -> list[str]:
    """What a dict with `keys` lacks of the closed sets it is keyed by (empty when it covers one of them
    whole): the Literals holding all its keys, and the shared ones (e.g. a style per intervention beside
    other entries) naming two or more of them."""
    touched = {n: v for n, v in everywhere.items() if keys <= v}
    touched |= {n: v for n, v in shared.items() if len(keys & v) >= 2}
    if len(keys) < 2 or any(v <= keys for v in touched.values()):
        return []
    return [f"{n} lacks {sorted(v - keys)}" for n, v in sorted(touched.items())]


def test_a_dict_keyed_by_a_closed_set_of_names_covers_it() -> None:
    """A dict literal keyed by a closed set of names covers it or says on its first line that it is partial:
    a member added later is a failing test here, not a KeyError in a run."""
    missing: list[str] = []
    for module, path in _files().items():
        comments: dict[int, str] | None = None
        for node in ast.walk(_tree(module)):
            lacks = _lacks(_dict_keys(module, node), *_closed_sets()) if isinstance(node, ast.Dict) else []
            if lacks:
                comments = comments if comments is not None else _comments(path)
                if PARTIAL_MARK not in comments.get(node.lineno, ""):
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}: {'; '.join(lacks)}")
    assert missing == [], f"add the missing keys, build the dict from the Literal, or mark it `# {PARTIAL_MARK} why`"


def test_the_dict_key_check_finds_a_missing_name() -> None:
    """A report's style table keyed by the interventions and other marks, once an intervention is added; a
    label table of a module's own Literal that leaves one member to an `if` before it."""
    shared = {"tether_types.Intervention": frozenset({"switch_judge", "switch_pairs", "new_one"})}
    everywhere = {**shared, "guardrails.probes.ProbeSource": frozenset({"file", "world", "heldout"})}
    styles = frozenset({"switch_judge", "switch_pairs", "rollback"})
    assert _lacks(styles, everywhere, shared) == ["tether_types.Intervention lacks ['new_one']"]
    assert _lacks(styles | {"new_one"}, everywhere, shared) == []
    assert _lacks(frozenset({"world", "heldout"}), everywhere, shared) == [
        "guardrails.probes.ProbeSource lacks ['file']"]
    assert _lacks(frozenset({"world", "other"}), everywhere, shared) == []  # not keyed by it
    # The closed sets are read from the source: the stored approval statuses, for one.
    assert _closed_sets()[0]["memory.common.ApprovalStatus"] == {"pending", "approved", "rejected", "withdrawn"}
