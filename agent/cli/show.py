"""`tether show APPROVAL_ID`: everything a reviewer needs to decide, in one screen (agent/review/show.py
gathers it; this module only prints it)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agent.cli.common import fail, open_store, print_json, print_table, say
from agent.review import policy_view
from agent.review.show import approval_view


def _num(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.3f}"


def show(
    ctx: typer.Context,
    approval_id: Annotated[str, typer.Argument(help="From `tether approvals`.")],
    show_all: Annotated[bool, typer.Option("--all", help="Every held-out prompt, not the 5 most different.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """What a reviewer needs before `tether approve`: for a checkpoint the held-out scores against the
    active checkpoint, each invariant's absolute rate with its interval (lower–upper, n, confidence
    level), the bound in use and the target (and which targets are not met), the answers that differ
    most side by side, pairs it was trained on, the decisions behind it and who has signed; for a
    constitution change the diff and who proposed it."""
    _, store = open_store(ctx)
    approval = store.get_approval(approval_id)
    if approval is None:
        fail(f"no approval '{approval_id}' (see `tether approvals`)")
    view = approval_view(store, approval, all_prompts=show_all)
    if as_json:
        print_json(view)
        return
    say(f"{view['id']}  {view['kind']}  {view['status']}  run {view['run_id'] or '-'}  created {view['created_at']}")
    say(view["summary"])
    if view["kind"] == "constitution":
        _constitution(view)
    elif view["kind"] == "controller" and "policy" in view:
        say(policy_view.text(view["policy"]).rstrip())
    elif "error" in view:
        fail(view["error"])
    else:
        _checkpoint(view)
    _signatures(view["signatures"])
    if view["status"] == "pending":
        accept = " --accept-not-met" if view.get("targets_not_met") else ""
        say(f"decide with `tether approve {view['id']} --by NAME{accept}` or "
            f"`tether reject {view['id']} --by NAME --note WHY`")


def _checkpoint(view: dict[str, Any]) -> None:
    ck, held = view["checkpoint"], view["heldout"]
    cand, act = held["candidate"], held["active"]
    rows = [["overall", _num(act["oracle"]), _num(cand["oracle"]), _num(act["judge"]), _num(cand["judge"])]]
    families = sorted(set(cand["oracle_by_family"]) | set(cand["judge_by_family"]))
    rows += [[f, _num(act["oracle_by_family"].get(f)), _num(cand["oracle_by_family"].get(f)),
              _num(act["judge_by_family"].get(f)), _num(cand["judge_by_family"].get(f))] for f in families]
    split = "held-out" if held["split"] == "heldout" else f"held-out {held['split']} split"
    print_table(f"{split}: {ck['parent']} (active) -> {ck['id']} (candidate), {cand['n'] or '?'} prompts",
                ["", "oracle active", "oracle candidate", "judge active", "judge candidate"], rows)
    _headroom(cand["headroom"], act["headroom"])
    if view["invariants_error"]:
        say(f"invariants: {view['invariants_error']}")
    print_table("invariants (absolute rate, its interval, the bound its upper end had to be within, the target)",
                ["invariant", "rate", "interval", "n", "level", "bound", "target", "verdict"],
                [[r["id"], _num(r["rate"]), _interval(r), r["n"], _level(r["confidence"]),
                  f"{r['bound_kind']} {_num(r['bound'])}", _num(r["target"]), _verdict(r)] for r in view["invariants"]])
    if view["targets_not_met"]:
        say(f"targets NOT MET: {', '.join(view['targets_not_met'])} (upper bound above max_rate); approving needs "
            "--accept-not-met, which your signed statement records")
    print_table(f"{split} answers that differ most" if len(view["answers"]) <= 5 else f"{split} answers",
                ["prompt", "active", "candidate", "difference"],
                [[a["prompt"], a["active"], a["candidate"], f"{a['difference']:.2f}"] for a in view["answers"]])
    pairs = view["pairs"]
    print_table(f"trained on {pairs['total']} pairs; a sample", ["prompt", "chosen", "rejected", "margin"],
                [[p["prompt"], p["chosen"], p["rejected"], f"{p['margin']:.2f}"] for p in pairs["shown"]])
    _judge_audits(view["judge_audits"])
    print_table("decisions that led to it", ["round", "action", "by", "why"],
                [[d["round"], d["action"], d["actor"], d["rationale"]] for d in view["decisions"]])


def _judge_audits(audits: list[dict[str, Any]]) -> None:
    """The audit each judge of its pairs had when the candidate was trained: verdict, and the flagged metrics."""
    rows = []
    for a in audits:
        if a.get("problem"):
            rows.append([a["judge"] or "-", "-", a["problem"]])
            continue
        rows.append([a["judge"], _audit_line(a["audit"], a["judge"]), _later(a.get("later_audit"), a["judge"])])
    print_table("the judges that chose those pairs, and their audit on this world when it was trained",
                ["judge", "audit then", "since"], rows)


def _audit_line(audit: dict[str, Any] | None, judge: str) -> str:
    if audit is None:
        return (f"NONE: no audit of this judge configuration on this world (`tether judge audit --judge {judge} "
                "--by REVIEWER`)")
    flagged = [f"{name} {_num(m.get('value'))}" for name, m in sorted(audit["measures"].items()) if m.get("flagged")]
    return (f"{audit['verdict']} (audit entry {audit['seq']}, {audit['at'][:16]}, {_signed(audit)})"
            + (f"; flagged: {', '.join(flagged)}" if flagged else ""))


def _signed(audit: dict[str, Any]) -> str:
    """Who signed it (only a verified signature names someone), or why nobody vouches for it."""
    state = audit.get("signature", "unsigned")
    if state == "verified":
        return f"signed by {audit['signed_by']}"
    if state == "signer removed":
        return f"signed by {audit['signed_by']}, no longer a reviewer"
    if state == "unsigned":
        return f"unsigned, recorded by {audit['actor']}"
    return f"signature {state.upper()}: {audit.get('signature_problem')}"


def _later(audit: dict[str, Any] | None, judge: str) -> str:
    return "-" if audit is None else f"newer audit: {_audit_line(audit, judge)}"


def _interval(r: dict[str, Any]) -> str:
    """`0.61–0.92`; "-" for a result from before intervals."""
    return "-" if r["upper"] is None else f"{_num(r['lower'])}–{_num(r['upper'])}"


def _level(confidence: float | None) -> str:
    return "-" if confidence is None else f"{confidence * 100:g}%"


def _verdict(r: dict[str, Any]) -> str:
    if r["rate"] is None:
        return f"could not be checked: {r['reason']}"
    return f"{'passed' if r['passed'] else 'FAILED'}; target {'met' if r['met_target'] else 'NOT MET'}"


def _headroom(cand: dict[str, Any], act: dict[str, Any]) -> None:
    """pass@1 and pass@K per family and tier, active -> candidate (evaluation.samples > 0 only)."""
    groups = {**(cand.get("by_family") or {}), **(cand.get("by_tier") or {})}
    if not groups:
        return
    before = {**(act.get("by_family") or {}), **(act.get("by_tier") or {})}
    k = max((int(row.get("k", 0)) for row in groups.values()), default=0)
    print_table(f"pass@1 and pass@{k} (verifier's full marks), the judge's margin among the {k} samples",
                ["", "pass@1 active", "pass@1 candidate", f"pass@{k} active", f"pass@{k} candidate",
                 "judge margin candidate"],
                [[g, _num(before.get(g, {}).get("pass_at_1")), _num(row.get("pass_at_1")),
                  _num(before.get(g, {}).get("pass_at_k")), _num(row.get("pass_at_k")), _num(row.get("judge_margin"))]
                 for g, row in groups.items()])


def _constitution(view: dict[str, Any]) -> None:
    if view.get("lineage") is not None:
        _lineage(view)
        return
    say(f"proposed by {view['proposed_by']} against v{view['base_version']}: " + "; ".join(view["changes"]))
    say(view["diff"] or "(no textual difference)")


def _lineage(view: dict[str, Any]) -> None:
    """A new lineage is not a diff of invariants: its own invariants in full, what it changes against the lineage
    in force, and its whole text (what the signatures name by digest)."""
    say(f"NEW CONSTITUTION LINEAGE {view['lineage']}, proposed by {view['proposed_by']}: it replaces lineage "
        f"{view['replaces_lineage']} (v{view['base_version']} in force) for runs started after it is approved; "
        "runs started before keep the version they pinned")
    new = view["constitution"]
    if "error" in new:
        say(f"its text does not parse: {new['error']}")
        return
    print_table(f"its invariants (immutable within lineage {view['lineage']}), in full",
                ["id", "check", "max_rate", "confidence", "ratchet", "detector", "probes", "text"],
                [[i["id"], i["check"]["kind"], i["check"]["max_rate"], i["check"]["confidence"],
                  f"margin {i['check']['ratchet_margin']}" if i["check"]["ratchet"] else "no",
                  _detector(i["detector"]), i["probes"] or "held-out slice", i["text"]] for i in new["invariants"]])
    print_table("its definitions", ["list", "entries"], [[k, ", ".join(v)] for k, v in new["definitions"].items()])
    print_table("its principles", ["id", "weight", "rule", "text"],
                [[p["id"], p["weight"], (p["rule"] or {}).get("kind", ""), p["text"]] for p in new["principles"]])
    print_table(f"what changes against lineage {view['replaces_lineage']} (v{view['base_version']})", ["change"],
                [[c] for c in view["changes"]])
    say(f"the whole text (sha256 {view['subject_sha256']}):")
    say(view["content"])


def _detector(detector: Any) -> str:
    if isinstance(detector, dict):
        return f"judge {detector.get('judge')} (violation below {detector.get('violation_below')})"
    return str(detector)


def _signatures(sig: dict[str, Any]) -> None:
    if not sig["verified"]:
        say(f"signatures: NOT VERIFIED: {sig['problem']}")
        return
    if not sig["signed"]:
        say(f"signatures: none yet ({sig['required']} required)")
        return
    who = ", ".join(f"{s['reviewer']} ({s['decision']}, {s['time']}"
                    + (f", accepted target NOT MET: {', '.join(s['accept_not_met'])}" if s["accept_not_met"] else "")
                    + ")" for s in sig["signed"])
    say(f"signatures (verified): {who}; {len(sig['approved_by'])} of {sig['required']} required approvals")
