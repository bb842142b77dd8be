"""`tether controller fit | show | propose`: a learned controller policy fitted from decision histories, explained,
and proposed for adoption (an approval of kind controller that reviewers sign; guardrails/controller_policy.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.common import fail, open_store, print_json, say
from agent.config import ConfigError, load_config
from agent.controller.learned import (
    FitRow,
    FittedRun,
    digest,
    feature_values,
    load_policy,
    parse_policy,
)
from agent.review import policy_view
from guardrails import controller_policy
from memory import Store

controller_app = typer.Typer(help="A learned controller policy: fit it from decision histories, explain it, "
                             "propose it for adoption (reviewers sign it like a constitution amendment).",
                             no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _rows(store: Store, run_id: str) -> tuple[list[FitRow], set[tuple[int, str]]]:
    """(the rows, {(k, metric)}) of a run's measured controller decisions."""
    measured = {o.decision_id: o for o in store.outcomes(run_id) if o.status == "measured"}
    rows: list[FitRow] = []
    windows: set[tuple[int, str]] = set()
    for d in store.decisions(run_id):
        o = measured.get(d.id)
        if d.actor != "controller" or o is None or d.action in ("stop", "skip"):
            continue
        curve = (d.signals.get("heldout_curve") or {}).get("points") or []
        rows.append(FitRow(tuple(feature_values(d.signals, curve)), d.action, float(o.outcome["heldout_change"])))
        windows.add((int(o.outcome["k"]), str(o.outcome["metric"])))
    return rows, windows


@controller_app.command("fit")
def fit(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Option("--runs", help="A run to fit on (repeat for more).")],
    out: Annotated[Path, typer.Option("--out", help="The policy file to write (JSON).")],
    from_db: Annotated[list[Path] | None, typer.Option(
        "--from-db", help="Another workspace's tether.db to find runs in (read only; repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a learned controller policy on the measured decisions of RUNs (this workspace's, or --from-db's): one
    Bayesian ridge regressor per action predicting the validation held-out change over the decision's window, its
    regularisation chosen from the data, with the uncertainty of every prediction. Writes a
    versioned file naming the runs it was fitted on, and prints its sha256; adopt it with `tether controller
    propose`. Too little history is exit 2 and nothing is written."""
    from agent.controller.fit import fit_policy  # scikit-learn: only when fitting

    _, store = open_store(ctx, readonly=True)
    others: list[tuple[str, Store]] = []
    for path in from_db or []:
        if not path.is_file():
            fail(f"--from-db {path}: no such file", hint="name another workspace's tether.db")
        others.append((str(path), Store(path, readonly=True)))
    rows: list[FitRow] = []
    windows: set[tuple[int, str]] = set()
    fitted_on: list[FittedRun] = []
    for run_id in dict.fromkeys(runs):
        source = next(((name, s) for name, s in [("workspace", store), *others] if s.get_run(run_id)), None)
        if source is None:
            fail(f"no run '{run_id}' in this workspace" + (" or --from-db" if others else ""),
                 hint="see `tether status`, or name the database it is in with --from-db")
        found, seen = _rows(source[1], run_id)
        rows += found
        windows |= seen
        fitted_on.append(FittedRun(run_id=run_id, source=source[0], decisions=len(found)))
    if len(windows) > 1:
        fail(f"the runs' outcomes were measured over different windows or metrics {sorted(windows)}",
             hint="fit runs of one controller.outcome_rounds and heldout_metric together")
    k, metric = next(iter(windows), (1, "oracle"))
    policy, seconds = fit_policy(rows, fitted_on, k=k, metric=metric, now=store.now())
    data = (json.dumps(policy.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    sha = digest(data)
    doc: dict[str, Any] = {
        "out": str(out), "sha256": sha, "decisions": len(rows), "runs": [r.run_id for r in fitted_on],
        "actions": {a: m.n for a, m in policy.actions.items()}, "fit_seconds": round(seconds, 4), "bytes": len(data)}
    if as_json:
        print_json(doc)
        return
    say(f"wrote {out} (sha256 {sha}): {len(rows)} measured decisions of {len(fitted_on)} run(s); models for "
        + ", ".join(f"{a} ({n})" for a, n in doc["actions"].items())
        + f"; fitted in {seconds:.3f} s. Adopt it: `tether controller propose {out} --by NAME`")


@controller_app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="A policy file from `tether controller fit`.")],
    png: Annotated[Path | None, typer.Option("--png", help="Also draw the per-action values to this PNG.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain a fitted policy: per action, its decisions, its value at the medians and its heaviest features, and
    its predicted validation held-out change as each main feature moves (the others at their medians)."""
    policy, sha = load_policy(file)
    doc = policy_view.explain(policy, sha)
    if png is not None:
        policy_view.plot(doc, png)
    if as_json:
        print_json(doc)
        return
    typer.echo(policy_view.text(doc), nl=False)
    if png is not None:
        say(f"wrote {png}")


@controller_app.command("propose")
def propose(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A policy file from `tether controller fit`.")],
    by: Annotated[str, typer.Option("--by", help="Who proposes it (never one of its signers).")],
) -> None:
    """Propose a fitted policy for runs with controller.policy: learned: an approval of kind controller holding
    the file's exact text, signed by approvals.required reviewers (`tether approve ID --by NAME`), audited. A run
    refuses any policy file whose sha256 no verified approval names."""
    ws, store = open_store(ctx)
    try:
        data = file.read_bytes()
        policy = parse_policy(data, str(file))
        text = data.decode("utf-8")
    except OSError as err:
        fail(f"cannot read {file}: {err.strerror or err}")
    try:
        required = load_config(ws.config_path).approvals.required
    except ConfigError as err:
        fail(f"the workspace config is invalid, so approvals.required is unknown: {err}")
    summary = (f"models for {', '.join(sorted(policy.actions))}, fitted on "
               f"{', '.join(r.run_id for r in policy.fitted_on)} (validation {policy.metric}, k={policy.k})")
    approval = controller_policy.propose(store, text, summary, by, required=required)
    say(f"proposed as {approval.id}: {approval.summary}. `tether approve {approval.id} --by NAME` adopts it.")
