"""Start, drive and resume runs: the graph plus the bookkeeping around it.

A run is one LangGraph thread (thread_id = run id) checkpointed in the workspace's graph.db, so
it survives its process: `resume` picks it up from the last completed node. One process drives a
run at a time (an advisory file lock); approvals arrive through the store from any process. How a run
that stops moving is recorded and who is told: agent/run/ending.py.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from langgraph.types import Command

from agent.config import WORLD_MODEL, TetherConfig
from agent.run import judge_trust, preflight
from agent.run.context import RunContext
from agent.run.ending import record_end, tell, terminated_outside_nodes
from agent.run.faults import Fault
from agent.run.graph import checkpointer, compile_graph
from agent.run.learned import adopted_learner
from agent.run.locks import RunBusyError, is_driven, run_lock  # noqa: F401  (re-exported: the CLI's names)
from agent.run.services import RunServices, RunSettings, build_world
from agent.run.terminate import Stop, Terminated, terminate_as_exception
from agent.run.workspace import Workspace
from agent.run.world_checks import world_checks
from agent.run.world_model import model_builder, model_ref, world_model_dir
from guardrails import amendments, candidates, lifecycle, lineage
from guardrails.constitution import parse_constitution, read_constitution
from guardrails.errors import DeniedError, TamperError, TransientError
from memory import ConstitutionVersion, Run, Store
from policies.artifacts import ModelIntegrityError, model_folder
from policies.threads import apply_threads
from tether_types import EXIT_USAGE, TetherError
from tools.registry import PluginSettingsError, UnknownPluginError
from tools.worlds import WorldError

Say = Callable[[str], None]
POLL_SECONDS = 1.0


class RunNotFoundError(TetherError, LookupError):
    exit_code = EXIT_USAGE


class ModelNotFoundError(TetherError, FileNotFoundError):
    exit_code = EXIT_USAGE


class RunTamperError(TetherError, RuntimeError):
    """A check found tampering (a forged approval, a changed base model): the run is marked failed and
    stays so until a person has looked; nothing was activated."""

    def __init__(self, run_id: str, error: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} stopped: {error}")


class RunFailedError(TetherError, RuntimeError):
    """A node raised; the run is marked failed and `tether resume` continues it."""

    def __init__(self, run_id: str, error: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} failed: {error}")


@dataclass(frozen=True)
class Outcome:
    run_id: str
    state: Literal["paused", "stopped", "failed"]
    approval_id: str | None = None
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage in this process
    counts: dict[str, float] = field(default_factory=dict)


class RunStartError(TetherError, ValueError):
    """The run cannot start as configured; nothing was written (CLI exit 2)."""
    exit_code = EXIT_USAGE


def ensure_model(ws: Workspace, config: TetherConfig, say: Say, progress: bool = False, *,
                 rebuild: bool = False) -> str:
    """What a run loads (`from_pretrained` takes it). The model `model.base: world` names is built into the
    workspace by the world, with a message and a progress bar, on the threads the run chooses
    (`model.threads`), when its folder is absent, holds another spec's build, or `rebuild` is set; a folder left
    incomplete is an error naming the missing files, never rebuilt silently."""
    if config.model.base == WORLD_MODEL:
        world = build_world(config, ws.home).plugin
        try:
            builder = model_builder(config, world)
        except WorldError as err:
            raise ModelNotFoundError(str(err)) from None
        target = world_model_dir(ws, config, world)
        state = builder.model_state(target)
        if state == "incomplete" and not rebuild:
            raise ModelNotFoundError(
                f"{builder.model_label} in {target} is incomplete ({', '.join(builder.missing_model_files(target))} "
                "missing): rebuild it with `tether run --rebuild-model`, or delete the folder and `tether run` "
                "builds it")
        if rebuild:
            say(f"rebuilding {builder.model_label} into {target} ({builder.build_estimate})")
        elif state == "absent":
            say(f"building {builder.model_label} into {target} (one time, {builder.build_estimate})")
        elif state == "other_spec":
            say(f"rebuilding {builder.model_label} in {target}: it holds a build of another spec "
                f"({builder.build_estimate})")
        # the run's thread choice: a build on torch's default threads on a busy machine oversubscribes it
        builder.build_model(target, progress=progress, rebuild=rebuild, threads=config.model.threads)
        return str(target)
    if rebuild:
        raise RunStartError(f"--rebuild-model rebuilds the model the world builds (model.base '{WORLD_MODEL}'); "
                            f"model.base is {config.model.base}")
    if config.model.base.startswith(("/", ".", "~")) and not Path(config.model.base).expanduser().is_dir():
        raise ModelNotFoundError(
            f"model.base {config.model.base} is not a directory; point it at a saved Hugging Face model "
            f"(save_pretrained output), a hub id in the local cache, or '{WORLD_MODEL}'"
        )
    return config.model.base


def run_preflight(ws: Workspace, config: TetherConfig) -> list[preflight.Finding]:
    """Pre-flight the run `config` describes (agent/run/preflight.py); the world's model not built yet skips the
    model checks (it is built from known-good settings), as does a world that cannot build it (world_checks
    says why)."""
    try:
        folder: Path | None = model_folder(model_ref(ws, config, lambda: build_world(config, ws.home).plugin))
    except (FileNotFoundError, WorldError, UnknownPluginError, PluginSettingsError):
        folder = None
    return preflight.preflight(config, folder)


def constitution_file_problem(ws: Workspace, version: ConstitutionVersion) -> str | None:
    """Why a run refuses the workspace's constitution file (it differs from `version`, the one in force), or
    None. The file is an input to `constitution propose`, never a silent new version; `validate` says it too."""
    if ws.constitution_path.is_file() and ws.constitution_path.read_text() != version.content:
        return (f"{ws.constitution_path} differs from constitution v{version.version}, the version in force. A run "
                f"uses only approved versions: propose the edit with `tether constitution propose "
                f"{ws.constitution_path} --by NAME`, or restore the file (`tether constitution show --yaml`)")
    return None


def _require_constitution_file(ws: Workspace, version: ConstitutionVersion) -> None:
    problem = constitution_file_problem(ws, version)
    if problem is not None:
        raise RunStartError(problem)


def start_run(ws: Workspace, store: Store, config: TetherConfig, *, say: Say, wait: bool,
              progress: bool = False, rebuild_model: bool = False, from_checkpoint: str | None = None,
              fault: Fault | None = None) -> Outcome:
    """A new run; with `from_checkpoint`, it starts from that approved adapter of an earlier run. `fault`
    is the kill tests' fault injection (agent/run/faults.py)."""
    if from_checkpoint is not None:
        source = store.get_checkpoint(from_checkpoint)
        if source is None or source.status != "approved" or source.sha256 is None:
            raise RunStartError(f"{from_checkpoint} is not an approved adapter (see `tether checkpoints`)")
    version, constitution = amendments.in_force(store)
    _require_constitution_file(ws, version)
    checked = world_checks(ws.home, config, constitution)  # the world's prompts, the invariants' probes
    if checked.problems:
        raise RunStartError("; ".join(checked.problems))
    untrusted = judge_trust.audit_problems(store, config)  # judge.require_audit: before any model work
    if untrusted:
        raise RunStartError("; ".join(untrusted))
    adopted_learner(store, config.controller, config.seed)  # controller.policy: learned: an approved file only
    model_ref = ensure_model(ws, config, say, progress=progress, rebuild=rebuild_model)
    findings = run_preflight(ws, config)
    if preflight.problems(findings):
        raise RunStartError("; ".join(preflight.problems(findings)))
    folder = model_folder(model_ref)
    manifest = candidates.pin_base(folder)
    run_id = f"run-{time.strftime('%Y%m%d')}-{secrets.token_hex(3)}"
    with store.transaction():
        store.create_run(Run(
            id=run_id, config=config.model_dump(mode="json"), config_sha256=config.sha256(),
            seed=config.seed, rounds_budget=config.controller.rounds, constitution_version=version.version,
            invariants=constitution.invariant_digests(), invariants_sha256=constitution.invariants_sha256(),
            state="running", round=0, thread_id=run_id, error=None,
        ))
        store.append_audit("tether", "run.start", run_id,
                           {"config_sha256": config.sha256(), "invariants_sha256": constitution.invariants_sha256(),
                            "constitution_version": version.version, "base_sha256": manifest.sha256,
                            "lineage": amendments.lineage_of(store, version), "from": from_checkpoint})
        candidates.pin_probes(store, run_id, checked.probe_sets)
        candidates.register_base(store, run_id, model_ref, folder, manifest)
        if from_checkpoint is not None:
            lifecycle.inherit(store, run_id, from_checkpoint, ws.adapter_dir(run_id, f"{run_id}-r0"))
    say(f"run {run_id}")
    return drive(ws, store, run_id, {"run_id": run_id, "round": 0}, say=say, wait=wait, progress=progress,
                 fault=fault)


