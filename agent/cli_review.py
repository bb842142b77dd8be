"""The human side of the CLI: approvals, the decision log, checkpoints, rollback, constitution, audit."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from agent import notebook
from agent.cli_common import EXIT_CHECK_FAILED, fail, open_store, out_console, print_json, print_table, say
from agent.report import write_report
from guardrails import amendments, gate
from guardrails.constitution import ConstitutionError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ByOpt = Annotated[str, typer.Option("--by", help="Who decides (recorded in the audit log).")]

constitution_app = typer.Typer(help="Show the constitution in force; propose amendments to its principles.",
                               no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for command in (approvals, approve, reject, log, checkpoints, rollback, report):
        app.command()(command)


def approvals(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Pending approvals: id, kind (checkpoint|constitution), run_id, status, created_at, summary."""
    _, store = open_store(ctx)
    rows = [{"id": a.id, "kind": a.kind, "run_id": a.run_id, "status": a.status, "created_at": a.created_at,
             "summary": a.summary} for a in store.approvals(status="pending")]
    if as_json:
        print_json(rows)
        return
    print_table("pending approvals", ["id", "kind", "run_id", "created_at", "summary"],
                [[r["id"], r["kind"], r["run_id"], r["created_at"], r["summary"]] for r in rows])


def _decide(ctx: typer.Context, approval_id: str, decision: gate.HumanDecision, by: str, note: str | None) -> None:
    ws, store = open_store(ctx)
    pending = store.get_approval(approval_id)
    try:
        if pending is not None and pending.kind == "constitution" and decision == "approve":
            version = amendments.approve(store, approval_id, by, note, ws.constitution_path)
            say(f"{approval_id} approved by {by}: constitution v{version.version} is in force; "
                "runs use it from their next round")
            return
        decided = gate.decide(store, approval_id, decision, by, note)
    except gate.TamperError as err:
        fail(str(err), EXIT_CHECK_FAILED)
    except (gate.GateError, ConstitutionError) as err:
        fail(str(err))
    say(f"{decided.id} {decided.status} by {decided.decided_by}"
        + (f"; `tether resume {decided.run_id}` continues the run" if decided.run_id else ""))


def approve(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(help="From `tether approvals`.")],
    by: ByOpt,
    note: Annotated[str | None, typer.Option("--note", help="Why (optional).")] = None,
) -> None:
    """Approve a pending checkpoint or constitution change. The adapter's hash is checked first."""
    _decide(ctx, approval_id, "approve", by, note)


def reject(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(help="From `tether approvals`.")],
    by: ByOpt,
    note: Annotated[str, typer.Option("--note", help="Why (required).")],
) -> None:
    """Reject a pending approval; a rejected candidate is discarded when the run resumes."""
    _decide(ctx, approval_id, "reject", by, note)


