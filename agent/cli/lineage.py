"""`tether constitution new FILE --by NAME` and the checks `tether init --constitution FILE` shares with it:
a constitution file validated whole (the YAML limits, the schema, the invariants' probes and detectors)
before anything is written. The rules of a new lineage live in guardrails/lineage.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import fail, open_store, print_json, say, say_check
from agent.config import ConfigError, TetherConfig, load_config
from guardrails import lineage, reviewers
from guardrails.constitution import Constitution, ConstitutionError, JudgeDetector, read_constitution
from tools.judges import JUDGES
from tools.registry import UnknownPluginError


def read_checked(file: Path) -> tuple[str, Constitution]:
    """The file's exact text and its parse (size, depth, aliases, duplicate keys, schema), and every judge an
    invariant's detector names known to the judge registry; exit 2 naming each problem otherwise."""
    try:
        text, constitution = read_constitution(file)
    except ConstitutionError as err:
        fail(f"invalid constitution {err.source}:\n  " + "\n  ".join(err.problems) + "\nnothing was written")
    unknown = []
    for inv in constitution.invariants:
        if isinstance(inv.detector, JudgeDetector):
            try:
                JUDGES.check(inv.detector.judge)  # the name only: its settings are the config's, checked with it
            except UnknownPluginError as err:
                unknown.append(f"invariant '{inv.id}' detector: {err}")
    if unknown:
        fail(f"invalid constitution {file}:\n  " + "\n  ".join(unknown) + "\nnothing was written")
    return text, constitution


def run_problems(home: Path, config: TetherConfig, constitution: Constitution) -> list[str]:
    """Why a run on `config` could not evaluate these invariants: probe files, detectors' judges, probe counts
    (agent/run/world_checks.py, what `tether run` refuses to start on)."""
    from agent.run.world_checks import world_checks  # the world's data: only when a constitution is checked

    return world_checks(home, config, constitution).problems


def new(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The whole new constitution (YAML): invariants, definitions and "
                                              "principles of its own.")],
    by: Annotated[str, typer.Option("--by", help="Who proposes it (never one of its signers).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Propose a new constitution lineage with invariants of its own: an approval of kind constitution that
    needs more signatures than an amendment (approvals.new_constitution_required; default: every registered
    reviewer, the proposer never one of them). The file is checked whole first, its probes and detectors
    against the workspace config; on any problem exit 2 and nothing is written. Once approved, runs started
    after it use it; runs started before keep the version they pinned."""
    ws, store = open_store(ctx)
    text, constitution = read_checked(file)
    try:
        config = load_config(ws.config_path)
    except ConfigError as err:
        fail(f"the workspace config is invalid, so the new invariants cannot be checked against it: {err}")
    problems = run_problems(ws.home, config, constitution)
    if problems:
        for problem in problems:
            say_check(False, problem)
        fail(f"{file}: {len(problems)} problem(s) a run would refuse to start on; nothing was written")
    required = lineage.required_signatures(store, by, config.approvals.new_constitution_required,
                                           config.approvals.required)
    approval = lineage.propose(store, text, str(file), by, required)
    registered = sorted(reviewers.registry(store))
    if as_json:
        print_json({"id": approval.id, "kind": approval.kind, "lineage": approval.payload["lineage"],
                    "base_version": approval.payload["base_version"], "sha256": approval.subject_sha256,
                    "required": required, "summary": approval.summary})
        return
    say(f"proposed as {approval.id}: {approval.summary}")
    if len(registered) == 1:
        say(f"note: this workspace has one reviewer, so {registered[0]}'s signature alone founds it; register more "
            "(`tether reviewer add`) for a stronger rule")
    say(f"it needs {required} approving reviewer(s) other than {by}: review it with `tether show {approval.id}`, "
        f"then `tether approve {approval.id} --by NAME`")


def init_notes(home: Path, config_path: Path, constitution: Constitution) -> None:
    """At `tether init --constitution`: what a run would refuse to start on with the config the workspace has
    now (a judge the detector names that the config lacks, a probe file not copied in yet). These depend on
    files edited after init, so they are said, not refused; `tether validate` and `tether run` refuse them."""
    try:
        config = load_config(config_path)
    except ConfigError:
        return
    problems = run_problems(home, config, constitution)
    for problem in problems:
        say_check(False, f"before a run can start: {problem}")
    if problems:
        say(f"note: edit {config_path} (e.g. add the detector's judge to judge.pool) until `tether validate` passes")
