"""Constitution amendments: proposals of kind `constitution` that wait at the approval gate.

Only principles (and the constitution's name) can be amended. A proposal that adds, removes or
edits an invariant or the definitions they are checked by is refused at once, and approving checks
it all again (fail closed). An approved amendment becomes the version in force: the store records
it, the workspace file mirrors it, and every run uses it from its next round.

A proposal is kept as written, and a draft made here edits the text in force in place (`amend_principles`),
so the diff a reviewer sees holds only the lines that change and approving keeps every comment.

Versions form lineages. v1 founds lineage 1; an amendment continues the lineage of the version it amends; an
approval proposed by `tether constitution new` (guardrails/lineage.py) founds the next lineage, with invariants of
its own, and its signed statements name the lineage it founds. A run stays in the lineage it started in: it adopts
newer versions of that lineage only, so a run started before a new lineage keeps the version it pinned.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from guardrails import keys, signoff
from guardrails.constitution import (
    Constitution,
    ConstitutionError,
    InvariantsChangedError,
    changed_invariants,
    parse_constitution,
    verify_pinned,
)
from guardrails.errors import GateError, TamperError
from guardrails.safe_yaml import YamlRefused
from guardrails.signoff import SYSTEM_ACTOR, HumanDecision
from guardrails.yaml_edit import Edit, edit_yaml
from memory import Approval, ConstitutionVersion, Run, Store
from memory.guarded import GuardedWrites

NEW_LINEAGE_ACTION = "constitution.new"  # the audited request of a new lineage (guardrails/lineage.py)


def in_force(store: Store) -> tuple[ConstitutionVersion, Constitution]:
    """The constitution version in force: the newest one that carries a verified human approval.
    A version row written without one (by hand, or by an older tether from the workspace file) is
    never in force; `unverified` lists them with the reason."""
    versions = store.constitution_versions()
    skipped: list[tuple[ConstitutionVersion, str]] = []
    for version in reversed(versions):
        problem = version_problem(store, version)
        if problem is None:
            constitution = parse_constitution(version.content, f"constitution v{version.version}")
            _refuse_fallback_across_invariants(skipped, version, constitution)
            return version, constitution
        skipped.append((version, problem))
    if not versions:
        raise GateError("no constitution is recorded in this workspace (run `tether init`)")
    raise GateError("no constitution with a verified approval is recorded in this workspace: "
                    + "; ".join(unverified(store).values())
                    + ". Restore the workspace's tether.db from a backup; tether never uses an unsigned text")


def _refuse_fallback_across_invariants(skipped: list[tuple[ConstitutionVersion, str]], chosen: ConstitutionVersion,
                                       constitution: Constitution) -> None:
    """A newer version without a verified approval is passed over only when it holds the same invariants as the
    version chosen instead: an unverified row with other invariants is a new lineage's text that was edited or
    a forged one, and falling back past it would silently put an older lineage back in force."""
    for version, problem in skipped:
        try:
            other = parse_constitution(version.content, f"constitution v{version.version}")
        except ConstitutionError:
            other = None
        if other is None or other.invariant_digests() != constitution.invariant_digests():
            raise TamperError(
                f"{problem}; its invariants are not those of v{chosen.version}, the newest verified version, so "
                "tether will not fall back to it (that could put an older lineage back in force). Restore the "
                "workspace's tether.db from a backup")


def unverified(store: Store) -> dict[int, str]:
    """Versions that carry no verified approval (never in force), each with why."""
    problems = {v.version: version_problem(store, v) for v in store.constitution_versions()}
    return {version: problem for version, problem in problems.items() if problem is not None}


def founded_lineage(approval: Approval) -> int | None:
    """The lineage a constitution approval founds (`tether constitution new`), or None for an amendment or v1.
    Its signed statements name it (guardrails/signoff.py), so an edited payload fails verification."""
    lineage = approval.payload.get("lineage")
    return lineage if isinstance(lineage, int) and not isinstance(lineage, bool) else None


def proposed_as_lineage(store: Store, approval: Approval) -> bool:
    """Whether the audited request of `approval` is a new lineage's (`tether constitution new`, with its count
    of signatures), not an amendment's."""
    return any(e.action == NEW_LINEAGE_ACTION for e in store.audit_entries(subject=approval.id))


