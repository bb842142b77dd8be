"""A judge is trusted on evidence: each `tether judge audit` is recorded in the hash-chained audit log (action
`judge.audit`, subject `judge:NAME`), pinned to the digest of the judge's configuration (name, settings and
tether's version) and of the world it was audited on. With `judge.require_audit` set, a run refuses every judge
of its pool whose latest audit for that configuration on that world is missing, or misses one of the required
metrics; `validate` reports the same, and both before any model is loaded or any sample drawn.

The audit log is the store of record on purpose: it is append-only and verified by `tether audit verify`, so
an audit cannot be rewritten afterwards without the chain saying so."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

from pydantic import ValidationError

from agent.config import JudgeSpecConfig, TetherConfig
from memory import AuditEntry, Run, Store
from tools.judges.audit import AuditReport

AUDIT_ACTION = "judge.audit"


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
                 report: AuditReport, source: Mapping[str, Any]) -> AuditEntry:
    """Append one audit to the log. `source`: what it ran on (the world's probes, or a labelled file and its
    sha256)."""
    measures = {m.name: {"value": m.value, "n": m.n, "threshold": m.threshold, "direction": m.direction,
                         "flagged": m.flagged} for m in report.measures}
    return store.append_audit(actor, AUDIT_ACTION, f"judge:{judge}", {
        "judge": judge, "settings": dict(settings), "judge_sha256": judge_digest(judge, settings),
        "world": config.world.name, "world_sha256": world_digest(config), "tether": _version(),
        "source": dict(source), "verdict": report.verdict, "measures": measures})


def latest_audit(store: Store, config: TetherConfig, spec: JudgeSpecConfig,
                 before: str | None = None) -> AuditEntry | None:
    """The newest recorded audit of this judge configuration on this config's world (recorded no later than
    `before`, an ISO time, when given)."""
    want = (judge_digest(spec.name, spec.settings), world_digest(config))
    found = [e for e in store.audit_entries(subject=f"judge:{spec.name}") if e.action == AUDIT_ACTION
             and (e.details.get("judge_sha256"), e.details.get("world_sha256")) == want
             and (before is None or e.at <= before)]
    return found[-1] if found else None


def audit_problems(store: Store, config: TetherConfig) -> list[str]:
    """Why each judge of the pool may not be used under `judge.require_audit` (empty when it is not set)."""
    required = config.judge.require_audit
    if not required:
        return []
    return [p for spec in config.judge.slots() for p in _judge_problems(store, config, spec, required)]


def _judge_problems(store: Store, config: TetherConfig, spec: JudgeSpecConfig,
                    required: Mapping[str, float]) -> Iterator[str]:
    label = spec.name + (f" {json.dumps(spec.settings, sort_keys=True)}" if spec.settings else "")
    command = f"tether judge audit --judge {spec.name} [--probes FILE]"
    entry = latest_audit(store, config, spec)
    if entry is None:
        yield (f"judge.require_audit: judge '{label}' has no audit on world '{config.world.name}' for this "
               f"configuration and tether version: run `{command}` (with this config) and use it once it passes")
        return
    measures: Mapping[str, Mapping[str, Any]] = entry.details.get("measures", {})
    for metric, bound in sorted(required.items()):
        m = measures.get(metric)
        value = None if m is None else m.get("value")
        if value is None:
            yield (f"judge.require_audit: judge '{label}': its latest audit (audit entry {entry.seq}) did not "
                   f"measure {metric}: audit it on probes that measure it (`{command}`), or drop {metric} from "
                   "judge.require_audit")
            continue
        above = m.get("direction", "max") == "max"
        if (value > bound) if above else (value < bound):
            yield (f"judge.require_audit: judge '{label}' fails {metric} = {value:.3f} "
                   f"({'above' if above else 'below'} the required {bound:g}) in its latest audit (audit entry "
                   f"{entry.seq}): choose or fix another judge, then audit it again (`{command}`)")


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
    return [_candidate_audit(store, config, slots, name, trained_at) for name in names]


def _candidate_audit(store: Store, config: TetherConfig, slots: list[JudgeSpecConfig], name: str,
                     trained_at: str) -> dict[str, Any]:
    spec = _slot_named(slots, name)
    if spec is None:
        return {"judge": name, "problem": "not a judge of the run's configured pool"}
    entry = latest_audit(store, config, spec, before=trained_at)
    newer = latest_audit(store, config, spec)
    view: dict[str, Any] = {"judge": name, "settings": dict(spec.settings), "world": config.world.name,
                            "audit": None if entry is None else _audit_view(entry)}
    if newer is not None and (entry is None or newer.seq != entry.seq):
        view["later_audit"] = _audit_view(newer)  # made after the candidate: shown, never counted as its evidence
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


def _audit_view(entry: AuditEntry) -> dict[str, Any]:
    details = entry.details
    return {"seq": entry.seq, "at": entry.at, "actor": entry.actor, "verdict": details.get("verdict"),
            "source": details.get("source"), "measures": details.get("measures") or {}}
