"""Run-scoped services handed to every node through LangGraph's runtime context.

Heavy objects (the loaded model, the judge) live here, never in graph state, and are built once
per process: a resumed run rebuilds them from the store and the workspace.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from agent.config import TetherConfig
from agent.faults import Fault
from agent.tracking import Tracker
from agent.workspace import Workspace
from guardrails import gate
from guardrails.constitution import Constitution
from guardrails.errors import TransientError
from guardrails.probes import ProbeSet, resolve_probe_sets
from memory import Run, RunPrompt, Store
from policies.artifacts import ModelIntegrityError, model_folder, verify_model
from policies.generation import GenerationBackend, make_backend
from tether_types import AdapterRef, Prompt, SamplingSpec
from tools.judges import JUDGES, Judge
from tools.monitors import MONITORS, Monitor
from tools.prompts import PROMPT_GENERATORS, PromptGenerator
from tools.registry import Built
from tools.worlds import WORLDS, TaskSet, World


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
    fault: Fault | None = None  # fault injection for the kill tests (agent/faults.py)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # seconds per stage
    counts: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # e.g. generated tokens
    # sample id -> its mean log-prob per token under the base model (pinned for the run): scored once in
    # a process, by whichever asks first, the pairs node (regularized) or the drift monitor
    scored: dict[int, float] = field(default_factory=dict, repr=False)
    _run_prompts: dict[str, Prompt] = field(default_factory=dict, repr=False)
    _nested: list[float] = field(default_factory=list, repr=False)  # seconds of stages inside open ones

    @cached_property
    def model_ref(self) -> str:
        """What `from_pretrained` loads: the pinned base, resolved against the workspace (not the
        working directory) when it lives inside it."""
        base = self.run.base_model or {}
        ref = str(base.get("ref") or self.workspace.model_ref(self.config))
        return str(self.store.resolve(ref)) if base.get("in_workspace") else ref

    @property
    def run(self) -> Run:
        run = self.store.get_run(self.run_id)
        if run is None:
            raise LookupError(f"run {self.run_id} is not in the store")
        return run

    def verify_base(self) -> None:
        """Every load of the base model checks its files against the digest pinned at run start."""
        base = self.run.base_model
        if not base:
            raise ModelIntegrityError(f"run {self.run_id} has no pinned base model (started before pinning existed?)")
        try:
            verify_model(model_folder(self.model_ref), base)
        except OSError as err:  # moved or unmounted: nothing to decide on, so the run pauses
            raise TransientError(f"the base model could not be read ({err}); restore it and `tether resume`") from None

    @cached_property
    def world(self) -> Built[World]:
        return build_world(self.config, self.workspace.home)

    @cached_property
    def taskset(self) -> TaskSet:
        return self.world.plugin.taskset()

    @cached_property
    def backend(self) -> GenerationBackend:
        gen = self.config.generation
        with self.timed("load_model"):
            self.verify_base()
            return make_backend(
                gen.backend,
                self.model_ref,
                device=self.config.model.device,
                dtype=self.config.model.dtype,
                batch_size=gen.batch_size,
                progress=self.progress,
                **({"batching": gen.batching} if gen.backend == "transformers" else {}),
            )

    @cached_property
    def train_pool(self) -> TaskSet:
        """The task set the pool generator draws from: the train split, capped at prompts.pool_size."""
        size = self.config.prompts.pool_size
        if size is None or size >= len(self.taskset.train):
            return self.taskset
        pool = list(self.taskset.train)
        random.Random(f"tether-pool/{self.config.seed}").shuffle(pool)
        return TaskSet(tuple(pool[:size]), self.taskset.heldout)

    def prompt(self, prompt_id: str) -> Prompt:
        """A prompt by id: the task set's, or one this run wrote or mutated for itself."""
        try:
            return self.taskset.get(prompt_id)
        except KeyError:
            if prompt_id not in self._run_prompts:
                self._run_prompts.update({p.id: _as_prompt(p) for p in self.store.run_prompts(self.run_id)})
            return self._run_prompts[prompt_id]

    @property
    def has_oracle(self) -> bool:
        """False for a world without verifiers: its oracle numbers are absent, never zeros."""
        return self.world.plugin.has_oracle

    def oracle(self, prompt: Prompt, response: str) -> float | None:
        """The world's verifier score; None for a prompt no verifier covers (a self-written one)."""
        if prompt.meta.get("unverified"):
            return None
        return self.world.plugin.oracle(prompt, response)

    def probe_sets(self) -> dict[str, ProbeSet]:
        """Each invariant's probe set, read afresh (guardrails compare it with the run's pins on every
        check). A probe file that cannot be read pauses the run: nothing is decided without it."""
        heldout = [p.text for p in heldout_slice(self.taskset, self.config.prompts.heldout)]
        sets, problems = resolve_probe_sets(self.constitution, self.config.inputs.confined_to(self.workspace.home),
                                            heldout, self.world.plugin.invariant_probes)
        if problems:
            raise TransientError("; ".join(problems) + "; restore it and `tether resume`")
        return sets

    @property
    def judge_slot(self) -> int:
        run = self.store.get_run(self.run_id)
        return 0 if run is None else run.judge_slot

    @cached_property
    def judge(self) -> Built[Judge]:
        spec = self.config.judge.slots()[self.judge_slot]
        return JUDGES.build(spec.name, spec.settings, constitution=self.constitution, policy=ActivePolicy(self))

    def judge_label(self, slot: int | None = None) -> str:
        """A judge of the pool by name, with its slot when the pool holds that name twice."""
        slots = self.config.judge.slots()
        slot = self.judge_slot if slot is None else slot
        name = slots[slot].name
        return name if sum(s.name == name for s in slots) == 1 else f"{name}#{slot}"

    def use_judge_slot(self, slot: int) -> None:
        """Move the run to another judge of the pool: rebuilt on next use."""
        self.store.update_run(self.run_id, judge_slot=slot)
        self._drop_judge()

    def _drop_judge(self) -> None:
        judge = self.__dict__.pop("judge", None)
        if judge is not None and hasattr(judge.plugin, "close"):
            judge.plugin.close()

    @cached_property
    def prompt_generator(self) -> Built[PromptGenerator]:
        return PROMPT_GENERATORS.build(self.config.prompts.generator)

    @cached_property
    def monitors(self) -> list[Built[Monitor]]:
        return [MONITORS.build(name) for name in MONITORS.names()]

    def use_constitution(self, constitution: Constitution) -> None:
        """Switch to an amended constitution: the judge is rebuilt from it on next use."""
        self.constitution = constitution
        self._drop_judge()

    def adapter(self, checkpoint_id: str | None) -> AdapterRef | None:
        """The adapter a checkpoint id stands for; None for a base checkpoint. The run's active
        checkpoint is checked against its audited activation and signed approval on every load."""
        if checkpoint_id is None:
            return None
        ck = self.store.get_checkpoint(checkpoint_id)
        if ck is None:
            raise LookupError(f"checkpoint {checkpoint_id} is not in the store")
        run = self.run
        if checkpoint_id == run.active_checkpoint:
            gate.verified_active(self.store, run)
        if ck.sha256 is None:
            return None
        return AdapterRef(id=ck.id, path=self.store.resolve(ck.path), sha256=ck.sha256)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Seconds spent in `stage`, exclusive: a stage timed inside another (the model load inside the first
        generate) counts once, in itself, and not again in the enclosing stage."""
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.timings[stage] += elapsed - self._nested.pop()
            if self._nested:
                self._nested[-1] += elapsed

    def close(self) -> None:
        if "judge" in self.__dict__ and hasattr(self.judge.plugin, "close"):
            self.judge.plugin.close()  # an `hf` judge holds a model of its own
        if "backend" in self.__dict__:
            self.backend.close()
        self.tracker.log_decisions(self.store.decisions(self.run_id))
        self.tracker.finish()

    def describe(self) -> dict[str, Any]:
        return {"judge": self.judge.spec(), "prompts": self.prompt_generator.spec(), "world": self.world.spec()}


def build_world(config: TetherConfig, root: Path) -> Built[World]:
    """The configured world; `root` (the workspace) anchors its relative paths, and its files are confined
    to the workspace and `inputs.roots` (guardrails/inputs.py). Raises WorldError, UnknownPluginError or
    PluginSettingsError when it cannot be built as configured."""
    return WORLDS.build(config.world.name, config.world.settings, seed=config.seed, root=root,
                        inputs=config.inputs.confined_to(root))


def heldout_slice(taskset: TaskSet, n: int) -> list[Prompt]:
    """A fixed slice of the held-out split, balanced across families (round-robin)."""
    by_family: dict[str, list[Prompt]] = {}
    for p in taskset.heldout:
        by_family.setdefault(p.family, []).append(p)
    interleaved = [p for group in itertools.zip_longest(*by_family.values()) for p in group if p is not None]
    return interleaved[:n]


def _as_prompt(p: RunPrompt) -> Prompt:
    return Prompt(p.id, p.text, p.family, "train", p.meta)
