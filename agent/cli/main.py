"""The `tether` command line: workspace, runs and their status.

Exit codes: 0 ok, 1 a check failed or tampering was found, 2 bad usage or invalid input (message
on stderr, nothing written). Listing commands take --json and print one JSON document on stdout.
"""

from __future__ import annotations

import getpass
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from agent.cli import controller, export, judge, lifecycle, plugins, review, ui
from agent.cli import lineage as lineage_commands
from agent.cli import plan as planning
from agent.cli import reviewers as reviewer_commands  # guardrails.reviewers is the registry itself
from agent.cli import validate as validation
from agent.cli.common import (
    EXIT_CHECK_FAILED,
    CliState,
    TetherGroup,
    fail,
    open_store,
    print_json,
    print_table,
    say,
    say_check,
    workspace,
)
from agent.config import MAX_ROUNDS, MAX_SEED, default_config_yaml
from agent.review import notebook
from agent.run.lifecycle import LifecycleError, reconfigure
from agent.run.locks import is_driven
from agent.run.terminate import Terminated
from agent.run.workspace import environment_problem
from guardrails import amendments, gate, keys, reviewers, trust
from guardrails.constitution import ConstitutionError, default_constitution_yaml, load_constitution
from guardrails.errors import GateError
from memory import Run, Store
from memory.base import BUSY_TIMEOUT_MS
from policies.progress import wanted as bars_wanted

if TYPE_CHECKING:
    from agent.run.runner import Outcome, RunFailedError

app = typer.Typer(
    name="tether",
    help="Autonomous, self-improving alignment rounds on a causal LM, kept on a tether: monitors, "
    "immutable invariants, and a human approval gate before any adapter becomes active.\n\n"
    "Start with `tether init`, then `tether run`. The workspace is --home, else $TETHER_HOME, else ./.tether.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=TetherGroup,  # a full disk, a read-only or locked workspace: one line and exit 1, not a traceback
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ProgressOpt = Annotated[bool | None, typer.Option(
    "--progress/--no-progress", help="Progress bars on stderr for the model build, sampling, judging, training "
    "(per step) and evaluation (default: when stderr is a terminal).")]


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option("--home", help="Workspace folder.", show_default=False)] = None,
    busy_timeout: Annotated[float, typer.Option(
        "--busy-timeout", min=0, max=3600,
        help="Seconds to wait for another process's lock on the workspace database before giving up.",
    )] = BUSY_TIMEOUT_MS / 1000,
) -> None:
    ctx.obj = CliState(home=home, busy_timeout_ms=round(busy_timeout * 1000))


@app.command()
def init(
    ctx: typer.Context,
    reviewer: Annotated[str | None, typer.Option(
        "--reviewer", help="The workspace's first reviewer (default: your login name). Their Ed25519 key is "
        "created in the user key folder ($TETHER_KEYS_DIR, else ~/.config/tether/keys) unless it exists; only "
        "the public key goes into the workspace. They sign constitution v1.")] = None,
    constitution: Annotated[Path | None, typer.Option(
        "--constitution", help="Found the workspace on your own constitution (invariants, definitions, principles) "
        "instead of the default: this file becomes v1, signed by the first reviewer. It is checked whole first "
        "(YAML limits, schema, the judges detectors name); on a problem exit 2 and nothing is written.")] = None,
) -> None:
    """Create a workspace with the default config and constitution (never overwrites), and register
    its first reviewer."""
    ws = workspace(ctx)
    if ws.is_initialised():
        if constitution is not None:
            fail(f"workspace {ws.home} is already initialised; nothing was written. Found a new constitution "
                 f"lineage there with `tether constitution new {constitution} --by NAME`")
        say(f"workspace {ws.home} is already initialised; nothing changed")
        return
    name = reviewer or _login_name()
    problem = keys.name_problem(name)
    if problem:
        fail(f"{problem}; pass --reviewer NAME")
    own = lineage_commands.read_checked(constitution) if constitution is not None else None
    if own is not None and ws.constitution_path.is_file() and ws.constitution_path.read_text() != own[0]:
        fail(f"{ws.constitution_path} already exists and differs from {constitution}; remove it or leave out "
             "--constitution. Nothing was written")
    folder = keys.resolve_keys_dir()
    signer = (keys.load_key(folder, name, os.environ.get(keys.PASSPHRASE_ENV)) if keys.has_key(folder, name)
              else keys.create_key(folder, name, os.environ.get(keys.PASSPHRASE_ENV)))
    ws.home.mkdir(parents=True, exist_ok=True)
    founding = own[0] if own is not None else default_constitution_yaml()
    for path, text in ((ws.config_path, default_config_yaml()), (ws.constitution_path, founding)):
        if not path.exists():
            _write_new(path, text)
    try:
        load_constitution(ws.constitution_path)
    except ConstitutionError as err:
        fail(f"invalid constitution: {err}")
    store = Store(ws.db_path)
    origin = {"constitution": str(constitution.absolute())} if constitution is not None else {}
    with store.transaction():
        store.append_audit("tether", "workspace.init", None, {"reviewer": name, **origin})
        # The root of trust goes to the reviewer's folder first: the replay of every registry read starts there.
        root = trust.pin(store, reviewers.workspace_id(store), name, signer.public_hex, ws.home)
        reviewers.register_first(store, signer)
        amendments.init(store, ws.constitution_path.read_text(), signer)
    trust.record(store, root.workspace, "tether init")
    say(f"initialised {ws.home} with reviewer {name} (key {signer.fingerprint[:16]} in {folder}): edit "
        f"{ws.config_path.name}, then `tether run`")
    if own is not None:
        say(f"constitution v1 is {constitution} ('{own[1].name}', {len(own[1].invariants)} invariants), signed by "
            f"{name}")
        lineage_commands.init_notes(ws.home, ws.config_path, own[1])
    say(f"root of trust pinned in {trust.folder() / 'trust'}; another reviewer's folder pins it with "
        f"`tether reviewer pin --root {signer.fingerprint}`")


