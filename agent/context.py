"""Run-scoped services handed to every node through LangGraph's runtime context.

Heavy objects (the loaded model, the judge) live here, never in graph state, and are built once
per process: a resumed run rebuilds them from the store and the workspace.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from agent.config import TetherConfig
from agent.tracking import Tracker
from agent.workspace import Workspace
from guardrails.constitution import Constitution
from memory import Store
from policies.adapters import AdapterRef
from policies.generation import GenerationBackend, SamplingSpec, make_backend
from tools.judges import JUDGES, Judge
from tools.monitors import MONITORS, Monitor
from tools.prompts import PROMPT_GENERATORS, PromptGenerator
from tools.registry import Built
from tools.tasks import TaskSet, tiny_world


@dataclass(frozen=True)
class ActivePolicy:
    """The run's policy as an LLM judge sees it: whatever adapter is active when it is asked."""

    ctx: RunContext

    def generate(self, prompts: Sequence[str], spec: SamplingSpec) -> list[str]:
        run = self.ctx.store.get_run(self.ctx.run_id)
        assert run is not None
        adapter = self.ctx.adapter(run.active_checkpoint)
        return [g.text for g in self.ctx.backend.generate(list(prompts), adapter, spec)]


@dataclass
class RunContext:
    run_id: str
    workspace: Workspace
    store: Store
    config: TetherConfig
    constitution: Constitution
    tracker: Tracker
    progress: bool = False
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # seconds per stage
    counts: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # e.g. generated tokens

    @cached_property
    def model_ref(self) -> str:
        return self.workspace.model_ref(self.config)

    @cached_property
    def taskset(self) -> TaskSet:
        return tiny_world(seed=self.config.seed)

    @cached_property
    def backend(self) -> GenerationBackend:
        gen = self.config.generation
        with self.timed("load_model"):
            return make_backend(
                gen.backend,
                self.model_ref,
                device=self.config.model.device,
                dtype=self.config.model.dtype,
                batch_size=gen.batch_size,
                progress=self.progress,
            )

    @cached_property
    def judge(self) -> Built[Judge]:
        spec = self.config.judge
        return JUDGES.build(spec.name, spec.settings, constitution=self.constitution, policy=ActivePolicy(self))

    @cached_property
    def prompt_generator(self) -> Built[PromptGenerator]:
        return PROMPT_GENERATORS.build(self.config.prompts.generator)

    @cached_property
    def monitors(self) -> list[Built[Monitor]]:
        return [MONITORS.build(name) for name in MONITORS.names()]

    def use_constitution(self, constitution: Constitution) -> None:
        """Switch to an amended constitution: the judge is rebuilt from it on next use."""
        self.constitution = constitution
        self.__dict__.pop("judge", None)

    def adapter(self, checkpoint_id: str | None) -> AdapterRef | None:
        """The adapter a checkpoint id stands for; None for a base checkpoint."""
        if checkpoint_id is None:
            return None
        ck = self.store.get_checkpoint(checkpoint_id)
        if ck is None:
            raise LookupError(f"checkpoint {checkpoint_id} is not in the store")
        if ck.sha256 is None:
            return None
        return AdapterRef(id=ck.id, path=Path(ck.path), sha256=ck.sha256)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] += time.perf_counter() - start

    def close(self) -> None:
        if "judge" in self.__dict__ and hasattr(self.judge.plugin, "close"):
            self.judge.plugin.close()  # an `hf` judge holds a model of its own
        if "backend" in self.__dict__:
            self.backend.close()
        self.tracker.finish()

    def describe(self) -> dict[str, Any]:
        return {"judge": self.judge.spec(), "prompts": self.prompt_generator.spec()}
