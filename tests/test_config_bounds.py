"""Config numbers are finite and bounded, and `tether validate` reports every violation (exit 2)
without writing anything; YAML bombs in the config or constitution are refused the same way."""

from __future__ import annotations

import gc
import hashlib
import time
import types
import typing
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import ConfigError, TetherConfig, parse_config

runner = CliRunner()


def billion_laughs(indent: str) -> str:
    """9 levels of 9 aliases: under 700 bytes, 9**9 strings once expanded (see test_safe_yaml)."""
    lines = [f'{indent}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{indent}{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def snapshot(home: Path) -> dict[str, str]:
    """Every file under the workspace by its content hash: a write of any kind shows up."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file()}


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    assert tether(home, "init").exit_code == 0
    gc.collect()  # close init's store connection: SQLite folds its WAL into tether.db on close
    return home


def validate_rejects(home: Path, config_text: str, needles: list[str]) -> str:
    (home / "config.yaml").write_text(config_text)
    before = snapshot(home)
    result = tether(home, "validate")
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not reported:\n{result.stderr}"
    assert snapshot(home) == before
    return result.stderr


# -- the numbers a user can write -------------------------------------------------------------------

def test_validate_reports_every_insane_number_at_once(home: Path) -> None:
    # 1e12 and 1e9 are text to YAML 1.1 (no dot); 1.0e+9 is a float; .inf / .nan are floats too.
    config = """\
seed: -1
generation: {samples_per_prompt: 1e9, batch_size: 100000}
prompts: {per_round: 1e12, heldout: 1.0e+12, regenerate: {candidates: 5000000}}
training: {learning_rate: .inf, beta: .nan, epochs: 3.0, max_length: 1000000000, lora_r: 100000}
pairs: {min_margin: 1e-4}
controller: {rounds: 1.0e+9, advisor: {model: m, timeout: -.inf}}
"""
    stderr = validate_rejects(home, config, [
        "seed: Input should be greater than or equal to 0",
        "generation.samples_per_prompt: Input should be a valid integer, got the text '1e9'",
        "generation.batch_size: Input should be less than or equal to 1024",
        "prompts.per_round: Input should be a valid integer, got the text '1e12'",
        "prompts.heldout: Input should be a valid integer, got 1000000000000.0: write a whole number",
        "prompts.regenerate.candidates: Input should be less than or equal to 10000",
        "training.learning_rate: Input should be a finite number",
        "training.beta: Input should be a finite number",
        "training.epochs: Input should be a valid integer, got 3.0",
        "training.max_length: Input should be less than or equal to 32768",
        "training.lora_r: Input should be less than or equal to 1024",
        "pairs.min_margin: Input should be a valid number, got the text '1e-4': write it with a dot, e.g. 0.0001",
        "controller.rounds: Input should be a valid integer, got 1000000000.0",
        "controller.advisor.timeout: Input should be a finite number",
    ])
    assert "14 problem(s) found" in stderr


@pytest.mark.parametrize(("path", "largest", "too_large"), [
    ("training.learning_rate", 1.0, 1.0e+9),
    ("training.beta", 10.0, 10.5),
    ("prompts.per_round", 10_000, 10_001),
    ("prompts.heldout", 10_000, 10_001),
    ("prompts.regenerate.candidates", 10_000, 10_001),
    ("prompts.adversarial.count", 10_000, 10_001),
    ("generation.samples_per_prompt", 64, 1_000_000_000),
    ("generation.batch_size", 1_024, 1_025),
    ("training.batch_size", 1_024, 1_025),
    ("training.epochs", 100, 101),
    ("training.max_length", 32_768, 32_769),
    ("controller.rounds", 1_000, 1_001),
    ("pairs.min_margin", 1.0, 1.5),
    ("seed", 2**31 - 1, 2**31),
])
def test_bounds_are_inclusive_and_enforced(path: str, largest: float, too_large: float) -> None:
    def doc(value: float) -> dict:
        *sections, key = path.split(".")
        out: dict = {key: value}
        for section in reversed(sections):
            out = {section: out}
        return out

    parse_config(doc(largest), "x")
    with pytest.raises(ConfigError) as err:
        parse_config(doc(too_large), "x")
    [problem] = err.value.problems
    where, _, bound = problem.rpartition(" ")
    assert where == f"{path}: Input should be less than or equal to" and float(bound) == largest


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_no_float_field_takes_inf_or_nan(value: float) -> None:
    for path in _number_fields(TetherConfig):
        *sections, key = path
        doc: dict = {key: value}
        for section in reversed(sections):
            doc = {section: doc}
        with pytest.raises(ConfigError) as err:
            parse_config(doc, "x")
        # an int field says "valid integer", a float field "finite number": never a range check passed
        mine = [p for p in err.value.problems if p.startswith(".".join(path) + ": ")]
        assert mine and mine[0].split(": ", 1)[1] in ("Input should be a valid integer",
                                                      "Input should be a finite number"), mine


def _number_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, field in model.model_fields.items():
        args = typing.get_args(field.annotation) if isinstance(field.annotation, types.UnionType) else ()
        kinds = set(args) or {field.annotation}
        if kinds & {int, float}:
            out.append((*prefix, name))
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                out += _number_fields(kind, (*prefix, name))
    return out


def test_every_number_field_has_a_documented_upper_bound() -> None:
    fields = _number_fields(TetherConfig)
    assert len(fields) > 40  # the walk found the nested sections, not just the top level
    unbounded = []
    for path in fields:
        model: type[BaseModel] = TetherConfig
        for name in path[:-1]:
            annotation = model.model_fields[name].annotation
            model = next(k for k in (typing.get_args(annotation) or (annotation,)) if isinstance(k, type))
        field = model.model_fields[path[-1]]
        if not any(isinstance(m, annotated_types.Le | annotated_types.Lt) for m in field.metadata):
            unbounded.append(".".join(path))
        assert field.description, f"{'.'.join(path)} is undocumented"
    assert unbounded == []


def test_cross_field_counts(home: Path) -> None:
    # Whole-config checks run once every section is valid, so these are two files.
    validate_rejects(home, "prompts: {regenerate: {count: 50, candidates: 10}}\n",
                     ["prompts.regenerate: Value error, count 50 is more than candidates 10"])
    validate_rejects(home, "prompts: {per_round: 8}\ncontroller: {min_pairs: 9}\n",
                     ["controller.min_pairs 9 is more than prompts.per_round 8"])
    parse_config({"prompts": {"per_round": 8, "regenerate": {"count": 10, "candidates": 10}},
                  "controller": {"min_pairs": 8}}, "x")


# -- YAML limits through `tether validate` ------------------------------------------------------------

def test_alias_bomb_in_judge_settings_is_refused_quickly(home: Path) -> None:
    config = "judge:\n  name: rules\n  settings:\n" + billion_laughs("    ")
    start = time.perf_counter()
    validate_rejects(home, config, ["config.yaml: line 4, column 8: YAML anchors and aliases"])
    assert time.perf_counter() - start < 5.0


def test_alias_bomb_in_the_constitution_is_refused(home: Path) -> None:
    constitution = home / "constitution.yaml"
    constitution.write_text(constitution.read_text() + "extra:\n" + billion_laughs("  "))
    validate_rejects(home, (home / "config.yaml").read_text(), ["constitution.yaml: line", "anchors and aliases"])


def test_a_key_written_twice_is_reported(home: Path) -> None:
    validate_rejects(home, "training:\n  learning_rate: 0.001\n  learning_rate: 0.5\n",
                     ["config.yaml: line 3, column 3: key 'learning_rate' is written twice"])


def test_deep_nesting_is_reported_not_a_crash(home: Path) -> None:
    (home / "config.yaml").write_text("judge: {settings: {x: " + "[" * 2000 + "]" * 2000 + "}}\n")
    result = tether(home, "validate")
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 2 and "nested deeper than" in result.stderr
