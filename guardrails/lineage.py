"""Your own constitution: `tether constitution new FILE --by NAME` proposes a new lineage.

An amendment may never touch an invariant. A new lineage replaces them: its text brings invariants,
definitions and principles of its own. It is an approval of kind `constitution` whose payload and signed
statements name the lineage it founds (guardrails/signoff.py `facts`), and whose subject digest is the sha256 of
the whole proposed text, so a database edit of the text, of the lineage or of the proposer fails verification.
It needs more signatures than an amendment (`required_signatures`), never the proposer's, each verified against
the pinned reviewer registry; `amendments.decide` re-checks it and puts it in force once enough have signed.
Runs started after that use it; a run started before keeps the version it recorded (`amendments.adopt` stays
in a run's lineage), and amendments from then on apply within the new lineage.
"""

from __future__ import annotations

import hashlib

from guardrails import amendments, reviewers
from guardrails.constitution import Constitution, changed_invariants, parse_constitution, pins_sha256
from guardrails.errors import GateError, GuardrailError, TamperError
from memory import Approval, Run, Store
from memory.guarded import GuardedWrites


def required_signatures(store: Store, proposer: str, configured: int | None, amendment_required: int) -> int:
    """How many registered reviewers, the proposer never among them, must approve a new lineage: the configured
    count (approvals.new_constitution_required), by default every registered reviewer; never fewer than an
    amendment needs (approvals.required), nor fewer than 2 once 2 reviewers are registered. GateError when the
    registry cannot supply that many signers other than the proposer."""
    registered = sorted(reviewers.registry(store))
    need = max(configured if configured is not None else len(registered), amendment_required,
               min(2, len(registered)))
    eligible = [name for name in registered if name != proposer]
    if need > len(eligible):
        why = (f"'{proposer}' proposes it and can never sign it, which leaves {len(eligible)} "
               f"({', '.join(eligible) or 'nobody'})" if proposer in registered
               else f"this workspace has {len(registered)} ({', '.join(registered)})")
        raise GateError(f"a new constitution lineage needs {need} approving reviewers, but {why}: add reviewers "
                        "(`tether reviewer add`), propose under the name of someone who is not a reviewer, or lower "
                        "approvals.new_constitution_required (never below 2 while 2 reviewers are registered)")
    return need


def changes(current: Constitution, proposed: Constitution) -> list[str]:
    """What founding `proposed` changes against the constitution in force, one phrase each: invariants
    added, removed or replaced (by id), the definitions they are checked by, then principles and name."""
    before, after = current.invariant_digests(), proposed.invariant_digests()
    phrases = []
    for key in sorted(set(before) | set(after)):
        what = "the definitions" if key == "definitions" else f"invariant '{key}'"
        if key not in after:
            phrases.append(f"removes {what}")
        elif key not in before:
            phrases.append(f"adds {what}")
        elif before[key] != after[key]:
            phrases.append(f"replaces {what}")
    return phrases + amendments.principle_changes(current, proposed)


def propose(store: Store, text: str, source: str, by: str, required: int) -> Approval:
    """A pending approval founding the next lineage with `text` (validated here again: parse and schema; the
    caller checks its probes and detectors against the workspace config first). Raises ConstitutionError or
    GateError, writing nothing; the proposal and its required count are audited together."""
    if not by.strip():
        raise GateError("--by must name who proposes the new constitution")
    proposed = parse_constitution(text, source)
    version, current = amendments.in_force(store)
    if not changed_invariants(current.invariant_digests(), proposed):
        raise GateError(f"{source} has the invariants (and definitions) of v{version.version}, the version in force: "
                        "a new lineage brings invariants of its own; to change principles only, "
                        f"`tether constitution propose {source} --by {by}`")
    in_force_lineage = amendments.lineage_of(store, version)
    lineage = in_force_lineage + 1
    sha = hashlib.sha256(text.encode()).hexdigest()
    what = changes(current, proposed)
    with store.transaction():
        approval = GuardedWrites(store).create_approval(
            kind="constitution",
            subject=f"lineage-{lineage}+{sha[:12]}",
            subject_sha256=sha,
            summary=f"{by} proposes constitution lineage {lineage} '{proposed.name}' ({len(proposed.invariants)} "
                    f"invariants of its own) to replace lineage {in_force_lineage} (v{version.version}): "
                    + "; ".join(what),
            payload={"content": text, "proposed_by": by, "base_version": version.version, "lineage": lineage,
                     "changes": what},
        )
        store.append_audit(by, amendments.NEW_LINEAGE_ACTION, approval.id, {
            "base_version": version.version, "lineage": lineage, "replaces_lineage": in_force_lineage,
            "sha256": sha, "invariants_sha256": proposed.invariants_sha256(), "changes": what, "required": required})
    return approval


def verify_run(store: Store, run: Run) -> None:
    """A run is in the lineage it started in, with the pins it started with: its row (which a database edit
    could change) against its audited `run.start` entry. TamperError naming what differs."""
    start = next((e.details for e in store.audit_entries(subject=run.id) if e.action == "run.start"), None)
    if start is None:
        raise TamperError(f"run {run.id} has no audited start: it was not started by tether")
    if pins_sha256(run.invariants) != run.invariants_sha256 or start.get("invariants_sha256") != run.invariants_sha256:
        raise TamperError(f"run {run.id}'s pinned invariants are not the ones its audited start recorded")
    own = store.get_constitution_version(run.constitution_version)
    if own is None:
        raise TamperError(f"constitution v{run.constitution_version} of run {run.id} is not in the store")
    started = start.get("lineage")
    if not isinstance(started, int):  # a run started before lineages were recorded: its start version's
        first = store.get_constitution_version(int(start.get("constitution_version") or 0))
        started = amendments.lineage_of(store, first) if first is not None else None
    if started != amendments.lineage_of(store, own):
        raise TamperError(f"run {run.id} started in constitution lineage {started}, but its row now names "
                          f"v{own.version} of lineage {amendments.lineage_of(store, own)}: a run never changes lineage")


def kept_note(store: Store, run: Run) -> str | None:
    """What a run resumed after a new lineage came into force says: it keeps the version it pinned. None when
    it is in the lineage in force (or nothing is in force: that is drive's to report, as tampering)."""
    own = store.get_constitution_version(run.constitution_version)
    try:
        version, _ = amendments.in_force(store)
    except GuardrailError:
        return None
    if own is None or amendments.lineage_of(store, own) == amendments.lineage_of(store, version):
        return None
    return (f"run {run.id} keeps constitution v{own.version} (lineage {amendments.lineage_of(store, own)}), the "
            f"version it pinned; lineage {amendments.lineage_of(store, version)} (v{version.version}) is in force "
            "for runs started from now on")