def lineage_of(store: Store, version: ConstitutionVersion) -> int:
    """The lineage `version` belongs to: the one its approval founds, else that of the version it amends (v1
    and anything whose chain cannot be followed: lineage 1). Followed through the approvals' signed
    `base_version`s, which always point to an older version."""
    current: ConstitutionVersion | None = version
    while current is not None:
        approval = store.get_approval(current.approval_id) if current.approval_id else None
        if approval is None:
            return 1
        founded = founded_lineage(approval)
        if founded is not None:
            return founded
        base = approval.payload.get("base_version")
        if not isinstance(base, int) or not 0 < base < current.version:
            return 1
        current = store.get_constitution_version(base)
    return 1


def verify_workspace_file(store: Store, run: Run, text: str, constitution: Constitution) -> None:
    """The workspace file may not change a run's invariants: it holds the run's pinned invariants, or it is
    exactly the text in force of another lineage than the run's (founded after the run started; the run keeps
    the version it recorded). Anything else raises InvariantsChangedError."""
    try:
        verify_pinned(run.invariants, constitution)
        return
    except InvariantsChangedError:
        version, _ = in_force(store)
        own = store.get_constitution_version(run.constitution_version)
        if own is None or text != version.content or lineage_of(store, version) == lineage_of(store, own):
            raise


def version_problem(store: Store, version: ConstitutionVersion) -> str | None:
    """Why `version` is not a text a human approved and signed, or None when it is."""
    name = f"constitution v{version.version}"
    approval = store.get_approval(version.approval_id) if version.approval_id else None
    if approval is None or approval.kind != "constitution" or approval.status != "approved":
        return f"{name} has no approved constitution approval (approval {version.approval_id})"
    try:
        signoff.verify_decided(store, approval)
    except TamperError as err:
        return f"{name}: {err}"
    if founded_lineage(approval) is not None and not proposed_as_lineage(store, approval):
        return f"{name}: approval {approval.id} names a lineage but was not proposed as one"
    if approval.subject_sha256 != version.sha256 \
            or hashlib.sha256(version.content.encode()).hexdigest() != approval.subject_sha256:
        return f"{name} differs from the text approval {approval.id} signed: {_difference(version, approval)}"
    return None


def _difference(version: ConstitutionVersion, approval: Approval) -> str:
    """What an edited version row changes against the signed text (the proposal's content, when it still
    hashes to the signed digest): the invariants by id first, as they are what a run must never lose."""
    signed_text = str(approval.payload.get("content", ""))
    if hashlib.sha256(signed_text.encode()).hexdigest() != approval.subject_sha256:
        return "the signed text itself is not in the store any more, so what changed cannot be named"
    signed = parse_constitution(signed_text, f"approval {approval.id}")
    try:
        stored = parse_constitution(version.content, f"constitution v{version.version}")
    except ConstitutionError as err:
        return f"its stored text no longer parses ({err})"
    touched = changed_invariants(signed.invariant_digests(), stored)
    if touched:
        return f"invariant(s) {', '.join(touched)}"
    return "; ".join(principle_changes(signed, stored)) or "its layout or comments only (no invariant or principle)"


