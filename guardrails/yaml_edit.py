"""Edit a YAML document in place: only the entries an edit sets are rewritten, every other byte (comments,
key order, quoting, blank lines, flow lists wrapped by hand) stays as it was.

ruamel.yaml's round-trip mode renders the edited document, with the indentation it guesses from the
original. The entries the edits touch are cut from that rendering and spliced into the original text at
the positions the safe loader's composer gives them (a whole-document rendering would also re-wrap every
flow list, so a reviewer's diff would show lines nobody changed). Safety:

- ruamel.yaml reads only a text that `load_yaml` accepted (size, depth, no anchors or aliases, no key
  written twice, no tag beyond plain data), and every position comes from `compose_yaml`, under the
  same limits;
- the result is read back with `load_yaml` and must equal the original document with the edits
  applied, value for value and type for type (ruamel.yaml reads YAML 1.2, the safe loader 1.1: a
  string like `yes` that ruamel writes bare would read back as a boolean). Anything else is refused
  with YamlRefused; nothing is written.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from guardrails.safe_yaml import YamlRefused, compose_yaml, load_yaml

Key = str | int
YamlPath = tuple[Key, ...]
Edit = tuple[YamlPath, Any]
"""Set the value at a path of mapping keys and list indices. The last key may be new: a mapping key is
added after the mapping's last entry, and an index equal to the list's length appends."""

_STR_TAG = "tag:yaml.org,2002:str"
_WIDTH = 1 << 20  # ruamel.yaml never wraps a line it writes


def edit_yaml(text: str, source: str, edits: Sequence[Edit]) -> str:
    """`text` with `edits` applied, changed only where they are. Raises YamlRefused."""
    intended = load_yaml(text, source)
    for path, value in edits:
        _set(intended, path, value, source)
    rendered = _render(text, source, edits)
    old_root, new_root = compose_yaml(text, source), compose_yaml(rendered, f"{source} (edited)")
    if old_root is None or new_root is None:
        raise YamlRefused(source, "an empty document cannot be edited in place")
    targets = _targets(old_root, [path for path, _ in edits], source)
    splices = [(target, *_splice(target, text, old_root, rendered, new_root, source)) for target in targets]
    result = text
    end = len(text) + 1
    # From the end backwards, so earlier positions still hold; of two insertions at one place the deeper
    # goes first in the text (a new key of the last item before a new item after it).
    for _, start, stop, fragment in sorted(splices, key=lambda s: (s[1], s[2], -len(s[0].path)), reverse=True):
        if stop > end:
            raise YamlRefused(source, "two edits overlap in the text; edit one entry at a time")
        result = result[:start] + fragment + result[stop:]
        end = start
    if not _same(load_yaml(result, f"{source} (edited)"), intended):
        raise YamlRefused(source, "the edited text does not read back as the intended document, so it is not "
                                  "used; write the change by hand")
    return result


def _set(doc: Any, path: YamlPath, value: Any, source: str) -> None:
    """Set `value` (a copy) at `path` in plain data or ruamel.yaml's round-trip data."""
    if not path:
        raise YamlRefused(source, "an edit needs a path inside the document")
    parent = doc
    for i, key in enumerate(path[:-1]):
        if not _has(parent, key):
            raise YamlRefused(source, f"cannot edit {_dotted(path)}: {_dotted(path[:i + 1])} is not in the document")
        parent = parent[key]
    key = path[-1]
    if isinstance(parent, dict) and isinstance(key, str):
        parent[key] = copy.deepcopy(value)
    elif isinstance(parent, list) and isinstance(key, int) and 0 <= key < len(parent):
        parent[key] = copy.deepcopy(value)
    elif isinstance(parent, list) and key == len(parent):
        parent.append(copy.deepcopy(value))
    else:
        raise YamlRefused(source, f"cannot edit {_dotted(path)}: {_dotted(path[:-1]) or 'the document'} is not a "
                                  "mapping or list that this key fits")


def _has(parent: Any, key: Key) -> bool:
    if isinstance(parent, dict):
        return isinstance(key, str) and key in parent
    return isinstance(parent, list) and isinstance(key, int) and 0 <= key < len(parent)


def _dotted(path: YamlPath) -> str:
    return ".".join(map(str, path))


def _render(text: str, source: str, edits: Sequence[Edit]) -> str:
    """The whole edited document as ruamel.yaml's round-trip mode writes it."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = _WIDTH
    try:
        doc, indent, block_seq_indent = load_yaml_guess_indent(text, yaml=yaml)
    except YAMLError as err:
        raise YamlRefused(source, f"cannot be edited in place: {' '.join(str(err).split())}") from None
    sequence = max(indent or 2, 2)
    offset = min(block_seq_indent or 0, sequence - 2)
    yaml.indent(mapping=sequence - offset if block_seq_indent is not None else sequence,
                sequence=sequence, offset=offset)
    for path, value in edits:
        _set(doc, path, value, source)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


@dataclass(frozen=True)
class _Target:
    """A splice: `replace` rewrites the entry at `path`; `extend` appends to the collection at `path` the
    entries the rendering has past the original's last one."""

    kind: Literal["replace", "extend"]
    path: YamlPath


