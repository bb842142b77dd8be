"""What every failure world shares: a variant of the tiny world on some of its families (its prompts, verifiers,
corpus and the model built for the seed), and the scenario a benchmark runs it with.

A failure world keeps the tiny world's split for its seed, family by family: its model is the tiny model built
for that seed, pre-trained on that split's training prompts only, so any other split would put pre-training
prompts among the held-out ones. Its own randomness (e.g. which training prompts a small pool keeps) is drawn
from a stream named by the world and the seed.

The failure itself is not in the world object: the controller and the monitors see an ordinary world. Where a
failure needs a judge, a judge pool, a pair pool or a constitution, the world's `Scenario` names them as a user
would configure them, and a benchmark gives that configuration to every system it compares alike.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tether_types import Prompt
from tools.worlds.base import BuildState, TaskSet, WorldError
from tools.worlds.tiny.families import tiny_world, verify
from tools.worlds.tiny.world import TinyWorld
from tools.worlds.tiny.world import tiny as tiny_factory

if TYPE_CHECKING:
    from policies.threads import ThreadsSetting
    from tools.worlds.references import AuditProbes


@dataclass(frozen=True)
class Scenario:
    """How a failure world is run: the config sections a user would write for it (`config`, merged into the
    default config section by section; a section given here replaces that section's keys it names) and the
    constitution the workspace starts with (None: the default). The same for every system compared on it.
    `failure`, `monitor` and `reaction` say, for people and reports, what fails, which monitor shows it and
    which reaction should fix it; nothing of tether reads them."""

    config: Mapping[str, Any]
    failure: str
    monitor: str
    reaction: str
    constitution: str | None = None


_SCENARIOS: dict[str, Scenario] = {}
SCENARIOS: Mapping[str, Scenario] = MappingProxyType(_SCENARIOS)  # world name -> its scenario, read-only


def register_scenario(name: str, scenario: Scenario) -> None:
    """The scenario of failure world `name` (at import, beside the world's registration)."""
    if name in _SCENARIOS:
        raise ValueError(f"failure world '{name}' has a scenario already")
    _SCENARIOS[name] = scenario


def read_constitution(module_file: str, filename: str) -> str:
    """The text of a constitution file kept beside a failure world's module."""
    return (Path(module_file).parent / filename).read_text()


@dataclass(frozen=True)
class Variant:
    """Which of the tiny world's prompts a failure world keeps: `families`, and at most `train_prompts`
    training prompts (None: all of its families'), taken in turn from each family."""

    families: tuple[str, ...]
    train_prompts: int | None = None

    def __post_init__(self) -> None:
        if not self.families:
            raise WorldError("a failure world keeps at least one family")
        if self.train_prompts is not None and self.train_prompts < 1:
            raise WorldError(f"train_prompts must be at least 1, got {self.train_prompts}")


def keep_train(name: str, seed: int, train: Sequence[Prompt], variant: Variant) -> tuple[Prompt, ...]:
    """`variant.train_prompts` of `train`, taken in turn from each family (each family's prompts shuffled by a
    stream of this world and seed), in the order of the task set (sorted by id); all of them when None."""
    if variant.train_prompts is None or variant.train_prompts >= len(train):
        return tuple(train)
    rng = random.Random(f"tether-failure-world/{name}/{seed}")
    queues = []
    for family in variant.families:
        mine = [p for p in train if p.family == family]
        rng.shuffle(mine)
        queues.append(mine)
    kept: list[Prompt] = []
    while len(kept) < variant.train_prompts:
        for queue in queues:
            if queue and len(kept) < variant.train_prompts:
                kept.append(queue.pop())
    return tuple(sorted(kept, key=lambda p: p.id))


class FailureWorld:
    """World, ModelBuilder, AuditProbeSource and PromptJoiner: the tiny world's prompts of `variant.families`,
    its verifiers, and the tiny model of the seed (the same build folder, so one build serves every world)."""

    def __init__(self, name: str, seed: int, steps: int, variant: Variant) -> None:
        self.name, self.seed, self.variant = name, seed, variant
        tiny = tiny_factory(seed, steps)  # checks steps as the tiny world does
        if not isinstance(tiny, TinyWorld):  # the registry types its factories as any World
            raise TypeError(f"the tiny world's factory built a {type(tiny).__name__}")
        self._tiny = tiny

    @property
    def has_oracle(self) -> bool:
        return True

    @cached_property
    def _taskset(self) -> TaskSet:
        split = tiny_world(self.seed, families=self.variant.families)
        return TaskSet(keep_train(self.name, self.seed, split.train, self.variant), split.heldout)

    def taskset(self) -> TaskSet:
        return self._taskset

    def oracle(self, prompt: Prompt, response: str) -> float | None:
        return verify(prompt, response)

    def invariant_probes(self, invariant_id: str) -> Sequence[str] | None:
        return None  # the held-out slice, as in the tiny world: every variant keeps the harmful family

    def join_meta(self, a: Prompt, b: Prompt) -> Mapping[str, Any] | None:
        return self._tiny.join_meta(a, b)

    # -- the tiny model of the seed ---------------------------------------------------------------------

    @property
    def model_folder(self) -> str:
        return self._tiny.model_folder

    @property
    def model_label(self) -> str:
        return self._tiny.model_label

    @property
    def build_estimate(self) -> str:
        return self._tiny.build_estimate

    def model_state(self, out_dir: Path) -> BuildState:
        return self._tiny.model_state(out_dir)

    def missing_model_files(self, out_dir: Path) -> list[str]:
        return self._tiny.missing_model_files(out_dir)

    def build_model(self, out_dir: Path, *, progress: bool, rebuild: bool, threads: ThreadsSetting) -> Path:
        return self._tiny.build_model(out_dir, progress=progress, rebuild=rebuild, threads=threads)

    def audit_probes(self, seed: int, n: int) -> AuditProbes:
        from tools.worlds.tiny.audit_probes import build_probes

        return build_probes(self.taskset(), seed=seed, n=n)