def adopt(store: Store, run: Run) -> tuple[ConstitutionVersion, Constitution] | None:
    """Move a run to the newest version of its own lineage when it is newer than the run's: only a version with
    a verified human approval, and only if the run's pinned invariants are unchanged in it. A lineage founded
    after the run started is never adopted: the run keeps its version (new runs use the new lineage)."""
    in_force(store)  # raises when nothing verified is in force, or on a lineage's edited text
    own = store.get_constitution_version(run.constitution_version)
    if own is None:
        raise TamperError(f"constitution v{run.constitution_version} of run {run.id} is not in the store")
    lineage = lineage_of(store, own)
    newer = [v for v in store.constitution_versions() if v.version > run.constitution_version]
    version = next((v for v in reversed(newer)
                    if version_problem(store, v) is None and lineage_of(store, v) == lineage), None)
    if version is None:
        return None
    constitution = parse_constitution(version.content, f"constitution v{version.version}")
    verify_pinned(run.invariants, constitution)
    with store.transaction():
        GuardedWrites(store).set_constitution_version(run.id, version.version)
        store.append_audit(SYSTEM_ACTOR, "constitution.adopt", run.id,
                           {"run": run.id, "version": version.version, "approval": version.approval_id})
    return version, constitution


def init(store: Store, text: str, signer: keys.Signer) -> ConstitutionVersion:
    """Version 1 at `tether init`: proposed by the workspace, signed by its first reviewer."""
    constitution = parse_constitution(text, "constitution.yaml")
    sha = hashlib.sha256(text.encode()).hexdigest()
    writes = GuardedWrites(store)
    with store.transaction():
        approval = writes.create_approval("constitution", "v1", sha, f"constitution v1 '{constitution.name}'",
                                          payload={"content": text, "proposed_by": "tether init", "base_version": 0,
                                                   "changes": ["initial version"]})
        store.append_audit(SYSTEM_ACTOR, "constitution.init", approval.id, {"sha256": sha, "required": 1})
        signoff.sign(store, approval, "approve", signer, "initial constitution")
        return writes.add_constitution_version(text, sha, constitution.invariants_sha256(), created_by="tether init",
                                               approval_id=approval.id, note="initial version")


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


def amend_principles(text: str, edits: Sequence[Edit]) -> str:
    """`text` with `edits` (paths under `principles` only) made in place: every other line, comments and
    formatting included, stays as it is, so the diff a reviewer sees is the change itself. The result
    reads back as exactly the intended document (guardrails/yaml_edit.py) or this raises GateError;
    `propose` then checks the parsed invariants as for any proposal."""
    outside = [".".join(map(str, path)) for path, _ in edits if not path or path[0] != "principles"]
    if outside:
        raise GateError(f"an amendment edits principles only, not {', '.join(outside)}")
    try:
        return edit_yaml(text, "the constitution in force", edits)
    except YamlRefused as err:
        raise GateError(f"cannot draft the amendment in place: {err}") from None


def draft_over_refusal(current: Constitution, text: str) -> tuple[str, str] | None:
    """The agent's draft against over-refusal: strengthen the principle whose rule penalises refusing
    benign requests (weight +0.2, up to 1.0, and a clarifying sentence), or add one, editing `text` (the
    version in force) in place. Only principles change; `propose` re-checks that. Returns (amended YAML,
    what it changes), or None when the principle is already as strong as a draft can make it."""
    principles = current.principles
    index = next((i for i, p in enumerate(principles) if p.rule is not None and p.rule.kind == "over_refusal"), None)
    if index is None:
        taken = {p.id for p in principles}
        new_id = "helpful" if "helpful" not in taken else "answer-benign-requests"
        added = {"id": new_id, "text": OVER_REFUSAL_CLARIFICATION, "weight": 0.8, "rule": {"kind": "over_refusal"}}
        edit: Edit = (("principles", len(principles)), added) if principles else (("principles",), [added])
        return amend_principles(text, [edit]), f"adds principle '{new_id}' against over-refusal"
    target = principles[index]
    new_weight = min(1.0, round(target.weight + 0.2, 2))
    clarified = OVER_REFUSAL_CLARIFICATION in target.text
    if new_weight == target.weight and clarified:
        return None
    edits: list[Edit] = []
    if new_weight != target.weight:
        edits.append((("principles", index, "weight"), new_weight))
    if not clarified:
        edits.append((("principles", index, "text"), f"{target.text.rstrip()} {OVER_REFUSAL_CLARIFICATION}".strip()))
    return (amend_principles(text, edits),
            f"principle '{target.id}': weight {target.weight:g} -> {new_weight:g}"
            + ("" if clarified else " and the clarification \"" + OVER_REFUSAL_CLARIFICATION + "\""))