def resume_run(ws: Workspace, store: Store, run_id: str, *, say: Say, wait: bool, progress: bool = False,
               fault: Fault | None = None) -> Outcome:
    run = store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run '{run_id}' (see `tether status`)")
    if run.state == "stopped":
        return Outcome(run_id, "stopped", message=f"run {run_id} has stopped; start a new one with `tether run`")
    _check_workspace_file(ws, store, run)
    kept = lineage.kept_note(store, run)  # a run resumed after a new lineage came into force keeps its own
    if kept:
        say(kept)
    return drive(ws, store, run_id, None, say=say, wait=wait, progress=progress, fault=fault)


def _check_workspace_file(ws: Workspace, store: Store, run: Run) -> None:
    """The workspace file may not change the run's invariants: it holds them, or it is the text in force of a
    lineage founded after the run started (the run keeps its own version; guardrails/amendments.py)."""
    text, constitution = read_constitution(ws.constitution_path)
    amendments.verify_workspace_file(store, run, text, constitution)


def _check_recorded_constitution(store: Store, run: Run) -> None:
    """The run's constitution version is recorded and parses (nodes read it from the store as they go), and the
    run is still in the lineage, with the pins, it started with: a row edited to move it fails it as tampered."""
    version = run.constitution_version
    recorded = store.get_constitution_version(version)
    if recorded is None:
        raise RunStartError(f"constitution v{version} of this run is not in the store")
    parse_constitution(recorded.content, f"constitution v{version}")
    try:
        lineage.verify_run(store, run)
    except TamperError as err:
        raise RunTamperError(run.id, record_end(store, run.id, "failed", f"tampering: {err}",
                                                {"tampering": True})) from None


