"""A run's settings and its services: what the runner sets up for one process and closes at its end.

`RunSettings` is what the run was started with and never changes while the graph runs. `RunServices`
holds the heavy objects (the generation backend, the judge, the world and its task set, the prompt
generator, the monitors, the tracker) and the caches, each keyed by what it depends on. What changes
during a run (the constitution version, the judge slot) is read from the store, never kept here.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.config import TetherConfig
from agent.interventions.pool import SwitchablePool, judge_pool, pair_pool
from agent.run.faults import Fault
from agent.run.tracking import Tracker
from agent.run.workspace import Workspace
from agent.run.world_model import model_ref
from guardrails.constitution import Constitution, parse_constitution
from guardrails.errors import TransientError
from memory import Run, Store
from policies.artifacts import ModelIntegrityError, model_folder, verify_model
from policies.generation import GenerationBackend, make_backend
from policies.sharded import ShardedBackend
from tether_types import Prompt
from tools.judges import Judge
from tools.monitors import MONITORS, Monitor
from tools.pairs import PairStrategy
from tools.prompts import PROMPT_GENERATORS, PromptGenerator
from tools.registry import Built
from tools.worlds import WORLDS, TaskSet, World


@dataclass(frozen=True)
class RunSettings:
    """What a run is driven with in this process: fixed from the start of `drive` to its end."""

    run_id: str
    workspace: Workspace
    config: TetherConfig
    progress: bool = False
    fault: Fault | None = None  # fault injection for the kill tests (agent/run/faults.py)


@dataclass
class Meter:
    """Seconds per stage and counts (e.g. generated tokens) in this process, for the run's Outcome."""

    timings: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    _nested: list[float] = field(default_factory=list, repr=False)  # seconds of stages inside open ones

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


