"""What every node gets through LangGraph's runtime context: the run's settings and its services.

`RunContext` is frozen: it holds the settings (agent/run/services.py's `RunSettings`, fixed for the process)
and the services (`RunServices`, set up and closed by agent/run/runner.py), and reads what changes during a
run, the constitution version in force and the pools' slots, from the store on every use. Heavy objects
(the loaded model, the judge) live in the services, never in graph state: a resumed run rebuilds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from agent.config import TetherConfig
from agent.interventions.pool import SwitchablePool
from agent.run.faults import Fault
from agent.run.services import RunServices, RunSettings
from agent.run.splits import EvaluationSets, evaluated_before_split, evaluation_sets, heldout_slice
from agent.run.tracking import Tracker
from agent.run.workspace import Workspace
from guardrails import gate
from guardrails.constitution import Constitution
from guardrails.errors import TransientError
from guardrails.probes import ProbeSet, resolve_probe_sets
from memory import Run, RunPrompt, Store
from policies.generation import GenerationBackend
from tether_types import AdapterRef, Prompt, SamplingSpec
from tools.judges import Judge
from tools.monitors import Monitor
from tools.pairs import PairStrategy
from tools.prompts import PromptGenerator
from tools.registry import Built
from tools.worlds import TaskSet, World


@dataclass(frozen=True)
class ActivePolicy:
    """The run's policy as an LLM judge sees it: whatever adapter is active when it is asked."""

    ctx: RunContext

    def generate(self, prompts: Sequence[str], spec: SamplingSpec) -> list[str]:
        adapter = self.ctx.adapter(self.ctx.run.active_checkpoint)
        return [g.text for g in self.ctx.backend.generate(list(prompts), adapter, spec)]


@dataclass(frozen=True)
class RunContext:
    settings: RunSettings
    services: RunServices

    # -- settings ----------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.settings.run_id

    @property
    def workspace(self) -> Workspace:
        return self.settings.workspace

    @property
    def config(self) -> TetherConfig:
        return self.settings.config

    @property
    def progress(self) -> bool:
        return self.settings.progress

    @property
    def fault(self) -> Fault | None:
        return self.settings.fault

    # -- services ----------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def tracker(self) -> Tracker:
        return self.services.tracker

    @property
    def backend(self) -> GenerationBackend:
        return self.services.backend

    @property
    def world(self) -> Built[World]:
        return self.services.world

    @property
    def taskset(self) -> TaskSet:
        return self.services.taskset

    @property
    def train_pool(self) -> TaskSet:
        return self.services.train_pool

    @property
    def prompt_generator(self) -> Built[PromptGenerator]:
        return self.services.prompt_generator

    @property
    def monitors(self) -> list[Built[Monitor]]:
        return self.services.monitors

    @property
    def model_ref(self) -> str:
        return self.services.model_ref

    def verify_base(self) -> None:
        self.services.verify_base()

    @property
    def scored(self) -> dict[int, float]:
        """Sample id -> its mean log-prob per token under the run's pinned base model (agent/run/services.py)."""
        return self.services.base_scores()

    def timed(self, stage: str) -> AbstractContextManager[None]:
        return self.services.meter.timed(stage)

    @property
    def timings(self) -> dict[str, float]:
        return self.services.meter.timings

    @property
    def counts(self) -> dict[str, float]:
        return self.services.meter.counts

    # -- what changes during a run: read from the store --------------------------------------------

    @property
    def run(self) -> Run:
        run = self.store.get_run(self.run_id)
        if run is None:
            raise LookupError(f"run {self.run_id} is not in the store")
        return run

    @property
    def constitution(self) -> Constitution:
        """The version the run is on (plan moves it to a newly approved one at the start of a round)."""
        return self.services.constitution(self.run.constitution_version)[1]

    def prompt(self, prompt_id: str) -> Prompt:
        """A prompt by id: the task set's, or one this run wrote or mutated for itself."""
        try:
            return self.taskset.get(prompt_id)
        except KeyError:
            known = self.services.run_prompts
            if prompt_id not in known:
                known.update({p.id: _as_prompt(p) for p in self.store.run_prompts(self.run_id)})
            return known[prompt_id]

    @property
    def has_oracle(self) -> bool:
        """False for a world without verifiers: its oracle numbers are absent, never zeros."""
        return self.world.plugin.has_oracle

    def oracle(self, prompt: Prompt, response: str) -> float | None:
        """The world's verifier score; None for a prompt no verifier covers (a self-written one)."""
        if prompt.meta.get("unverified"):
            return None
        return self.world.plugin.oracle(prompt, response)

    def evaluation_sets(self) -> EvaluationSets | None:
        """The held-out prompts each candidate is evaluated on, as validation (the controller's) and test
        (reported only); None for a run that recorded an evaluation before the split: it keeps evaluating its
        one held-out set (agent/run/splits.py)."""
        if evaluated_before_split(self.store.checkpoints(self.run_id)):
            return None
        c = self.config
        return evaluation_sets(self.taskset, c.prompts.heldout, c.seed, c.evaluation.validation_fraction)

    def probe_sets(self) -> dict[str, ProbeSet]:
        """Each invariant's probe set, read afresh (guardrails compare it with the run's pins on every
        check). A probe file that cannot be read pauses the run: nothing is decided without it."""
        heldout = [p.text for p in heldout_slice(self.taskset, self.config.prompts.heldout)]
        sets, problems = resolve_probe_sets(self.constitution, self.config.inputs.confined_to(self.workspace.home),
                                            heldout, self.world.plugin.invariant_probes)
        if problems:
            raise TransientError("; ".join(problems) + "; restore it and `tether resume`")
        return sets

    # -- the switchable pools (agent/interventions/pool.py): the slot in force is read from the store ----

    @property
    def judges(self) -> SwitchablePool[Judge]:
        return self.services.judges

    @property
    def pair_strategies(self) -> SwitchablePool[PairStrategy]:
        return self.services.pair_strategies

    @property
    def judge_slot(self) -> int:
        """The judge pool's slot in force: moved on by every judge switch the run made."""
        return self.judges.slot(self.store.rounds(self.run_id))

    @property
    def judge(self) -> Built[Judge]:
        """The judge of the run's slot, built for the constitution in force: rebuilt (the one before closed)
        when either moves on."""
        digest, constitution = self.services.constitution(self.run.constitution_version)
        # run_round: a judge whose verdicts change over a run (the `degrading` fixture) reads the round in progress
        # from the store on each call, so a resumed run sees the round it was in.
        return self.judges.build(self.judge_slot, digest, constitution=constitution, policy=ActivePolicy(self),
                                 run_round=lambda: self.run.round)

    def judge_label(self, slot: int | None = None) -> str:
        """A judge of the pool by name, with its slot when the pool holds that name twice."""
        return self.judges.label(self.judge_slot if slot is None else slot)

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


def _as_prompt(p: RunPrompt) -> Prompt:
    return Prompt(p.id, p.text, p.family, "train", p.meta)
