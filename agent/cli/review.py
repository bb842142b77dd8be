"""The human side of the CLI: approvals, the decision log, checkpoints, rollback, constitution, audit."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from agent.cli.common import (
    EXIT_CHECK_FAILED,
    fail,
    open_store,
    out_console,
    print_json,
    print_table,
    require_name,
    say,
    signer,
)
from agent.cli.show import show
from agent.config import ConfigError, load_config
from agent.review import notebook
from agent.review.report import write_report
from agent.run.workspace import Workspace
from guardrails import amendments, audit, controller_policy, gate, signoff
from guardrails.checks import InvariantResult
from guardrails.constitution import ConstitutionError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ByOpt = Annotated[str, typer.Option("--by", help="The reviewer deciding: their key in the user key folder signs.")]

constitution_app = typer.Typer(help="Show the constitution in force; propose amendments to its principles, or a "
                               "new lineage with invariants of its own.",
                               no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for command in (approvals, show, approve, reject, log, checkpoints, rollback, report):
        app.command()(command)


def approvals(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Pending approvals: id, kind (checkpoint|constitution|controller), run_id, status, created_at, summary."""
    _, store = open_store(ctx, readonly=True)
    rows = [{"id": a.id, "kind": a.kind, "run_id": a.run_id, "status": a.status, "created_at": a.created_at,
             "summary": a.summary, "review": f"tether show {a.id}",
             "lineage": amendments.founded_lineage(a) if a.kind == "constitution" else None}
            for a in store.approvals(status="pending")]
    if as_json:
        print_json(rows)
        return
    print_table("pending approvals", ["id", "kind", "run_id", "created_at", "summary"],
                [[r["id"], r["kind"], r["run_id"], r["created_at"], r["summary"]] for r in rows])
    if rows:
        say("review one with `tether show ID` before deciding")


def _decide(ctx: typer.Context, approval_id: str, decision: signoff.HumanDecision, by: str, note: str | None,
            as_json: bool, accept_not_met: bool = False) -> None:
    ws, store = open_store(ctx)
    pending = store.get_approval(approval_id)
    if pending is None:
        fail(f"no approval '{approval_id}' (see `tether approvals`)")
    if accept_not_met and pending.kind != "checkpoint":
        fail("--accept-not-met is for checkpoint approvals: a constitution change has no invariant targets to accept")
    key = signer(store, by, approval_id)
    version = None
    if pending.kind == "constitution":
        decided, version = amendments.decide(store, approval_id, decision, key, note, ws.constitution_path)
    elif pending.kind == "controller":
        decided = controller_policy.decide(store, approval_id, decision, key, note)
    else:
        decided = gate.decide(store, approval_id, decision, key, note, accept_not_met)
    if as_json:
        print_json({"id": decided.id, "kind": decided.kind, "status": decided.status, "decided_by": decided.decided_by,
                    "run_id": decided.run_id, "signed_by": by,
                    "constitution_version": version.version if version else None})
        return
    founds = amendments.founded_lineage(decided) if decided.kind == "constitution" else None
    if decided.status == "pending":
        setting = "approvals.new_constitution_required" if founds is not None else "approvals.required"
        say(f"{decided.id}: signed by {by}; it needs more reviewers ({setting}) before it is decided")
    elif version is not None and founds is not None:
        say(f"{decided.id} approved by {decided.decided_by}: constitution v{version.version} founds lineage {founds} "
            "and is in force; runs started from now on use it, runs started before keep the version they pinned")
    elif version is not None:
        say(f"{decided.id} approved by {decided.decided_by}: constitution v{version.version} is in force; runs use it "
            "from their next round")
    elif decided.kind == "controller" and decided.status == "approved":
        say(f"{decided.id} approved by {decided.decided_by}: runs with controller.policy: learned may use the policy "
            f"file with sha256 {decided.subject_sha256}")
    else:
        say(f"{decided.id} {decided.status} by {decided.decided_by}"
            + (f"; `tether resume {decided.run_id}` continues the run" if decided.run_id else ""))


