"""The tiny world as a `World`, registered as "tiny": three prompt families (arithmetic, how-to,
harmful) with programmatic verifiers, the embedded model built from their corpus (`model.base:
tiny`), and reference answers in every style for `tether judge audit`."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from tether_types import Prompt
from tools.worlds.base import WORLDS, BuildState, TaskSet
from tools.worlds.tiny.families import tiny_world, verify

if TYPE_CHECKING:
    from policies.threads import ThreadsSetting
    from tools.worlds.references import AuditProbes
    from tools.worlds.tiny.model import TinySpec


class TinyWorld:
    """World, ModelBuilder and AuditProbeSource. The model builder imports torch on first use only."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

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

    def model_state(self, out_dir: Path, steps: int) -> BuildState:
        from tools.worlds.tiny.model import build_state

        return build_state(out_dir, self._spec(steps))

    def missing_model_files(self, out_dir: Path) -> list[str]:
        from tools.worlds.tiny.model import missing_files

        return missing_files(out_dir)

    def build_model(self, out_dir: Path, steps: int, *, progress: bool, rebuild: bool,
                    threads: ThreadsSetting) -> Path:
        from tools.worlds.tiny.model import ensure_tiny_model

        return ensure_tiny_model(out_dir, self._spec(steps), progress=progress, rebuild=rebuild, threads=threads)

    def audit_probes(self, seed: int, n: int) -> AuditProbes:
        from tools.worlds.tiny.audit_probes import build_probes

        return build_probes(self.taskset(), seed=seed, n=n)

    def _spec(self, steps: int) -> TinySpec:
        from tools.worlds.tiny.model import TinySpec

        return TinySpec(steps=steps, seed=self.seed)


@WORLDS.register("tiny")
def tiny(seed: int = 0) -> TinyWorld:
    """The embedded tiny world (arithmetic, how-to and harmful families with verifiers); no settings."""
    return TinyWorld(seed)
