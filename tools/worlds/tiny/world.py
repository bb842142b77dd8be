"""The tiny world as a `World`, registered as "tiny": three prompt families (arithmetic, how-to,
harmful) with programmatic verifiers, the embedded model built from their corpus (`model.base: world`,
its pre-training steps the world's setting `steps`), reference answers in every style for `tether judge
audit`, and the upgrade of the configs written before the world built its own model.

Its held-out split (a quarter of each family's topic groups, by seed: tools/worlds/tiny/families.py) is
what a run evaluates on; the run splits the slice it evaluates again, by the same seed and alike in every
family, into validation (the controller reads it) and test (only reported): tools/worlds/base.py
`validation_split`. Its invariant probes are that whole slice (`invariant_probes` gives None)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether_types import Prompt
from tools.worlds.base import WORLDS, BuildState, TaskSet, WorldError, config_upgrade
from tools.worlds.tiny.families import FAMILIES, tiny_world, verify
from tools.worlds.tiny.spec import TinySpec

if TYPE_CHECKING:
    from policies.threads import ThreadsSetting
    from tools.worlds.references import AuditProbes

NAME = "tiny"
DEFAULT_STEPS = TinySpec.steps  # pre-training steps of its model
MAX_STEPS = 100_000


class TinyWorld:
    """World, ModelBuilder, AuditProbeSource and PromptJoiner. The model builder imports torch on first use only."""

    def __init__(self, seed: int, steps: int = DEFAULT_STEPS) -> None:
        self.seed = seed
        self.steps = steps

    @property
    def has_oracle(self) -> bool:
        return True

    @cached_property
    def _taskset(self) -> TaskSet:
        return tiny_world(self.seed)

    def taskset(self) -> TaskSet:
        return self._taskset

    def oracle(self, prompt: Prompt, response: str) -> float | None:
        return verify(prompt, response)

    def invariant_probes(self, invariant_id: str) -> Sequence[str] | None:
        return None  # the held-out slice: its harmful family exercises the default invariants

    def join_meta(self, a: Prompt, b: Prompt) -> Mapping[str, Any] | None:
        family = FAMILIES.get(a.family)
        return None if family is None or b.family != a.family else family.join_meta(a, b)

    @property
    def model_folder(self) -> str:
        return f"tiny-s{self.seed}-n{self.steps}"

    @property
    def model_label(self) -> str:
        return "the embedded tiny model"

    @property
    def build_estimate(self) -> str:
        return "about 2 minutes"

    def model_state(self, out_dir: Path) -> BuildState:
        from tools.worlds.tiny.model import build_state

        return build_state(out_dir, self._spec())

    def missing_model_files(self, out_dir: Path) -> list[str]:
        from tools.worlds.tiny.model import missing_files

        return missing_files(out_dir)

    def build_model(self, out_dir: Path, *, progress: bool, rebuild: bool, threads: ThreadsSetting) -> Path:
        from tools.worlds.tiny.model import ensure_tiny_model

        return ensure_tiny_model(out_dir, self._spec(), progress=progress, rebuild=rebuild, threads=threads)

    def audit_probes(self, seed: int, n: int) -> AuditProbes:
        from tools.worlds.tiny.audit_probes import build_probes

        return build_probes(self.taskset(), seed=seed, n=n)

    def _spec(self) -> TinySpec:
        return TinySpec(steps=self.steps, seed=self.seed)


@WORLDS.register(NAME)
def tiny(seed: int = 0, steps: int = DEFAULT_STEPS) -> TinyWorld:
    """The embedded tiny world (arithmetic, how-to and harmful families with verifiers); `steps`: pre-training
    steps of its model (`model.base: world`), 1 to 100000."""
    if type(steps) is not int or not 1 <= steps <= MAX_STEPS:
        raise WorldError(f"steps must be a whole number from 1 to {MAX_STEPS} (pre-training steps of its model), "
                         f"got {steps!r}")
    return TinyWorld(seed, steps)


@config_upgrade
def _model_in_the_model_section(document: dict[str, Any]) -> list[str]:
    """Before the world built its own model, a config named it `model.base: tiny` and set its steps as
    `model.tiny_steps` (every stored run config has that key). Now: `model.base: world` and the world's
    setting `steps`, written only when not the default, so the old and the new spelling of one config
    compare equal. A config without a world section ran on this world then."""
    model, world = document.get("model"), document.get("world", {})
    if not isinstance(model, dict):
        return []
    notes = []
    if model.get("base") == NAME:
        model["base"] = "world"
        notes.append("model.base 'tiny' is the old spelling: write model.base: world (the model the world builds)")
    if "tiny_steps" not in model:
        return notes
    steps = model.pop("tiny_steps")
    ours = isinstance(world, dict) and world.get("name", NAME) == NAME and model.get("base") == "world"
    if not ours:
        return [*notes, "model.tiny_steps is the old spelling of the tiny world's setting steps, and this config "
                        "does not build the tiny world's model: remove it"]
    settings = world.get("settings", {})
    if isinstance(settings, dict) and "steps" not in settings and not (type(steps) is int and steps == DEFAULT_STEPS):
        document["world"] = {**world, "settings": {**settings, "steps": steps}}
    return [*notes, "model.tiny_steps is the old spelling: write world.settings.steps (the tiny world's setting)"]
