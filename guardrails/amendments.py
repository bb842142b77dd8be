"""Constitution amendments: proposals of kind `constitution` that wait at the approval gate.

Only principles (and the constitution's name) can be amended. A proposal that adds, removes or
edits an invariant or the definitions they are checked by is refused at once, and approving checks
it all again (fail closed). An approved amendment becomes the version in force: the store records
it, the workspace file mirrors it, and every run uses it from its next round.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import yaml

from guardrails.constitution import Constitution, changed_invariants, parse_constitution
from guardrails.gate import SYSTEM_ACTOR, GateError, TamperError
from memory import Approval, ApprovalStateError, ConstitutionVersion, Store


def in_force(store: Store) -> tuple[ConstitutionVersion, Constitution]:
    """The constitution version in force (the latest recorded) and its parsed content."""
    latest = store.latest_constitution()
    if latest is None:
        raise GateError("no constitution is recorded in this workspace (run `tether init`)")
    return latest, parse_constitution(latest.content, f"constitution v{latest.version}")


def principle_changes(old: Constitution, new: Constitution) -> list[str]:
    """What a proposal changes, one phrase per principle (invariants are checked separately)."""
    before = {p.id: p for p in old.principles}
    after = {p.id: p for p in new.principles}
    changes = [f"adds principle '{i}'" for i in sorted(after.keys() - before.keys())]
    changes += [f"removes principle '{i}'" for i in sorted(before.keys() - after.keys())]
    changes += [f"edits principle '{i}'" for i in sorted(before.keys() & after.keys()) if before[i] != after[i]]
    if old.name != new.name:
        changes.append(f"renames the constitution to '{new.name}'")
    return changes


def _refuse_invariant_changes(current: Constitution, proposed: Constitution) -> None:
    touched = changed_invariants(current.invariant_digests(), proposed)
    if touched:
        raise GateError(
            f"the proposal touches invariant(s) {', '.join(touched)}: invariants and their definitions are "
            "immutable and cannot be amended; propose changes to principles only"
        )


OVER_REFUSAL_CLARIFICATION = (
    "Refuse only a request that meets the constitution's harm definitions; answer every other request fully."
)


def draft_over_refusal(current: Constitution, text: str) -> tuple[str, str] | None:
    """The agent's draft against over-refusal: strengthen the principle whose rule penalises refusing
    benign requests (weight +0.2, up to 1.0, and a clarifying sentence), or add one. Only principles
    change; `propose` re-checks that. Returns (amended YAML, what it changes), or None when the
    principle is already as strong as a draft can make it."""
    doc = yaml.safe_load(text)
    principles = doc.setdefault("principles", [])
    target = next((p for p in principles if (p.get("rule") or {}).get("kind") == "over_refusal"), None)
    if target is None:
        taken = {p.get("id") for p in principles}
        new_id = "helpful" if "helpful" not in taken else "answer-benign-requests"
        principles.append({"id": new_id, "text": OVER_REFUSAL_CLARIFICATION, "weight": 0.8,
                           "rule": {"kind": "over_refusal"}})
        return yaml.safe_dump(doc, sort_keys=False), f"adds principle '{new_id}' against over-refusal"
    weight = float(target.get("weight", 1.0))
    new_weight = min(1.0, round(weight + 0.2, 2))
    clarified = OVER_REFUSAL_CLARIFICATION in str(target.get("text", ""))
    if new_weight == weight and clarified:
        return None
    target["weight"] = new_weight
    if not clarified:
        target["text"] = f"{str(target.get('text', '')).rstrip()} {OVER_REFUSAL_CLARIFICATION}".strip()
    return (yaml.safe_dump(doc, sort_keys=False),
            f"principle '{target['id']}': weight {weight:g} -> {new_weight:g}"
            + ("" if clarified else " and the clarification \"" + OVER_REFUSAL_CLARIFICATION + "\""))


def propose(store: Store, text: str, source: str, by: str, run_id: str | None = None) -> Approval:
    """Create a pending approval of kind `constitution`. Raises ConstitutionError or GateError."""
    if not by.strip():
        raise GateError("--by must name who proposes the change")
    proposed = parse_constitution(text, source)
    version, current = in_force(store)
    _refuse_invariant_changes(current, proposed)
    changes = principle_changes(current, proposed)
    if not changes:
        raise GateError(f"the proposal changes nothing in constitution v{version.version}")
    sha = hashlib.sha256(text.encode()).hexdigest()
    with store.transaction():
        approval = store.create_approval(
            kind="constitution",
            subject=f"v{version.version}+{sha[:12]}",
            subject_sha256=sha,
            summary=f"{by} proposes to amend v{version.version}: {'; '.join(changes)}",
            payload={"content": text, "proposed_by": by, "base_version": version.version, "changes": changes},
            run_id=run_id,
        )
        store.append_audit(by, "constitution.propose", approval.id, {"base_version": version.version,
                                                                     "changes": changes, "sha256": sha})
    return approval


def approve(store: Store, approval_id: str, by: str, note: str | None, constitution_path: Path) -> ConstitutionVersion:
    """Approve an amendment: every check again, then a new version in force and the file rewritten."""
    approval = store.get_approval(approval_id)
    if approval is None or approval.kind != "constitution":
        raise GateError(f"no constitution proposal '{approval_id}' (see `tether approvals`)")
    if approval.status != "pending":
        raise GateError(f"approval {approval_id} is already {approval.status} by {approval.decided_by}")
    if not by.strip():
        raise GateError("--by must name the person deciding")
    text = str(approval.payload.get("content", ""))
    if hashlib.sha256(text.encode()).hexdigest() != approval.subject_sha256:
        raise TamperError(f"proposal {approval_id} no longer matches the text that was proposed")
    version, current = in_force(store)
    if version.version != approval.payload.get("base_version"):
        raise GateError(
            f"the constitution changed since this proposal (v{approval.payload.get('base_version')} -> "
            f"v{version.version}); reject it and propose again against v{version.version}"
        )
    proposed = parse_constitution(text, f"proposal {approval_id}")
    _refuse_invariant_changes(current, proposed)
    try:
        with store.transaction():
            store.decide_approval(approval_id, "approved", by, note)
            amended = store.add_constitution_version(
                text, approval.subject_sha256, proposed.invariants_sha256(),
                created_by=str(approval.payload.get("proposed_by", by)), approval_id=approval_id, note=note,
            )
            store.append_audit(by, "approval.approved", approval_id, {"note": note, "subject": approval.subject})
            store.append_audit(SYSTEM_ACTOR, "constitution.amend", f"v{amended.version}",
                               {"approval": approval_id, "changes": approval.payload.get("changes")})
    except ApprovalStateError as err:
        raise GateError(str(err)) from None
    _write_atomically(constitution_path, text)
    return amended


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
