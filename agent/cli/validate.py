"""`tether validate`: everything `tether run` refuses before its first sample, reported all at once (exit 2),
with nothing downloaded or written: the config (schema and plug-ins; and `model.base` on its own when the
rest is too broken to pre-flight), the workspace constitution (its own errors, and a file that differs
from the version in force), the world and the invariants' probes (agent/run/world_checks.py), the judge
audit a config requires, and the pre-flight of the model (agent/run/preflight.py), whose passing checks
are printed with what they measured (the memory estimate). A config that asks for a CUDA GPU (model.device:
cuda), validated where there is none, is checked as a config for that GPU machine: what only that machine has
(the GPU, the weights and tokenizer beside the model's config.json, a served-generation endpoint) is said as a
warning, and everything else is checked as usual.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli import plugins
from agent.cli.common import fail, say, say_check, workspace
from agent.cli.judge import keyword_detector_note
from agent.config import ConfigError, TetherConfig, load_config, old_spellings
from agent.run import preflight
from agent.run.workspace import Workspace
from agent.sections.paths import file_settings, unanchored_paths
from guardrails import amendments
from guardrails.constitution import Constitution, ConstitutionError, load_constitution
from guardrails.errors import GateError
from guardrails.safe_yaml import YamlRefused, read_yaml
from memory import Store
from tools.judges import JUDGES
from tools.prompts import PROMPT_GENERATORS
from tools.registry import PluginLoadError, PluginSettingsError, UnknownPluginError
from tools.worlds import DEFAULT_WORLD, WORLDS


def validate(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Argument(help="Config file (default: the workspace's).")] = None,
) -> None:
    """Check a config and the workspace constitution (also against the version in force), then pre-flight
    the run it describes (the model or cached hub id, tokenizer and chat template, LoRA target modules, device
    and dtype, memory, the training knobs against TRL): every problem `tether run` would refuse, at once,
    exit 2. Nothing is downloaded or written."""
    ws = workspace(ctx)
    path = config or ws.config_path
    cfg, problems = config_problems(path)
    for note in _old_spelling_notes(path):
        say(f"{path}: deprecated: {note}")
    for note in unanchored_paths(cfg.world.name, cfg.world.settings) if cfg is not None else []:
        say(f"{path}: deprecated: {note}")
    with _read_only_store(ws) as store:
        constitution, found = _constitution(ws, store, read_file=ws.constitution_path.is_file() or config is None)
        problems += found
        if cfg is None:
            problems += _base_problems(path)  # the rest of the pre-flight needs a valid config
        else:
            problems += [f"{path}: {p}" for p in _world_and_judge_problems(ws, cfg, constitution, store)]
    from agent.run.runner import run_preflight  # models and torch: only now, not for `tether --help`

    findings = run_preflight(ws, cfg) if cfg is not None else []
    problems += preflight.problems(findings, here=False)
    for warning in preflight.elsewhere(findings):  # a config for a GPU machine, checked where there is none
        say(f"warning: {warning} (checked only where it runs: `tether run` refuses it here)")
    if problems:
        for problem in problems:
            say_check(False, problem)
        fail(f"{len(problems)} problem(s) found")
    for finding in findings:
        say_check(True, finding.line())
    for setting, where in (file_settings(cfg.model.base, cfg.world.name, cfg.world.settings)
                           if cfg is not None else []):
        say_check(True, f"{setting}: {where}")  # each file as the absolute path it checked
    note = keyword_detector_note(constitution) if constitution is not None else None
    if note:
        say(f"note: {note}")
    say_check(True, f"{path} is valid")


def _old_spelling_notes(config_path: Path) -> list[str]:
    """What the config still spells the old way (it reads as the new spelling), one note each."""
    try:
        return old_spellings(read_yaml(config_path))
    except (YamlRefused, OSError):
        return []  # load_config reports it


@contextmanager
def _read_only_store(ws: Workspace) -> Iterator[Store | None]:
    """The workspace's store, read-only (None outside a workspace), leaving the folder as it was found. A
    read-only connection to a WAL database creates SQLite's -wal and -shm files beside it and cannot remove
    them; when they were not there before, a plain connection that reads one row and closes lets SQLite remove
    them itself (only as the last connection; an empty WAL writes nothing into tether.db)."""
    if not ws.db_path.is_file():
        yield None
        return
    had_wal = ws.db_path.with_name(f"{ws.db_path.name}-wal").exists()
    try:
        with Store(ws.db_path, readonly=True) as store:
            yield store
    finally:
        if not had_wal:
            try:
                with closing(sqlite3.connect(ws.db_path)) as conn:
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error:
                pass  # a read-only folder: the read-only connection created nothing there either


def _constitution(ws: Workspace, store: Store | None, read_file: bool) -> tuple[Constitution | None, list[str]]:
    """The workspace constitution the config is checked against, and every problem with it: the file's own
    errors and, in a workspace, the file differing from the version in force (`run` refuses both). The file's
    invariants are what the checks use: an edit is checked as the draft it is, besides being reported."""
    constitution, problems = None, []
    if read_file:
        try:
            constitution = load_constitution(ws.constitution_path)
        except ConstitutionError as err:
            problems += [f"{err.source}: {p}" for p in err.problems]
    if store is None:
        return constitution, problems  # a config checked outside a workspace: no version in force to differ from
    from agent.run.runner import constitution_file_problem

    try:
        version, _ = amendments.in_force(store)
    except GateError as err:
        return constitution, [*problems, str(err)]
    differs = constitution_file_problem(ws, version)
    return constitution, problems + ([differs] if differs else [])


def _base_problems(config_path: Path) -> list[str]:
    """`model.base` of a config too broken to load, checked on its own so that a missing model folder is
    reported among the other errors (a `model.base` of the wrong type is the schema's error)."""
    try:
        data = read_yaml(config_path)
    except (YamlRefused, OSError):
        return []  # load_config reports it
    model = data.get("model") if isinstance(data, dict) else None
    base = model.get("base") if isinstance(model, dict) else None
    return preflight.base_problems(base) if isinstance(base, str) else []


def _world_and_judge_problems(ws: Workspace, cfg: TetherConfig, constitution: Constitution | None,
                              store: Store | None) -> list[str]:
    """The world's prompts and the invariants' probes, as a run's pre-flight checks them, the judge audit
    `judge.require_audit` asks for, and the adoption of a learned controller policy."""
    from agent.run.world_checks import world_checks  # the world's data: only when a config is validated

    problems = list(world_checks(ws.home, cfg, constitution).problems)
    if cfg.judge.require_audit and store is not None:
        from agent.run.judge_trust import audit_problems

        problems += audit_problems(store, cfg)
    if cfg.controller.policy == "learned" and store is not None:
        from agent.controller.learned import PolicyFileError
        from agent.run.learned import adopted_learner
        from guardrails.errors import GateError, TamperError

        try:
            adopted_learner(store, cfg.controller, cfg.seed)
        except (PolicyFileError, GateError, TamperError) as err:  # what adopted_learner raises (its docstring)
            problems.append(str(err))
    return problems


def _plugin_problems(data: Any) -> list[str]:
    """Unknown plug-in names and settings, checked on the raw document so they are reported
    alongside any type errors."""
    section = lambda key: data.get(key) if isinstance(data, dict) and isinstance(data.get(key), dict) else {}  # noqa: E731
    judge, prompts, world = section("judge"), section("prompts"), section("world")
    checks = [(JUDGES, judge.get("name", "rules"), judge.get("settings") or {}),
              (PROMPT_GENERATORS, prompts.get("generator", "pool"), {}),
              (WORLDS, world.get("name", DEFAULT_WORLD), world.get("settings") or {})]
    pool = judge.get("pool")
    for member in pool if isinstance(pool, list) else []:
        if isinstance(member, dict):
            checks.append((JUDGES, member.get("name"), member.get("settings") or {}))
    problems = plugins.installed_plugin_problems()  # installed plug-ins left out (agent/cli/plugins.py)
    for registry, name, settings in checks:
        if not isinstance(name, str) or not isinstance(settings, dict):
            continue  # a type error the schema reports
        try:
            registry.check(name, settings)
        except PluginLoadError:
            continue  # one of the installed plug-ins above
        except (UnknownPluginError, PluginSettingsError) as err:
            problems.append(str(err))
    return problems


def config_problems(config_path: Path) -> tuple[TetherConfig | None, list[str]]:
    """The config as `run` reads it (None when it has any problem) and every problem with it, each prefixed
    by the file: the schema's and the plug-ins' (unknown names, bad settings, broken installs)."""
    try:
        config, problems = load_config(config_path), []
    except ConfigError as err:
        config, problems = None, list(err.problems)
    if config_path.is_file():
        try:
            problems += _plugin_problems(read_yaml(config_path))
        except (YamlRefused, OSError):
            pass  # already reported by load_config
    problems = [f"{config_path}: {p}" for p in problems]
    return (config if not problems else None), problems
