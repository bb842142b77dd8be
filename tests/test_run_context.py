"""A run's context holds settings and services only: it is frozen, and what changes during a run (the
constitution version in force) is read from the store, with the judge rebuilt when it moves on. No model:
the `rules` judge and a real store."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import TetherConfig
from agent.run.context import RunContext
from agent.run.services import RunServices, RunSettings
from agent.run.workspace import Workspace
from guardrails.constitution import default_constitution_yaml, parse_constitution
from memory import Run, Store
from memory.guarded import GuardedWrites

RUN = "run-1"


def _version(writes: GuardedWrites, text: str) -> int:
    parsed = parse_constitution(text, "test")
    return writes.add_constitution_version(text, hashlib.sha256(text.encode()).hexdigest(),
                                           parsed.invariants_sha256(), created_by="test").version


@pytest.fixture()
def ctx(tmp_path: Path) -> Iterator[RunContext]:
    store = Store(tmp_path / "tether.db")
    writes = GuardedWrites(store)
    text = default_constitution_yaml()
    _version(writes, text)
    _version(writes, text.replace("name: tether-default", "name: tether-amended"))
    store.create_run(Run(id=RUN, config={}, config_sha256="c" * 64, seed=0, rounds_budget=2, constitution_version=1,
                         invariants={}, invariants_sha256="i" * 64))
    settings = RunSettings(RUN, Workspace(tmp_path), TetherConfig.model_validate({"tracking": {"mode": "disabled"}}))
    with RunServices.setup(settings, store) as services:
        yield RunContext(settings, services)
    store.close()


def test_the_context_is_frozen(ctx: RunContext) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.settings = ctx.settings  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.scored = {}  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(ctx)] == ["settings", "services"]


def test_constitution_and_judge_follow_the_run_row(ctx: RunContext) -> None:
    first = ctx.judge
    assert ctx.constitution.name == "tether-default" and ctx.judge is first  # built once for its key
    GuardedWrites(ctx.store).set_constitution_version(RUN, 2)  # what plan's adoption writes
    assert ctx.constitution.name == "tether-amended"
    assert ctx.judge is not first  # rebuilt for the version in force, with no call to tell it

# The judge is one switchable pool (agent/interventions/pool.py): tests/test_intervention_plugin.py checks that it
# builds a slot once per key and closes the plug-in it replaces.