def _targets(root: Node, paths: list[YamlPath], source: str) -> list[_Target]:
    """The fewest splices that cover every edited path: an entry that exists is replaced; a new one extends
    its deepest existing ancestor, which is replaced when it is written in flow style or is not a collection.
    A splice inside another is dropped."""
    found: list[_Target] = []
    for path in paths:
        depth = len(path)
        while depth > 0 and _find(root, path[:depth]) is None:
            depth -= 1
        if depth == len(path):
            found.append(_Target("replace", path))
            continue
        parent = path[:depth]
        node = _node(root, parent, source)
        block = isinstance(node, MappingNode | SequenceNode) and not node.flow_style and bool(node.value)
        found.append(_Target("extend" if block else "replace", parent))
    kept: list[_Target] = []
    for target in sorted(set(found), key=lambda t: (len(t.path), t.kind != "replace", str(t.path))):
        covered = any(k.kind == "replace" and target.path[:len(k.path)] == k.path for k in kept)
        if not covered and target not in kept:
            kept.append(target)
    return kept


def _find(root: Node, path: YamlPath) -> tuple[Node | None, Node] | None:
    """(key node or None for a list item, value node) at `path`, or None when it is not there."""
    key_node: Node | None = None
    node = root
    for key in path:
        if isinstance(node, MappingNode) and isinstance(key, str):
            match = [(k, v) for k, v in node.value
                     if isinstance(k, ScalarNode) and k.tag == _STR_TAG and k.value == key]
            if not match:
                return None
            key_node, node = match[0]
        elif isinstance(node, SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            key_node, node = None, node.value[key]
        else:
            return None
    return key_node, node


def _node(root: Node, path: YamlPath, source: str) -> Node:
    found = _find(root, path)
    if found is None:
        raise YamlRefused(source, f"{_dotted(path) or 'the document'} is not in the rendered edit")
    return found[1]


def _entry(root: Node, text: str, path: YamlPath, source: str) -> tuple[int, int]:
    """Where the entry at `path` starts (its key, or its value for a list item) and its content ends."""
    found = _find(root, path)
    if found is None:
        raise YamlRefused(source, f"{_dotted(path) or 'the document'} is not in the rendered edit")
    key_node, node = found
    start: int = (key_node or node).start_mark.index
    return start, max(start, _content_end(node, text))


def _content_end(node: Node, text: str) -> int:
    """Where a node's own text ends: a block collection's last entry, never the comments or blank lines
    after it that the parser counts in."""
    if isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _content_end(last[1] if isinstance(node, MappingNode) else last, text)
    end: int = node.end_mark.index
    if isinstance(node, ScalarNode):  # a block scalar (| or >) ends after its line break and blank lines
        while end > node.start_mark.index and text[end - 1] in " \t\r\n":
            end -= 1
    return end


def _splice(target: _Target, text: str, old_root: Node, rendered: str, new_root: Node,
            source: str) -> tuple[int, int, str]:
    """(start, end, replacement) in `text` for one target, cut from `rendered`."""
    if target.kind == "replace":
        start, end = _entry(old_root, text, target.path, source)
        new_start, new_end = _entry(new_root, rendered, target.path, source)
        delta = _column(text, start) - _column(rendered, new_start)
        return start, end, _reindent(rendered[new_start:new_end], delta, first=False, source=source)
    old, new = _node(old_root, target.path, source), _node(new_root, target.path, source)
    if not isinstance(old, MappingNode | SequenceNode) or not isinstance(new, type(old)) \
            or len(new.value) <= len(old.value):
        raise YamlRefused(source, f"the rendered edit of {_dotted(target.path) or 'the document'} adds nothing")
    count = len(old.value)
    last: Key = count - 1 if isinstance(old, SequenceNode) else _key(old.value[-1][0], source)
    first: Key = count if isinstance(new, SequenceNode) else _key(new.value[count][0], source)
    delta = _column(text, _entry(old_root, text, (*target.path, last), source)[0]) \
        - _column(rendered, _entry(new_root, rendered, (*target.path, last), source)[0])
    new_start = _entry(new_root, rendered, (*target.path, first), source)[0]
    line_start = rendered.rfind("\n", 0, new_start) + 1
    if set(rendered[line_start:new_start]) - {" ", "-"}:
        raise YamlRefused(source, f"the rendered edit of {_dotted(target.path)} does not start on its own line")
    fragment = _reindent(rendered[line_start:_content_end(new, rendered)], delta, first=True, source=source)
    newline = text.find("\n", _content_end(old, text))
    at = len(text) if newline < 0 else newline
    return at, at, "\n" + fragment


def _key(node: Node, source: str) -> str:
    if not isinstance(node, ScalarNode) or node.tag != _STR_TAG:
        raise YamlRefused(source, "only mappings with string keys can be edited in place")
    return str(node.value)


def _column(text: str, index: int) -> int:
    return index - (text.rfind("\n", 0, index) + 1)


def _reindent(fragment: str, delta: int, *, first: bool, source: str) -> str:
    """Shift the fragment's lines (all, or all but the first) by `delta` columns; blank lines stay empty."""
    lines = fragment.split("\n")
    out = [] if first else [lines[0]]
    for line in lines[0 if first else 1:]:
        if not line.strip():
            out.append("")
        elif delta >= 0:
            out.append(" " * delta + line)
        elif line[:-delta].strip():
            raise YamlRefused(source, "the rendered edit is indented less than the text it goes into")
        else:
            out.append(line[-delta:])
    return "\n".join(out)


def _same(a: Any, b: Any) -> bool:
    """Equal value for value and type for type (True is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