def approve(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(help="From `tether approvals`.")],
    by: ByOpt,
    note: Annotated[str | None, typer.Option("--note", help="Why (optional).")] = None,
    accept_not_met: Annotated[bool, typer.Option(
        "--accept-not-met", help="Approve a candidate that does not meet an invariant's target (it passed within "
        "a ratchet bound): required then, and recorded in your signed statement.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Approve a pending checkpoint or constitution change, signed with your reviewer key. The adapter's
    hash is checked first; the signature binds the adapter, its parent, the base model, the constitution,
    the evaluation report you were shown and the audit log's head. A candidate whose upper bound on an
    invariant's violation rate is above its target is refused (exit 2) unless you pass --accept-not-met,
    which the signed statement records."""
    _decide(ctx, approval_id, "approve", by, note, as_json, accept_not_met)


def reject(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(help="From `tether approvals`.")],
    by: ByOpt,
    note: Annotated[str, typer.Option("--note", help="Why (required).")],
    as_json: JsonOpt = False,
) -> None:
    """Reject a pending approval, signed with your reviewer key; a rejected candidate is discarded when
    the run resumes."""
    _decide(ctx, approval_id, "reject", by, note, as_json)


def log(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument()],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every check, measured or not.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The decision log as a lab notebook: per round the judge in use, each action and why, the
    signals against their thresholds (FIRED or ok), and the outcome. --json: one entry per decision
    (round, action, rationale, signals, actor, at, judge, outcome)."""
    _, store = open_store(ctx, readonly=True)
    if store.get_run(run_id) is None:
        fail(f"no run '{run_id}' (see `tether status`)")
    if as_json:
        print_json(notebook.entries(store, run_id))
        return
    out_console.print(notebook.render(store, run_id, verbose), end="", markup=False, highlight=False)


def checkpoints(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Argument(help="One run (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Checkpoints: id, run_id, round, status, sha256, path, parent, active (UNVERIFIED, and exit 1, when a
    run's active pointer is not what the gate activated). An unknown RUN_ID is exit 2."""
    _, store = open_store(ctx, readonly=True)
    one = store.get_run(run_id) if run_id is not None else None
    if run_id is not None and one is None:
        fail(f"no run '{run_id}' (see `tether status`)")  # an empty table would read as a run with no checkpoints
    runs = store.list_runs() if one is None else [one]
    active = {r.id: r.active_checkpoint for r in runs}
    problems = {r.id: gate.active_problem(store, r) for r in runs}
    rows = [{"id": c.id, "run_id": c.run_id, "round": c.round, "status": c.status, "sha256": c.sha256,
             "path": c.path, "parent": c.parent, "active": active.get(c.run_id) == c.id,
             "active_problem": problems.get(c.run_id) if active.get(c.run_id) == c.id else None,
             "heldout_oracle": ((c.metrics or {}).get("eval") or {}).get("candidate", {}).get("oracle"),
             "invariants": (c.invariant_report or {}).get("results"),
             "invariants_error": (c.invariant_report or {}).get("error")}
            for c in store.checkpoints(run_id)]
    if as_json:
        print_json(rows)
        fail_unverified_active(list(problems.values()))
        return
    print_table("checkpoints", ["id", "round", "status", "active", "oracle",
                                "invariants (rate [interval, n, level], bound, target)", "sha256", "parent"],
                [[r["id"], r["round"], r["status"], active_cell("*", r["active_problem"]) if r["active"] else "",
                  "" if r["heldout_oracle"] is None else f"{r['heldout_oracle']:.3f}",
                  _invariant_lines(r["invariants"], r["invariants_error"]), (r["sha256"] or "")[:12], r["parent"]]
                 for r in rows])
    fail_unverified_active(list(problems.values()))


def active_cell(shown: str | None, problem: str | None) -> Text | str | None:
    """A table cell for an active pointer: as stored, and marked UNVERIFIED when the loader refuses it."""
    if problem is None:
        return shown
    return Text.assemble(f"{shown} " if shown and shown != "*" else "", ("UNVERIFIED", "bold red"))


def fail_unverified_active(problems: list[str | None]) -> None:
    """After a listing: exit 1 (tampering found) naming each run whose active pointer the loader refuses."""
    found = [p for p in problems if p is not None]
    if found:
        fail(f"UNVERIFIED active checkpoint: {'; '.join(found)}. No run loads it (the loader runs this same "
             "check); `tether audit list` shows what the gate activated, restore the workspace from a backup",
             EXIT_CHECK_FAILED)


def _invariant_lines(results: list[dict] | None, error: str | None) -> str:
    if error:
        return error
    return "\n".join(InvariantResult.from_json(r).line()
                     for r in results or [])


def rollback(
    ctx: typer.Context,
    checkpoint_id: Annotated[str, typer.Argument(help="An approved checkpoint, or a run's <RUN_ID>-base.")],
    by: ByOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")],
) -> None:
    """Make an earlier approved checkpoint (or the base model) active, signed with your reviewer key;
    the next round uses it. Any checkpoint a run would load may be chosen, a run's start from another run's
    adapter (`run --from`) included. A refusal is audited: exit 2 for an unknown or unapproved checkpoint,
    exit 1 for one whose approval or files fail their checks."""
    _, store = open_store(ctx)
    if store.get_checkpoint(checkpoint_id) is None:
        # Refused before a key is asked for, and audited like every refused rollback (unless --by is no name).
        require_name(by)
        raise gate.refuse_rollback(store, checkpoint_id, by, gate.UnknownCheckpointError(checkpoint_id))
    key = signer(store, by, checkpoint_id)
    ck = gate.rollback(store, checkpoint_id, key, reason)
    say(f"{ck.id} is now the active checkpoint of {ck.run_id}")


def report(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG plots and the summary.")],
) -> None:
    """PNG plots of monitors and held-out scores per round, and a summary (md + json)."""
    _, store = open_store(ctx, readonly=True)
    if store.get_run(run_id) is None:
        fail(f"no run '{run_id}' (see `tether status`)")
    written = write_report(store, run_id, out)
    for path in written:
        say(f"wrote {path}")


@constitution_app.command("show")
def constitution_show(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="Print the version in force as YAML (to restore the "
                                                        "workspace file, or to start a proposal from).")] = False,
) -> None:
    """The constitution in force: invariants (immutable) and principles (amendable), with versions. Only
    a version with a verified human approval is ever in force."""
    ws, store = open_store(ctx, readonly=True)
    version, current = amendments.in_force(store)
    if as_yaml:
        sys.stdout.write(version.content)
        return
    file_differs = ws.constitution_path.is_file() and ws.constitution_path.read_text() != version.content
    unverified = amendments.unverified(store)
    lineage = amendments.lineage_of(store, version)
    versions = [{"version": v.version, "lineage": amendments.lineage_of(store, v), "sha256": v.sha256,
                 "created_at": v.created_at, "created_by": v.created_by,
                 "approval_id": v.approval_id, "in_force": v.version == version.version,
                 "verified": v.version not in unverified, "problem": unverified.get(v.version)}
                for v in store.constitution_versions()]
    founded = min((v["version"] for v in versions if v["lineage"] == lineage and v["verified"]),
                  default=version.version)
    if as_json:
        print_json({"in_force": version.version, "lineage": lineage, "lineage_founded_at": founded,
                    "constitution": current.model_dump(mode="json"),
                    "invariants_sha256": current.invariants_sha256(), "versions": versions,
                    "workspace_file_differs": file_differs})
        return
    print_table(f"constitution '{current.name}' v{version.version} (in force), lineage {lineage} (founded at "
                f"v{founded}) — invariants (immutable within the lineage)",
                ["id", "check", "max_rate", "confidence", "detector", "text"],
                [[i.id, i.check.kind, i.check.max_rate, i.check.confidence, i.detector_label(), i.text]
                 for i in current.invariants])
    print_table("principles (amendable)", ["id", "weight", "rule", "text"],
                [[p.id, p.weight, p.rule.kind if p.rule else "", p.text] for p in current.principles])
    print_table("versions", ["version", "lineage", "in force", "signed approval", "created_by", "approval",
                             "created_at", "sha256"],
                [[v["version"], v["lineage"], "*" if v["in_force"] else "",
                  "yes" if v["verified"] else "NO (never in force)",
                  v["created_by"], v["approval_id"], v["created_at"], v["sha256"][:12]] for v in versions])
    for problem in unverified.values():
        say(f"warning: never in force: {problem}")
    if file_differs:
        say(f"note: {ws.constitution_path} differs from v{version.version}; runs refuse to start until the edit is "
            f"proposed (`tether constitution propose {ws.constitution_path} --by NAME`) and approved, or the file "
            "is restored (`tether constitution show --yaml`)")


@constitution_app.command("propose")
def constitution_propose(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The whole proposed constitution (YAML), principles changed.")],
    by: ByOpt,
) -> None:
    """Propose an amendment to the principles: an approval of kind constitution. A proposal that
    touches an invariant (or its definitions) is refused with exit 2 and nothing is written."""
    ws, store = open_store(ctx)
    if not file.is_file():
        fail(f"{file}: no such file")
    try:
        approval = amendments.propose(store, file.read_text(), str(file), by, required=_required(ws))
    except ConstitutionError as err:
        fail("invalid constitution:\n  " + "\n  ".join(err.problems))
    say(f"proposed as {approval.id}: {approval.summary}. `tether approve {approval.id} --by NAME` puts it in force.")


def _required(ws: Workspace) -> int:
    """approvals.required of the workspace config: how many reviewers a constitution change needs."""
    try:
        return load_config(ws.config_path).approvals.required
    except ConfigError as err:
        fail(f"the workspace config is invalid, so approvals.required is unknown: {err}")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    witness: Annotated[list[Path] | None, typer.Option(
        "--witness", help="Another reviewer's witness file (their key folder's witness/WORKSPACE.json) to check "
        "the chain against too; repeatable.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the audit hash chain and check it against every signed head (approvals, rollbacks,
    reviewer changes) and every witnessed head (the one in your key folder, and each --witness): exit 1
    naming the first bad entry if it was edited, deleted, reordered, recomputed or cut short."""
    _, store = open_store(ctx, readonly=True)
    report = audit.verify(store, witnesses=witness or [])
    if as_json:
        print_json(asdict(report))
    if not report.ok:
        where = f"entry {report.first_bad_seq}" if report.first_bad_seq is not None else "a signature"
        fail(f"audit log broken at {where}: {report.reason}", EXIT_CHECK_FAILED)
    if not as_json:
        say(f"audit chain intact ({report.entries} entries, every signed and witnessed head matches)")


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the newest N entries.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: seq, at, actor, action, subject, details (oldest first)."""
    _, store = open_store(ctx, readonly=True)
    entries = store.audit_entries()
    if limit is not None:
        entries = entries[-limit:]
    rows = [{"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject,
             "details": e.details, "hash": e.hash} for e in entries]
    if as_json:
        print_json(rows)
        return
    print_table("audit log", ["seq", "at", "actor", "action", "subject", "details"],
                [[r["seq"], r["at"], r["actor"], r["action"], r["subject"], _short(r["details"])] for r in rows])


def _short(details: dict) -> str:
    text = ", ".join(f"{k}={v}" for k, v in details.items() if not isinstance(v, dict | list))
    return text if len(text) <= 120 else text[:117] + "..."
