"""A judge is trusted on evidence: each `tether judge audit` is recorded in the hash-chained audit log (action
`judge.audit`, subject `judge:NAME`), pinned to the digest of the judge's configuration (name, settings and
tether's version) and of the world it was audited on. With `judge.require_audit` set, a run refuses every judge
of its pool whose latest reviewer-signed audit for that configuration on that world is missing, or misses one
of the required metrics; `validate` reports the same, and both before any model is loaded or any sample drawn.

The audit log is append-only and verified by `tether audit verify`, so an audit cannot be rewritten afterwards
without the chain saying so; but anyone who can write the database can append to it. Only an audit signed by a
reviewer of the verified registry (`--by NAME`, guardrails/judge_audits.py) therefore counts: an unsigned one is
no evidence (exit 2, with the command that makes one), and one whose signature does not verify, or was made for
other facts, is tampering (TamperError, exit 1)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from pydantic import ValidationError

from agent.config import JudgeSpecConfig, TetherConfig
from guardrails import judge_audits, keys, reviewers
from guardrails.errors import TamperError
from memory import AuditEntry, Run, Store
from tools.judges.audit import AuditReport

AUDIT_ACTION = "judge.audit"
# What `tether show` says of an audit's signature: it verifies (by a current reviewer, or one removed since),
# there is none, it fails verification, or the registry it is checked against cannot be replayed here.
SignatureState = Literal["verified", "signer removed", "unsigned", "invalid", "unverified"]


@dataclass(frozen=True)
class ReviewerTrust:
    """The verified reviewer registry, removed reviewers included (their signatures verify but no longer count)."""

    registry: Mapping[str, reviewers.Reviewer]
    workspace: str


def reviewer_trust(store: Store) -> ReviewerTrust:
    """Replayed from the root pinned in the reviewer's folder; TamperError when it cannot be (no pin, a rewritten
    registry): nothing signed can be believed then."""
    registry = reviewers.registry(store, include_removed=True)
    return ReviewerTrust(registry, str(store.meta(reviewers.WORKSPACE_ID_KEY)))


def _digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _version() -> str:
    try:
        return metadata.version("tether")
    except metadata.PackageNotFoundError:  # a checkout run without an install
        return "unknown"


def judge_digest(name: str, settings: Mapping[str, Any]) -> str:
    """What an audit is valid for: the judge, its settings, and the tether that built it (a new version may
    judge differently, so it needs an audit of its own)."""
    return _digest({"name": name, "settings": dict(settings), "tether": _version()})


def world_digest(config: TetherConfig) -> str:
    return _digest({"name": config.world.name, "settings": dict(config.world.settings)})


def record_audit(store: Store, actor: str, config: TetherConfig, judge: str, settings: Mapping[str, Any],
                 report: AuditReport, source: Mapping[str, Any], signer: keys.Signer | None = None) -> AuditEntry:
    """Append one audit to the log, signed by `signer` (then its actor) when given. `source`: what it ran on
    (the world's probes, or a labelled file and its sha256)."""
    measures = {m.name: {"value": m.value, "n": m.n, "threshold": m.threshold, "direction": m.direction,
                         "flagged": m.flagged} for m in report.measures}
    subject = f"judge:{judge}"
    details: dict[str, Any] = {
        "judge": judge, "settings": dict(settings), "judge_sha256": judge_digest(judge, settings),
        "world": config.world.name, "world_sha256": world_digest(config), "tether": _version(),
        "source": dict(source), "verdict": report.verdict, "measures": measures}
    with store.transaction():  # the signed statement names the head this entry is appended right after
        if signer is None:
            return store.append_audit(actor, AUDIT_ACTION, subject, details)
        return store.append_audit(signer.name, AUDIT_ACTION, subject,
                                  judge_audits.signed_details(store, subject, details, signer))


def audits(store: Store, config: TetherConfig, spec: JudgeSpecConfig, before: str | None = None) -> list[AuditEntry]:
    """The recorded audits of this judge configuration on this config's world, oldest first (recorded no later
    than `before`, an ISO time, when given), signed or not."""
    want = (judge_digest(spec.name, spec.settings), world_digest(config))
    return [e for e in store.audit_entries(subject=f"judge:{spec.name}") if e.action == AUDIT_ACTION
            and (e.details.get("judge_sha256"), e.details.get("world_sha256")) == want
            and (before is None or e.at <= before)]


def latest_audit(store: Store, config: TetherConfig, spec: JudgeSpecConfig,
                 before: str | None = None) -> AuditEntry | None:
    """The newest of `audits`, signed or not."""
    found = audits(store, config, spec, before)
    return found[-1] if found else None


def audit_problems(store: Store, config: TetherConfig) -> list[str]:
    """Why each judge of the pool may not be used under `judge.require_audit` (empty when it is not set).
    Raises TamperError when an audit of the pool carries a signature that is not genuine."""
    required = config.judge.require_audit
    if not required:
        return []
    trust = reviewer_trust(store)
    return [p for spec in config.judge.slots() for p in _judge_problems(store, config, spec, required, trust)]


def _evidence(store: Store, config: TetherConfig, spec: JudgeSpecConfig, label: str, command: str,
              trust: ReviewerTrust) -> tuple[AuditEntry, judge_audits.Signed] | str:
    """The latest audit signed by a current reviewer, with its signer; else why there is none. Every signed
    audit of this configuration is verified, not only the latest: a forged one anywhere is tampering, said as
    such rather than skipped."""
    checked: list[tuple[AuditEntry, judge_audits.Signed | None]] = []
    for entry in audits(store, config, spec):
        try:
            checked.append((entry, judge_audits.verify(entry, trust.registry, trust.workspace)))
        except TamperError as err:
            raise TamperError(f"judge.require_audit: judge '{label}': {err}. Someone who can write the workspace "
                              "database appended or edited it: it is no evidence, and nothing was started. See who "
                              f"with `tether audit list`, then audit the judge again: `{command}`") from None
    counted = [(e, s) for e, s in checked if s is not None and s.current]
    if counted:
        return counted[-1]
    if not checked:
        return "there is none"
    entry, signed = checked[-1]
    if signed is None:
        return f"its latest audit, audit entry {entry.seq}, is unsigned, and an unsigned audit is no evidence"
    return (f"its latest signed audit, audit entry {entry.seq}, is signed by '{signed.reviewer}', who is no longer a "
            "reviewer of this workspace")


def _judge_problems(store: Store, config: TetherConfig, spec: JudgeSpecConfig,
                    required: Mapping[str, float], trust: ReviewerTrust) -> Iterator[str]:
    label = spec.name + (f" {json.dumps(spec.settings, sort_keys=True)}" if spec.settings else "")
    command = f"tether judge audit --judge {spec.name} --by REVIEWER [--probes FILE]"
    evidence = _evidence(store, config, spec, label, command, trust)
    if isinstance(evidence, str):
        yield (f"judge.require_audit: judge '{label}' has no audit signed by a reviewer on world "
               f"'{config.world.name}' for this configuration and tether version ({evidence}): run `{command}` "
               "(with this config; REVIEWER: a registered reviewer, see `tether reviewer list`) and use it once it "
               "passes")
        return
    entry, signed = evidence
    which = f"its latest signed audit (audit entry {entry.seq}, by {signed.reviewer})"
    measures: Mapping[str, Mapping[str, Any]] = entry.details.get("measures", {})
    for metric, bound in sorted(required.items()):
        m = measures.get(metric)
        value = None if m is None else m.get("value")
        if value is None:
            yield (f"judge.require_audit: judge '{label}': {which} did not measure {metric}: audit it on probes "
                   f"that measure it (`{command}`), or drop {metric} from judge.require_audit")
            continue
        above = m.get("direction", "max") == "max"
        if (value > bound) if above else (value < bound):
            yield (f"judge.require_audit: judge '{label}' fails {metric} = {value:.3f} "
                   f"({'above' if above else 'below'} the required {bound:g}) in {which}: choose or fix another "
                   f"judge, then audit it again (`{command}`)")


def candidate_judge_audits(store: Store, run: Run, round_no: int, trained_at: str) -> list[dict[str, Any]]:
    """For `tether show`: each judge whose verdicts chose the pairs a candidate was trained on (round `round_no`
    of `run`), with the latest audit of that judge configuration on the run's world recorded by the time the
    candidate was (`trained_at`), or None where there was none then: a reviewer sees on what evidence the
    training signal was trusted, and that an audit made afterwards is not that evidence."""
    try:
        config = TetherConfig.model_validate(run.config)
    except ValidationError as err:
        return [{"judge": None, "problem": f"the run's stored configuration no longer reads: {err.errors()[0]['msg']}"}]
    slots = config.judge.slots()
    pairs = store.pairs(run.id, round_no)
    chose = {i for p in pairs for i in (p.chosen_sample_id, p.rejected_sample_id)}
    names = sorted({j.judge for j in store.judgments(run.id, round_no, split="train") if j.sample_id in chose})
    if not names:
        return []
    try:
        trust: ReviewerTrust | str = reviewer_trust(store)
    except TamperError as err:  # shown beside each signature, which then cannot be believed
        trust = str(err)
    return [_candidate_audit(store, config, slots, name, trained_at, trust) for name in names]


def _candidate_audit(store: Store, config: TetherConfig, slots: list[JudgeSpecConfig], name: str,
                     trained_at: str, trust: ReviewerTrust | str) -> dict[str, Any]:
    spec = _slot_named(slots, name)
    if spec is None:
        return {"judge": name, "problem": "not a judge of the run's configured pool"}
    entry = latest_audit(store, config, spec, before=trained_at)
    newer = latest_audit(store, config, spec)
    view: dict[str, Any] = {"judge": name, "settings": dict(spec.settings), "world": config.world.name,
                            "audit": None if entry is None else _audit_view(entry, trust)}
    if newer is not None and (entry is None or newer.seq != entry.seq):
        # made after the candidate: shown, never counted as its evidence
        view["later_audit"] = _audit_view(newer, trust)
    return view


def _slot_named(slots: list[JudgeSpecConfig], name: str) -> JudgeSpecConfig | None:
    """The pool slot a judgment's judge name stands for: `NAME`, or `NAME#SLOT` where the pool holds NAME twice
    (agent/interventions/pool.py)."""
    base, _, slot = name.partition("#")
    if slot.isdigit():
        k = int(slot)
        return slots[k] if k < len(slots) and slots[k].name == base else None
    found = [s for s in slots if s.name == name]
    return found[0] if len(found) == 1 else None


def _audit_view(entry: AuditEntry, trust: ReviewerTrust | str) -> dict[str, Any]:
    details = entry.details
    return {"seq": entry.seq, "at": entry.at, "actor": entry.actor, "verdict": details.get("verdict"),
            "source": details.get("source"), "measures": details.get("measures") or {},
            **signature_view(entry, trust)}


def signature_view(entry: AuditEntry, trust: ReviewerTrust | str) -> dict[str, Any]:
    """Who signed an audit, for a reviewer: `signed_by` names someone only when the signature verifies, so a
    forged entry never shows a reviewer's name; `signature_problem` says why a signature cannot be believed."""
    unsigned = entry.details.get(judge_audits.SIGNATURE_KEY) is None
    if isinstance(trust, str):
        return _signature(None, "unsigned") if unsigned else _signature(None, "unverified", trust)
    try:
        signed = judge_audits.verify(entry, trust.registry, trust.workspace)
    except TamperError as err:
        return _signature(None, "invalid", str(err))
    if signed is None:
        return _signature(None, "unsigned")
    return _signature(signed.reviewer, "verified" if signed.current else "signer removed")


def _signature(signed_by: str | None, state: SignatureState, problem: str | None = None) -> dict[str, Any]:
    return {"signed_by": signed_by, "signature": state, **({"signature_problem": problem} if problem else {})}