def _write_new(path: Path, text: str) -> None:
    """Write through a temporary file and rename: a full disk never leaves a half-written file that a
    second `init` would then keep."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


app.command()(validation.validate)  # after init in --help, before run


def _report(outcome: Outcome) -> None:
    if outcome.state == "paused" and outcome.approval_id is None:
        fail(outcome.message, EXIT_CHECK_FAILED)  # paused on a check that could not run (a missing file)
    if outcome.state == "paused":
        say(f"paused at the approval gate. Review with `tether approvals`, then "
            f"`tether approve {outcome.approval_id} --by NAME` (or reject), and `tether resume {outcome.run_id}`")
    else:
        say(outcome.message)


@app.command()
def run(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="Config file (default: the workspace's).")] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", min=1, max=MAX_ROUNDS,
                                               help="Round budget (overrides the config).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=MAX_SEED,
                                             help="Seed (overrides the config).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Block at the approval gate until someone decides.")] = False,
    rebuild_model: Annotated[bool, typer.Option(
        "--rebuild-model", help="Build the model the world builds (model.base 'world') again, replacing its "
        "folder, e.g. when an interrupted copy left it incomplete.")] = False,
    from_checkpoint: Annotated[str | None, typer.Option(
        "--from", help="Start from this approved adapter of an earlier run (same base model); the lineage is "
        "recorded and its signed approval keeps vouching for it.")] = None,
    progress: ProgressOpt = None,
) -> None:
    """Start a run. Prints `run <RUN_ID>`; runs until it stops or reaches the approval gate."""
    from agent.run.runner import ModelNotFoundError, RunFailedError, RunStartError, start_run

    fault = lifecycle.fault_from_env()
    ws, store = open_store(ctx, witness=False)
    cfg, problems = validation.config_problems(config or ws.config_path)
    if cfg is None:
        for problem in problems:
            say_check(False, problem)
        fail("invalid config; nothing was started (see `tether validate`)")
    if rounds is not None:
        cfg = cfg.model_copy(update={"controller": cfg.controller.model_copy(update={"rounds": rounds})})
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    try:
        load_constitution(ws.constitution_path)
    except ConstitutionError as err:
        fail(f"invalid constitution: {err}")
    try:
        outcome = start_run(ws, store, cfg, say=_say_run, wait=wait, rebuild_model=rebuild_model,
                            from_checkpoint=from_checkpoint, fault=fault, progress=bars_wanted(progress))
    except (ModelNotFoundError, RunStartError, GateError) as err:
        fail(f"{err}; nothing was started")
    except RunFailedError as err:
        _failed(err, ws.home)
    _report(outcome)


def _failed(err: RunFailedError, home: Path) -> NoReturn:
    """An unexpected failure inside a node: show where (the traceback, or one line for a full disk or an
    unwritable workspace), then how to go on. A stop from outside (SIGTERM, Ctrl-C) is no fault to show or
    fix: the message says what stopped the run and how it goes on."""
    cause = err.__cause__
    if isinstance(cause, KeyboardInterrupt | Terminated):
        fail(f"{err}; nothing is lost: `tether resume {err.run_id}` continues from the last completed step.",
             EXIT_CHECK_FAILED)
    if cause is not None:
        problem = environment_problem(cause, home)
        if problem:
            say(problem)
        else:
            traceback.print_exception(cause, file=sys.stderr)
    fail(f"{err}. Fix the cause, then `tether resume {err.run_id}` continues from the last completed step.",
         EXIT_CHECK_FAILED)


def _say_run(message: str) -> None:
    if message.startswith("run "):
        typer.echo(message)  # the contract: "run <RUN_ID>" on stdout
    else:
        say(message)


@app.command()
def resume(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    wait: Annotated[bool, typer.Option("--wait", help="Block at the approval gate until someone decides.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", help="New settings for the rounds to come (a paused or failed run; the model, world, seed, "
        "evaluation, held-out prompts and approvals stay fixed). Logged as a config change and audited.")] = None,
    progress: ProgressOpt = None,
) -> None:
    """Continue a paused, failed or interrupted run from its last completed step."""
    from agent.run.runner import RunFailedError, resume_run

    fault = lifecycle.fault_from_env()
    ws, store = open_store(ctx, witness=False)
    if config is not None:
        _reconfigure(store, run_id, config)
    try:
        outcome = resume_run(ws, store, run_id, say=say, wait=wait, fault=fault, progress=bars_wanted(progress))
    except RunFailedError as err:
        _failed(err, ws.home)
    except ConstitutionError as err:
        fail(f"invalid constitution: {err}")
    _report(outcome)


def _reconfigure(store: Store, run_id: str, config_path: Path) -> None:
    run = store.get_run(run_id)
    if run is None:
        fail(f"no run '{run_id}' (see `tether status`)")
    cfg, problems = validation.config_problems(config_path)
    if cfg is None:
        for problem in problems:
            say_check(False, problem)
        fail("invalid config; the run was not changed")
    try:
        changes = reconfigure(store, run, cfg, _login_name() or "cli")
    except (LifecycleError, GateError) as err:
        fail(f"{err}; the run was not changed")
    say(f"{len(changes)} setting(s) changed: " + "; ".join(changes) if changes else "no setting changed")


def _status_doc(ws: Any, store: Store, run: Run) -> dict[str, Any]:
    state, error = run.state, run.error
    if state == "running" and not is_driven(ws, run.id):
        state = "failed"  # its process died mid-step; `tether resume` continues it
        error = error or (f"the process driving it ended mid-round without recording why (killed: SIGKILL, out of "
                          f"memory, a machine restart); `tether resume {run.id}` continues it")
    pending = [a.id for a in store.approvals(status="pending", run_id=run.id)]
    latest = store.get_round(run.id, run.round) if run.round else None
    problem = gate.active_problem(store, run)  # the loader's own check: never show a forged pointer as active
    return {"run_id": run.id, "state": state, "round": run.round, "active_checkpoint": run.active_checkpoint,
            "active_verified": problem is None, "active_problem": problem,
            "pending_approvals": pending, "rounds_budget": run.rounds_budget, "error": error,
            "judge": notebook.judge_label(latest), "action": latest.action if latest else None,
            "monitors": (latest.monitors or {}) if latest else {}}


@app.command()
def status(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Argument(help="One run (default: all runs).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """State, round, active checkpoint and pending approvals of a run (or of every run)."""
    ws, store = open_store(ctx, readonly=True)
    if run_id is not None:
        run = store.get_run(run_id)
        if run is None:
            fail(f"no run '{run_id}' (see `tether status`)")
        docs = [_status_doc(ws, store, run)]
    else:
        docs = [_status_doc(ws, store, r) for r in store.list_runs()]
    if as_json:
        print_json(docs[0] if run_id is not None else docs)
        review.fail_unverified_active([d["active_problem"] for d in docs])
        return
    print_table("runs", ["run_id", "state", "round", "judge", "action", "active_checkpoint", "pending_approvals",
                         "error"],
                [[d["run_id"], d["state"], f"{d['round']}/{d['rounds_budget']}", d["judge"], d["action"],
                  review.active_cell(d["active_checkpoint"], d["active_problem"]),
                  ", ".join(d["pending_approvals"]), d["error"]] for d in docs])
    if run_id is not None and docs[0]["monitors"]:
        from tools.monitors.readings import Readings  # the monitors package imports numpy: only here

        readings = Readings.from_json(docs[0]["monitors"])
        rows = [[str(k), f"{v:.4g}"] for k, v in sorted(readings.values.items())]
        rows += [[str(k), f"could not check: {why}"] for k, why in sorted(readings.could_not_check.items())]
        print_table(f"monitors of round {docs[0]['round']}", ["monitor", "value"], rows)
    review.fail_unverified_active([d["active_problem"] for d in docs])


# The review commands come after the run commands in --help.
review.register(app)
review.constitution_app.command("new")(lineage_commands.new)
app.add_typer(review.constitution_app, name="constitution")
app.add_typer(review.audit_app, name="audit")
app.add_typer(judge.judge_app, name="judge")
app.add_typer(reviewer_commands.reviewer_app, name="reviewer")
app.add_typer(export.export_app, name="export")
app.add_typer(controller.controller_app, name="controller")
app.command()(lifecycle.stop)
app.command()(ui.ui)
app.command()(plugins.plugins)
app.command()(planning.plan)

if __name__ == "__main__":  # pragma: no cover
    app()
