"""The YAML loader for run inputs: plain documents load as before; bombs, anchors, duplicate keys,
deep nesting and oversize documents are refused quickly with the source and line named."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import default_config_yaml
from guardrails.constitution import ConstitutionError, default_constitution_yaml, parse_constitution
from guardrails.safe_yaml import MAX_YAML_BYTES, MAX_YAML_DEPTH, YamlRefused, dump_yaml, load_yaml, read_yaml


def billion_laughs(indent: str = "") -> str:
    """The classic alias bomb: 9 levels of 9 aliases each, 9**9 = 387,420,489 strings once expanded."""
    lines = [f'{indent}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for prev, name in zip(names, names[1:], strict=False):
        lines.append(f"{indent}{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _leaves(value: Any, memo: dict[int, int]) -> int:
    """Strings the document expands to, counted over shared references without expanding them."""
    if id(value) in memo:
        return memo[id(value)]
    count = sum(_leaves(v, memo) for v in value) if isinstance(value, list) else 1
    memo[id(value)] = count
    return count


def test_the_bomb_is_a_bomb_for_plain_safe_load() -> None:
    # Guards the next test: plain yaml.safe_load accepts it, and it stands for ~387 million items.
    doc = yaml.safe_load(billion_laughs())
    assert len(billion_laughs()) < 700
    assert _leaves(doc["i"], {}) == 9**9


def test_the_bomb_is_refused_quickly_at_its_first_anchor() -> None:
    start = time.perf_counter()
    with pytest.raises(YamlRefused) as err:
        load_yaml(billion_laughs(), "bomb.yaml")
    assert time.perf_counter() - start < 1.0
    assert err.value.source == "bomb.yaml"
    assert err.value.problem.startswith("line 1, column 4:") and "anchors and aliases" in err.value.problem
    assert str(err.value).startswith("bomb.yaml: ")


@pytest.mark.parametrize(("text", "where"), [
    ("a: &x 1\n", "line 1, column 4"),  # an anchor alone, never used
    ("a: 1\nb: [1, *x]\n", "line 2, column 8"),  # an alias (undefined: refused before yaml looks it up)
    ("a:\n  - &first {k: 1}\n  - 2\n", "line 2, column 5"),
])
def test_anchors_and_aliases_are_refused_with_their_line(text: str, where: str) -> None:
    with pytest.raises(YamlRefused, match=where):
        load_yaml(text, "x.yaml")


def test_a_key_written_twice_is_refused() -> None:
    with pytest.raises(YamlRefused, match=r"line 3, column 3: key 'learning_rate' is written twice"):
        load_yaml("training:\n  learning_rate: 0.001\n  learning_rate: 10.0\n", "x.yaml")
    assert load_yaml("a: {k: 1}\nb: {k: 2}\n", "x.yaml") == {"a": {"k": 1}, "b": {"k": 2}}


def test_nesting_is_capped_before_python_recursion() -> None:
    ok = "x: " + "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1)
    assert load_yaml(ok, "x.yaml") is not None
    for depth in (MAX_YAML_DEPTH, 5000):  # plain yaml.safe_load raises RecursionError at ~500
        with pytest.raises(YamlRefused, match=f"nested deeper than {MAX_YAML_DEPTH} levels"):
            load_yaml("x: " + "[" * depth + "]" * depth, "x.yaml")


def test_size_is_counted_in_utf8_bytes() -> None:
    at_limit = "a: '" + "x" * (MAX_YAML_BYTES - 5) + "'"
    assert len(at_limit.encode()) == MAX_YAML_BYTES
    assert load_yaml(at_limit, "x.yaml") == {"a": "x" * (MAX_YAML_BYTES - 5)}
    wide = "a: '" + "é" * (MAX_YAML_BYTES // 2) + "'"  # fewer characters than the limit, more bytes
    assert len(wide) < MAX_YAML_BYTES < len(wide.encode())
    for text in (wide, at_limit + " "):
        with pytest.raises(YamlRefused, match=r"over the 1 MiB \(1048576 bytes\) limit"):
            load_yaml(text, "x.yaml")


def test_read_yaml_refuses_a_big_file_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * MAX_YAML_BYTES)
    monkeypatch.setattr(Path, "read_text", lambda *a, **k: pytest.fail("read an oversize file"))
    with pytest.raises(YamlRefused, match=f"the file is {MAX_YAML_BYTES + 5} bytes, over the 1 MiB") as err:
        read_yaml(path)
    assert err.value.source == str(path)


@pytest.mark.parametrize(("text", "needle"), [
    ("seed: " + "9" * 5000, "line 1, column 7: cannot read this value: Exceeds the limit (4300 digits)"),
    ("when: 2024-13-45", "line 1, column 7: cannot read this value: month must be in 1..12"),
    ("model: [unclosed", 'not valid YAML: while parsing a flow sequence in "x.yaml", line 1'),
    ("a: !!python/object/apply:os.system [echo]", "not valid YAML: could not determine a constructor"),
])
def test_unreadable_values_are_one_line_problems(text: str, needle: str) -> None:
    with pytest.raises(YamlRefused) as err:
        load_yaml(text, "x.yaml")
    assert needle in err.value.problem and "\n" not in err.value.problem
    assert "set_int_max_str_digits" not in err.value.problem  # Python's hint is no fix for a config


def test_plain_documents_load_as_with_safe_load() -> None:
    for text in (default_config_yaml(), default_constitution_yaml(), "", "a: [1, 2.5, null, true, 'x']\n"):
        assert load_yaml(text, "x.yaml") == yaml.safe_load(text)


def test_constitution_uses_the_limits() -> None:
    start = time.perf_counter()
    with pytest.raises(ConstitutionError) as err:
        parse_constitution(default_constitution_yaml() + "extra:\n" + billion_laughs("  "), "constitution.yaml")
    assert time.perf_counter() - start < 1.0
    assert err.value.source == "constitution.yaml"
    assert len(err.value.problems) == 1 and "anchors and aliases" in err.value.problems[0]
    with pytest.raises(ConstitutionError, match="not valid YAML"):
        parse_constitution("name: [unclosed", "constitution.yaml")


def test_dump_yaml_writes_shared_objects_in_full() -> None:
    shared = {"kind": "filler", "phrases": ["great question"]}
    doc = {"principles": [{"id": "a", "rule": shared}, {"id": "b", "rule": shared}]}
    assert "&id" in yaml.safe_dump(doc)  # what load_yaml would refuse
    text = dump_yaml(doc)
    assert "&" not in text and "*" not in text
    assert load_yaml(text, "x.yaml") == doc
    assert list(load_yaml(dump_yaml({"z": 1, "a": 2}), "x.yaml")) == ["z", "a"]


def test_a_constitution_written_by_dump_yaml_reaches_its_own_checks() -> None:
    doc = yaml.safe_load(default_constitution_yaml())
    doc["principles"].append(dict(doc["principles"][0]))  # shallow copy: shares the nested rule
    with pytest.raises(ConstitutionError, match="duplicate principle id"):
        parse_constitution(dump_yaml(doc), "c")
