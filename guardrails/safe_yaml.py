"""YAML for run inputs (config, constitution): plain data, bounded, every key written once.

`yaml.safe_load` builds only plain types but still follows anchors and aliases: a "billion laughs"
document of a few hundred bytes (nested lists of aliases) loads instantly as shared references and
expands to billions of items the first time anything walks it (validation, hashing, a run). A run
input never needs anchors, so they are refused where they are written, with the line to fix. So are
documents over MAX_YAML_BYTES, nesting deeper than MAX_YAML_DEPTH (the composer recurses) and a key
written twice in one mapping (YAML keeps the last one silently; in a pinned input that hides which
value counts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

from tether_types import EXIT_USAGE, TetherError

MAX_YAML_BYTES = 1024 * 1024  # 1 MiB: the default config and constitution are a few KiB
MAX_YAML_DEPTH = 32  # the config nests 4 levels; plain PyYAML hits the recursion limit near 500
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlRefused(TetherError, ValueError):
    """A YAML run input that is malformed or breaks a limit: `problem` is one line for the user."""
    exit_code = EXIT_USAGE

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def _where(node_or_event: Any) -> str:
    mark = node_or_event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"


class _LimitedLoader(yaml.SafeLoader):
    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.name = source  # yaml's own syntax errors then name the file, not "<unicode string>"
        self._source = source
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves Parser.peek_event bare
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise YamlRefused(self._source, f"{_where(event)}: YAML anchors and aliases (&name, *name) are "
                                            "not allowed in run inputs; write the value out in full")
        if self._depth >= MAX_YAML_DEPTH:
            raise YamlRefused(self._source, f"{_where(event)}: nested deeper than {MAX_YAML_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except YamlRefused:
            raise
        except ValueError as err:  # int() past 4300 digits, a date like 2024-13-45
            reason = str(err).split(";")[0]
            raise YamlRefused(self._source, f"{_where(node)}: cannot read this value: {reason}") from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if duplicate:
                raise YamlRefused(self._source, f"{_where(key_node)}: key {key!r} is written twice in one "
                                                "mapping; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_size(text: str, source: str) -> None:
    # Characters never outnumber UTF-8 bytes, so a long text is refused without encoding it.
    if len(text) > MAX_YAML_BYTES or len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise YamlRefused(source, f"the document is over the 1 MiB ({MAX_YAML_BYTES} bytes) limit for run inputs")


def load_yaml(text: str, source: str) -> Any:
    """One YAML document as plain data, or YamlRefused naming `source` and what to fix."""
    _check_size(text, source)
    loader = _LimitedLoader(text, source)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise YamlRefused(source, f"not valid YAML: {' '.join(str(err).split())}") from None
    finally:
        loader.dispose()


def compose_yaml(text: str, source: str) -> Node | None:
    """The node tree of one YAML document (None when it is empty), under the same limits as `load_yaml`:
    each node carries where it starts and ends in `text` (guardrails/yaml_edit.py edits in place by them)."""
    _check_size(text, source)
    loader = _LimitedLoader(text, source)
    try:
        return loader.get_single_node()
    except yaml.YAMLError as err:
        raise YamlRefused(source, f"not valid YAML: {' '.join(str(err).split())}") from None
    finally:
        loader.dispose()


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """YAML that `load_yaml` reads back: an object used twice is written out twice, never as an
    anchor and alias (`yaml.safe_dump` writes those for shared lists and dicts). Keys keep their order."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False)


def read_yaml(path: Path) -> Any:
    """`load_yaml` of a file, refusing one over the size limit before reading it."""
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise YamlRefused(str(path), f"the file is {size} bytes, over the 1 MiB ({MAX_YAML_BYTES} bytes) limit "
                                     "for run inputs")
    return load_yaml(path.read_text(), str(path))