def log(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument()],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every check, measured or not.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The decision log as a lab notebook: per round the judge in use, each action and why, the
    signals against their thresholds (FIRED or ok), and the outcome. --json: one entry per decision
    (round, action, rationale, signals, actor, at, judge, outcome)."""
    _, store = open_store(ctx)
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
    """Checkpoints: id, run_id, round, status, sha256, path, parent, active."""
    _, store = open_store(ctx)
    active = {r.id: r.active_checkpoint for r in store.list_runs()}
    rows = [{"id": c.id, "run_id": c.run_id, "round": c.round, "status": c.status, "sha256": c.sha256,
             "path": c.path, "parent": c.parent, "active": active.get(c.run_id) == c.id,
             "heldout_oracle": ((c.metrics or {}).get("eval") or {}).get("candidate", {}).get("oracle")}
            for c in store.checkpoints(run_id)]
    if as_json:
        print_json(rows)
        return
    print_table("checkpoints", ["id", "round", "status", "active", "oracle", "sha256", "parent"],
                [[r["id"], r["round"], r["status"], "*" if r["active"] else "",
                  "" if r["heldout_oracle"] is None else f"{r['heldout_oracle']:.3f}",
                  (r["sha256"] or "")[:12], r["parent"]] for r in rows])


def rollback(
    ctx: typer.Context,
    checkpoint_id: Annotated[str, typer.Argument(help="An approved checkpoint, or a run's <RUN_ID>-base.")],
    by: ByOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")],
) -> None:
    """Make an earlier approved checkpoint (or the base model) active; the next round uses it."""
    _, store = open_store(ctx)
    try:
        ck = gate.rollback(store, checkpoint_id, by, reason)
    except gate.TamperError as err:
        fail(str(err), EXIT_CHECK_FAILED)
    except gate.GateError as err:
        fail(str(err))
    say(f"{ck.id} is now the active checkpoint of {ck.run_id}")


def report(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG plots and the summary.")],
) -> None:
    """PNG plots of monitors and held-out scores per round, and a summary (md + json)."""
    _, store = open_store(ctx)
    if store.get_run(run_id) is None:
        fail(f"no run '{run_id}' (see `tether status`)")
    for path in write_report(store, run_id, out):
        say(f"wrote {path}")


@constitution_app.command("show")
def constitution_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The constitution in force: invariants (immutable) and principles (amendable), with versions."""
    ws, store = open_store(ctx)
    try:
        version, current = amendments.in_force(store)
    except (gate.GateError, ConstitutionError) as err:
        fail(str(err))
    file_differs = ws.constitution_path.is_file() and ws.constitution_path.read_text() != version.content
    versions = [{"version": v.version, "sha256": v.sha256, "created_at": v.created_at, "created_by": v.created_by,
                 "approval_id": v.approval_id, "in_force": v.version == version.version}
                for v in store.constitution_versions()]
    if as_json:
        print_json({"in_force": version.version, "constitution": current.model_dump(mode="json"),
                    "invariants_sha256": current.invariants_sha256(), "versions": versions,
                    "workspace_file_differs": file_differs})
        return
    print_table(f"constitution '{current.name}' v{version.version} (in force) — invariants (immutable)",
                ["id", "check", "max_rate", "text"],
                [[i.id, i.check.kind, i.check.max_rate, i.text] for i in current.invariants])
    print_table("principles (amendable)", ["id", "weight", "rule", "text"],
                [[p.id, p.weight, p.rule.kind if p.rule else "", p.text] for p in current.principles])
    print_table("versions", ["version", "in force", "created_by", "approval", "created_at", "sha256"],
                [[v["version"], "*" if v["in_force"] else "", v["created_by"], v["approval_id"], v["created_at"],
                  v["sha256"][:12]] for v in versions])
    if file_differs:
        say(f"note: {ws.constitution_path} differs from v{version.version}; the next `tether run` records it as a "
            "new version (its invariants are pinned then)")


@constitution_app.command("propose")
def constitution_propose(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The whole proposed constitution (YAML), principles changed.")],
    by: ByOpt,
) -> None:
    """Propose an amendment to the principles: an approval of kind constitution. A proposal that
    touches an invariant (or its definitions) is refused with exit 2 and nothing is written."""
    _, store = open_store(ctx)
    if not file.is_file():
        fail(f"{file}: no such file")
    try:
        approval = amendments.propose(store, file.read_text(), str(file), by)
    except ConstitutionError as err:
        fail("invalid constitution:\n  " + "\n  ".join(err.problems))
    except gate.GateError as err:
        fail(str(err))
    say(f"proposed as {approval.id}: {approval.summary}. `tether approve {approval.id} --by NAME` puts it in force.")


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Recompute the audit hash chain; exit 1 naming the first bad entry if it is broken."""
    _, store = open_store(ctx)
    report = store.verify_audit()
    if as_json:
        print_json(asdict(report))
    if not report.ok:
        fail(f"audit chain broken at entry {report.first_bad_seq}: {report.reason}", EXIT_CHECK_FAILED)
    if not as_json:
        say(f"audit chain intact ({report.entries} entries)")


