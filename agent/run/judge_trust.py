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

from agent.config import JudgeSpecConfig, TetherConfig
from memory import AuditEntry, Store
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


def latest_audit(store: Store, config: TetherConfig, spec: JudgeSpecConfig) -> AuditEntry | None:
    """The newest recorded audit of this judge configuration on this config's world."""
    want = (judge_digest(spec.name, spec.settings), world_digest(config))
    found = [e for e in store.audit_entries(subject=f"judge:{spec.name}") if e.action == AUDIT_ACTION
             and (e.details.get("judge_sha256"), e.details.get("world_sha256")) == want]
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