def drive(ws: Workspace, store: Store, run_id: str, initial: dict[str, Any] | None, *, say: Say,
          wait: bool, progress: bool = False, fault: Fault | None = None) -> Outcome:
    """Run the graph until it stops, fails, or pauses at the gate (and, with wait, past it)."""
    with run_lock(ws, run_id), terminate_as_exception() as stop:
        try:
            outcome = _set_up_and_drive(ws, store, run_id, initial, say=say, wait=wait, progress=progress,
                                        fault=fault, stop=stop)
            stop.check()  # a SIGTERM whose raise was swallowed after the last node (in a finalizer) still counts
        except Terminated as err:  # outside a node: before the graph ran, or after it paused or stopped
            raise RunFailedError(run_id, terminated_outside_nodes(store, run_id, err)) from err
        return outcome


def _set_up_and_drive(ws: Workspace, store: Store, run_id: str, initial: dict[str, Any] | None, *, say: Say,
                      wait: bool, progress: bool, fault: Fault | None, stop: Stop) -> Outcome:
    run = store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"no run '{run_id}' (see `tether status`)")
    if initial is None:  # a resume: the lab notebook shows it between the rounds
        store.append_audit("tether", "run.resume", run_id,
                           {"run": run_id, "from_state": run.state, "round": run.round, "error": run.error})
    config = TetherConfig.model_validate(run.config)
    threads = apply_threads(config.model.threads)  # process-wide: generation and in-process training
    store.append_audit("tether", "run.threads", run_id, threads.as_dict())
    # The workspace file may not change the invariants under a run; the run itself uses the
    # version it recorded, and moves to newer approved versions at the start of a round.
    _check_workspace_file(ws, store, run)
    _check_recorded_constitution(store, run)
    adopted_learner(store, config.controller, run.seed)
    settings = RunSettings(run_id, ws, config, progress=progress, fault=fault)
    with RunServices.setup(settings, store) as services:
        ctx = RunContext(settings, services)
        conn = sqlite3.connect(ws.graph_db_path, check_same_thread=False)
        try:
            graph = compile_graph(checkpointer(conn))
            outcome = _drive(graph, ctx, run_id, initial, say=say, wait=wait, stop=stop)
            return replace(outcome, timings=dict(ctx.timings), counts=dict(ctx.counts))
        finally:
            conn.close()