class RunServices:
    """The services of one run in one process. `setup` opens them (the tracker), each heavy one is built on
    first use (a run that only waits at the gate loads no model), and `close` releases them; use it as a
    context manager. The store is the caller's: it is used, not closed, here."""

    def __init__(self, settings: RunSettings, store: Store, tracker: Tracker) -> None:
        self.settings = settings
        self.store = store
        self.tracker = tracker
        self.meter = Meter()
        # The switchable pools (agent/interventions/pool.py): each holds the built plug-in of its slot, a judge
        # also keyed by the constitution text it reads; the slot in force is read from the store.
        self.judges: SwitchablePool[Judge] = judge_pool(settings.config)
        self.pair_strategies: SwitchablePool[PairStrategy] = pair_pool(settings.config)
        # Caches, keyed by what they depend on: a constitution by its recorded text; a run prompt by its id
        # (a digest of its family and text); a base-model score by the base's digest and the sample id.
        self._constitutions: dict[tuple[int, str], Constitution] = {}
        self.run_prompts: dict[str, Prompt] = {}
        self._base_scores: defaultdict[str, dict[int, float]] = defaultdict(dict)

    @classmethod
    def setup(cls, settings: RunSettings, store: Store) -> RunServices:
        run = _run(store, settings.run_id)
        return cls(settings, store, Tracker(settings.config.tracking, run.id, settings.workspace.wandb_dir, run.config))

    def __enter__(self) -> RunServices:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.judges.close()
        if "backend" in self.__dict__:
            self.backend.close()
        self.tracker.log_decisions(self.store.decisions(self.settings.run_id))
        self.tracker.finish()

    # -- the constitution version's text, parsed once ------------------------------------------------

    def constitution(self, version: int) -> tuple[str, Constitution]:
        """(digest of its text, the parsed text) of a recorded constitution version."""
        recorded = self.store.get_constitution_version(version)
        if recorded is None:
            raise LookupError(f"constitution v{version} of run {self.settings.run_id} is not in the store")
        digest = hashlib.sha256(recorded.content.encode()).hexdigest()
        key = (version, digest)
        if key not in self._constitutions:
            self._constitutions[key] = parse_constitution(recorded.content, f"constitution v{version}")
        return digest, self._constitutions[key]

    def base_scores(self) -> dict[int, float]:
        """Sample id -> its mean log-prob per token under the run's pinned base model (by its digest): scored
        once in a process, by whichever asks first, the pairs node (regularized) or the drift monitor."""
        return self._base_scores[str(self.pinned_base()["sha256"])]

    # -- the base model and the backend that generates with it -----------------------------------------

    @property
    def model_ref(self) -> str:
        """What `from_pretrained` loads: the pinned base, resolved against the workspace (not the
        working directory) when it lives inside it."""
        base = _run(self.store, self.settings.run_id).base_model or {}
        settings = self.settings
        ref = str(base.get("ref") or model_ref(settings.workspace, settings.config, lambda: self.world.plugin))
        return str(self.store.resolve(ref)) if base.get("in_workspace") else ref

    def pinned_base(self) -> dict[str, Any]:
        """The base model's manifest pinned at run start (its ref, digest and files)."""
        run_id = self.settings.run_id
        base = _run(self.store, run_id).base_model
        if not base:
            raise ModelIntegrityError(f"run {run_id} has no pinned base model (started before pinning existed?)")
        return dict(base)

    def verify_base(self) -> None:
        """Every load of the base model checks its files against the digest pinned at run start."""
        base = self.pinned_base()
        try:
            verify_model(model_folder(self.model_ref), base)
        except OSError as err:  # moved or unmounted: nothing to decide on, so the run pauses
            raise TransientError(f"the base model could not be read ({err}); restore it and `tether resume`") from None

    @cached_property
    def backend(self) -> GenerationBackend:
        config = self.settings.config
        gen = config.generation
        with self.meter.timed("load_model"):
            self.verify_base()
            if gen.backend == "transformers" and gen.workers > 1:
                import torch  # the threads this run chose (model.threads), shared by the workers

                return ShardedBackend(self.model_ref, gen.workers, torch.get_num_threads(),
                                      progress=self.settings.progress, **backend_settings(config))
            return make_backend(gen.backend, self.model_ref, progress=self.settings.progress,
                                **backend_settings(config))

    # -- the world and the plug-ins built from the settings --------------------------------------------

    @cached_property
    def world(self) -> Built[World]:
        return build_world(self.settings.config, self.settings.workspace.home)

    @cached_property
    def taskset(self) -> TaskSet:
        return self.world.plugin.taskset()

    @cached_property
    def train_pool(self) -> TaskSet:
        """The task set the pool generator draws from: the train split, capped at prompts.pool_size."""
        config = self.settings.config
        size = config.prompts.pool_size
        if size is None or size >= len(self.taskset.train):
            return self.taskset
        pool = list(self.taskset.train)
        random.Random(f"tether-pool/{config.seed}").shuffle(pool)
        return TaskSet(tuple(pool[:size]), self.taskset.heldout)

    @cached_property
    def prompt_generator(self) -> Built[PromptGenerator]:
        return PROMPT_GENERATORS.build(self.settings.config.prompts.generator)

    @cached_property
    def monitors(self) -> list[Built[Monitor]]:
        return [MONITORS.build(name) for name in MONITORS.names()]


def backend_settings(config: TetherConfig) -> dict[str, Any]:
    """The constructor settings of the configured generation backend (policies/generation.py make_backend)."""
    gen = config.generation
    if gen.server is not None:  # backend server: the completions server holds the weights
        return gen.server.model_dump()
    local = {"device": config.model.device, "dtype": config.model.dtype, "batch_size": gen.batch_size}
    return {**local, "batching": gen.batching} if gen.backend == "transformers" else local


def _run(store: Store, run_id: str) -> Run:
    run = store.get_run(run_id)
    if run is None:
        raise LookupError(f"run {run_id} is not in the store")
    return run


def build_world(config: TetherConfig, root: Path) -> Built[World]:
    """The configured world; `root` (the workspace) anchors its relative paths, and its files are confined
    to the workspace and `inputs.roots` (guardrails/inputs.py). Raises WorldError, UnknownPluginError or
    PluginSettingsError when it cannot be built as configured."""
    return WORLDS.build(config.world.name, config.world.settings, seed=config.seed, root=root,
                        inputs=config.inputs.confined_to(root))