def propose(store: Store, text: str, source: str, by: str, run_id: str | None = None, required: int = 1) -> Approval:
    """Create a pending approval of kind `constitution`. Raises ConstitutionError or GateError.
    `required` distinct reviewers must approve it, none of them the proposer."""
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
        approval = GuardedWrites(store).create_approval(
            kind="constitution",
            subject=f"v{version.version}+{sha[:12]}",
            subject_sha256=sha,
            summary=f"{by} proposes to amend v{version.version}: {'; '.join(changes)}",
            payload={"content": text, "proposed_by": by, "base_version": version.version, "changes": changes},
            run_id=run_id,
        )
        store.append_audit(by, "constitution.propose", approval.id, {"base_version": version.version,
                                                                     "changes": changes, "sha256": sha,
                                                                     "required": required})
    return approval


def decide(store: Store, approval_id: str, decision: HumanDecision, signer: keys.Signer, note: str | None,
           constitution_path: Path) -> tuple[Approval, ConstitutionVersion | None]:
    """A reviewer's signed decision on an amendment. Approving re-checks everything; once enough
    reviewers approved, the new version is in force and the workspace file mirrors it."""
    approval = store.get_approval(approval_id)
    if approval is None or approval.kind != "constitution":
        raise GateError(f"no constitution proposal '{approval_id}' (see `tether approvals`)")
    if approval.status != "pending":
        raise GateError(f"approval {approval_id} is already {approval.status} by {approval.decided_by}")
    if decision == "reject":
        if not (note or "").strip():
            raise GateError("a rejection needs --note saying why")
        return signoff.sign(store, approval, "reject", signer, note), None
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
    founds = founded_lineage(approval)
    if founds is None:
        _refuse_invariant_changes(current, proposed)
    elif not proposed_as_lineage(store, approval):
        raise TamperError(f"proposal {approval_id} names a lineage but was not proposed as one "
                          "(`tether constitution new`)")
    elif founds != lineage_of(store, version) + 1:
        raise TamperError(f"proposal {approval_id} claims to found lineage {founds}, but the lineage in force is "
                          f"{lineage_of(store, version)}")
    elif not changed_invariants(current.invariant_digests(), proposed):
        raise GateError(f"proposal {approval_id} has the invariants of v{version.version}: that is an amendment "
                        "(`tether constitution propose`), not a new lineage")
    signoff.check_signer(store, approval, signer)  # a refusal is audited, so not inside the transaction below
    with store.transaction():
        decided = signoff.sign(store, approval, "approve", signer, note)
        if decided.status != "approved":
            return decided, None  # waits for more reviewers (approvals.required)
        amended = GuardedWrites(store).add_constitution_version(
            text, approval.subject_sha256, proposed.invariants_sha256(),
            created_by=str(approval.payload.get("proposed_by", signer.name)), approval_id=approval_id, note=note,
        )
        if founds is None:
            store.append_audit(SYSTEM_ACTOR, "constitution.amend", f"v{amended.version}",
                               {"approval": approval_id, "changes": approval.payload.get("changes")})
        else:
            store.append_audit(SYSTEM_ACTOR, "constitution.lineage", f"v{amended.version}",
                               {"approval": approval_id, "lineage": founds, "sha256": approval.subject_sha256,
                                "changes": approval.payload.get("changes"), "signed_by": decided.decided_by})
    _write_atomically(constitution_path, text)
    return decided, amended


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
