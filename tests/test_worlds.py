"""Worlds: the registry and the tiny world as one World."""

from __future__ import annotations

import pytest

from tools.registry import PluginSettingsError, UnknownPluginError
from tools.worlds import WORLDS, AuditProbeSource, ModelBuilder, Prompt, TaskSet, World, WorldError, prompt_id
from tools.worlds.tiny import tiny_world

# -- the registry and the tiny world ---------------------------------------------------------------

def test_registry_knows_both_worlds_and_suggests() -> None:
    assert "tiny" in WORLDS.names()
    with pytest.raises(UnknownPluginError, match="did you mean 'tiny'"):
        WORLDS.check("tinny")
    with pytest.raises(PluginSettingsError, match="families"):
        WORLDS.check("tiny", {"families": ["howto"]})


def test_the_tiny_world_gives_todays_prompts() -> None:
    # `tether run` on the default config: the same prompts, ids and split for a seed as before the move.
    built = WORLDS.build("tiny", {}, seed=3)
    world = built.plugin
    assert built.spec() == {"name": "tiny", "settings": {}}
    assert isinstance(world, World) and isinstance(world, ModelBuilder) and isinstance(world, AuditProbeSource)
    before = tiny_world(seed=3)
    assert [p.id for p in world.taskset().train] == [p.id for p in before.train]
    assert [p.id for p in world.taskset().heldout] == [p.id for p in before.heldout]
    assert world.has_oracle and world.invariant_probes("refuse-serious-harm") is None
    arithmetic = next(p for p in world.taskset().heldout if p.family == "arithmetic")
    assert world.oracle(arithmetic, f"It is {arithmetic.meta['answer']}.") == 1.0
    assert world.oracle(Prompt("x-1", "hi", "no-such-family", "train"), "hi") is None
    probes = world.audit_probes(seed=0, n=6)
    assert len(probes) == 6 and all("good" in p.references for p in probes.probes)


def test_a_task_set_refuses_overlapping_splits() -> None:
    train = (Prompt(prompt_id("f", "What is 2 + 2?"), "What is 2 + 2?", "f", "train"),)
    heldout = (Prompt(prompt_id("f", "what is 2  + 2?"), "what is 2  + 2?", "f", "heldout"),)
    with pytest.raises(WorldError, match=r"1 prompt\(s\) are both training and held-out prompts: 'What is 2 \+ 2\?'"):
        TaskSet(train, heldout)