def _drive(graph: Any, ctx: RunContext, run_id: str, initial: dict[str, Any] | None, *,
           say: Say, wait: bool, stop: Stop) -> Outcome:
    store = ctx.store
    thread = {"configurable": {"thread_id": run_id}}
    graph_input: Any = _next_input(graph, store, thread, initial)
    while True:
        if graph_input is _WAITING:
            approval_id = _pending_approval(graph, thread)
            if not wait:
                store.update_run(run_id, state="paused")
                return Outcome(run_id, "paused", approval_id, f"waiting for approval {approval_id}")
            say(f"waiting for a decision on approval {approval_id} (tether approve/reject from another shell)")
            try:
                with ctx.timed("approval_wait"):
                    _wait_for_decision(store, approval_id, stop)
            except Terminated as err:  # nothing is lost: the approval still waits, `resume` picks it up
                raise RunFailedError(run_id, record_end(store, run_id, "paused", f"{err} at the approval gate",
                                                        {"approval": approval_id})) from None
            graph_input = _next_input(graph, store, thread, initial)
            continue
        store.update_run(run_id, state="running", error=None)
        try:
            started = time.perf_counter()
            for update in graph.stream(graph_input, thread, context=ctx, stream_mode="updates", durability="sync"):
                for node, value in update.items():
                    if node != "__interrupt__":
                        say(f"  {node} done ({time.perf_counter() - started:.1f}s)")
                    if isinstance(value, dict) and value.get("outcome") == "failed_invariants":
                        tell(ctx, "invariant_blocked", f"round {ctx.run.round}'s candidate was rejected "
                             "before any person saw it (invariants or non-finite training)",
                             f"log {run_id}", f"runs/{run_id}", say)
                stop.check()  # at each node boundary: a SIGTERM swallowed inside the node ends the run here
                started = time.perf_counter()
        except (TamperError, DeniedError, ModelIntegrityError) as err:
            error = record_end(store, run_id, "failed", f"tampering: {err}", {"tampering": True})
            tell(ctx, "failed", error, f"status {run_id}", f"runs/{run_id}", say)
            raise RunTamperError(run_id, error) from None
        except TransientError as err:
            # A check could not run (an approved adapter missing, a busy disk): nothing was decided on it.
            error = record_end(store, run_id, "paused", str(err), {})
            tell(ctx, "failed", error, f"resume {run_id} (after fixing the cause)", f"runs/{run_id}", say)
            return Outcome(run_id, "paused", None, f"run {run_id} paused: {error}")
        except BaseException as err:  # KeyboardInterrupt too: the run is resumable either way
            error = ("interrupted" if isinstance(err, KeyboardInterrupt) else str(err) if isinstance(err, Terminated)
                     else f"{type(err).__name__}: {err}")
            error = record_end(store, run_id, "failed", error, {})
            if not isinstance(err, KeyboardInterrupt):  # a person pressed Ctrl-C: they know
                tell(ctx, "failed", error, f"resume {run_id} (after fixing the cause)", f"runs/{run_id}", say)
            raise RunFailedError(run_id, error) from err
        snapshot = graph.get_state(thread)
        if not snapshot.next:
            with store.transaction():
                store.update_run(run_id, state="stopped")
                store.append_audit("tether", "run.stop", run_id, {})
            decisions = store.decisions(run_id)
            last = decisions[-1].rationale if decisions else "done"
            tell(ctx, "stopped", last, f"log {run_id}", f"runs/{run_id}", say)
            return Outcome(run_id, "stopped", message=f"run {run_id} stopped: {last}")
        graph_input = _next_input(graph, store, thread, initial)
        if graph_input is _WAITING:
            approval_id = _pending_approval(graph, thread)
            store.update_run(run_id, state="paused")
            say(f"paused at the approval gate: approval {approval_id}")
            approval = store.get_approval(approval_id) if approval_id else None
            tell(ctx, "gate", approval.summary if approval else f"approval {approval_id}",
                 f"show {approval_id}", f"approvals/{approval_id}", say)


_WAITING = object()


def _pending_approval(graph: Any, thread: dict[str, Any]) -> str | None:
    snapshot = graph.get_state(thread)
    for interrupt in snapshot.interrupts:
        return str(interrupt.value["approval_id"])
    return None


def _next_input(graph: Any, store: Store, thread: dict[str, Any], initial: dict[str, Any] | None) -> Any:
    """What to feed the graph now: a fresh start, a resume after a decision, or a crash restart."""
    snapshot = graph.get_state(thread)
    if not snapshot.values:  # nothing checkpointed yet: (re)start from the first node
        return initial or {"run_id": thread["configurable"]["thread_id"], "round": 0}
    if snapshot.interrupts:
        approval_id = _pending_approval(graph, thread)
        approval = store.get_approval(approval_id) if approval_id else None
        if approval is None or approval.status == "pending":
            return _WAITING
        return Command(resume=approval.status)
    return None  # continue from the last completed node


def _wait_for_decision(store: Store, approval_id: str | None, stop: Stop) -> None:
    while approval_id is not None:
        stop.check()
        approval = store.get_approval(approval_id)
        if approval is None or approval.status != "pending":
            return
        time.sleep(POLL_SECONDS)
