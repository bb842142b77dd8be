"""What guardrails record about the models of a run: the pinned base, each trained candidate, and the
invariant verdict, computed here from replies guardrails ask for themselves, on probe sets pinned when
the run started.

No other room sets a checkpoint's status, path, sha256 or invariant verdict (memory.guarded). The agent
hands over a trained adapter's folder; guardrails hash it, refuse non-finite weights or losses, and run
the invariant probes through a `Respond` callable that returns the model's greedy replies (and, for an
invariant detected by a judge, a `Classify` callable that returns the judge's scores).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrails.checks import Classify, History, InvariantReport, Measured, evaluate_sets, report_probes_sha256
from guardrails.constitution import Constitution
from guardrails.errors import TamperError, TransientError
from guardrails.probes import ProbeSet, changed_pins, pins
from guardrails.signoff import SYSTEM_ACTOR
from memory import Checkpoint, ConstitutionVersion, Store
from memory.guarded import GuardedWrites
from policies.adapters import AdapterIntegrityError, adapter_sha256
from policies.artifacts import ModelIntegrityError, ModelManifest, model_manifest

# (checkpoint id, prompts) -> one greedy reply per prompt, from that checkpoint's policy.
Respond = Callable[[str, Sequence[str]], list[str]]


def pin_base(folder: Path) -> ModelManifest:
    """The digest of a base model's files, computed before any transaction opens (it reads every byte)."""
    try:
        return model_manifest(folder)
    except (ModelIntegrityError, OSError) as err:
        raise TransientError(f"cannot read the base model at {folder}: {err}") from None  # nothing pinned yet


def register_base(store: Store, run_id: str, ref: str, folder: Path, manifest: ModelManifest) -> Checkpoint:
    """Pin the base model of a new run and make it the run's active checkpoint."""
    base_id = f"{run_id}-base"
    # Inside the workspace (the tiny model): relative, so the workspace can move. Outside: the ref as given
    # (an absolute folder, or a hub id whose cache snapshot `folder` is).
    inside = store.relative(folder)
    in_workspace = not Path(inside).is_absolute()
    path = inside if in_workspace else ref
    writes = GuardedWrites(store)
    with store.transaction():
        ck = writes.add_checkpoint(Checkpoint(id=base_id, run_id=run_id, round=0, status="base", path=path))
        writes.set_base_model(run_id, {**manifest.to_json(path), "in_workspace": in_workspace})
        writes.set_active(run_id, base_id)
        store.append_audit(SYSTEM_ACTOR, "checkpoint.base", base_id,
                           {"run": run_id, "ref": path, "sha256": manifest.sha256, "files": len(manifest.files)})
    return ck


def _nonfinite_metrics(metrics: Mapping[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in metrics.items()
            if isinstance(v, float | int) and not isinstance(v, bool) and not math.isfinite(v)]


def _nonfinite_weights(folder: Path, sha256: str) -> list[str]:
    from policies.adapters import load_verified_adapter_weights  # torch: only in the run process

    tensors = load_verified_adapter_weights(folder, sha256)
    return [name for name, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())]


def register_candidate(store: Store, run_id: str, round_no: int, candidate_id: str, folder: Path,
                       parent: str | None, train_metrics: Mapping[str, Any]) -> tuple[Checkpoint, str | None]:
    """Record a trained adapter as a candidate, hashed here. A non-finite training loss or adapter
    weight rejects it at once (with the reason), so it never reaches evaluation or the gate."""
    try:
        sha = adapter_sha256(folder)
    except (AdapterIntegrityError, OSError) as err:
        raise TransientError(f"the trained adapter at {folder} could not be read: {err}") from None
    problems = _nonfinite_metrics(train_metrics)
    bad = _nonfinite_weights(folder, sha)
    if bad:
        problems.append(f"{len(bad)} adapter tensor(s) hold inf/nan (e.g. {bad[0]})")
    reason = None if not problems else "non-finite training: " + "; ".join(problems)
    writes = GuardedWrites(store)
    with store.transaction():
        ck = writes.add_checkpoint(Checkpoint(
            id=candidate_id, run_id=run_id, round=round_no, status="rejected" if reason else "candidate",
            path=store.relative(folder), sha256=sha, parent=parent, metrics={"train": dict(train_metrics)},
            invariant_ok=False if reason else None,
            invariant_report={"ok": False, "error": reason} if reason else None))
        store.append_audit(SYSTEM_ACTOR, "checkpoint.train", candidate_id,
                           {"run": run_id, "sha256": sha, "parent": parent, "rejected": reason})
    if reason:
        shutil.rmtree(folder, ignore_errors=True)  # never loadable, never approvable
    return ck, reason


def approved_history(store: Store, run_id: str, probes_sha256: str) -> dict[str, dict[str, Measured]]:
    """Each approved checkpoint's (and the base's) invariant rates and probe counts on these probes: a
    ratchet's history (checks.py recomputes each upper bound at the invariant's level)."""
    out: dict[str, dict[str, Measured]] = {}
    for ck in store.checkpoints(run_id):
        report = ck.invariant_report or {}
        if ck.status in ("approved", "base") and report.get("probes_sha256") == probes_sha256:
            out[ck.id] = {r["id"]: Measured(float(r["rate"]), int(r["n"])) for r in report.get("results", [])
                          if isinstance(r, dict) and isinstance(r.get("rate"), float | int)
                          and isinstance(r.get("n"), int)}
    return out


PROBES_PINNED = "invariants.probes"  # the audit action that pins a run's probe sets when it starts


def pin_probes(store: Store, run_id: str, probe_sets: Mapping[str, ProbeSet]) -> None:
    """Record each invariant's probe set (source, size, digest) for a starting run, in its start transaction."""
    store.append_audit(SYSTEM_ACTOR, PROBES_PINNED, run_id, {"run": run_id, "probes": pins(dict(probe_sets))})


def verify_probe_pins(store: Store, run_id: str, probe_sets: Mapping[str, ProbeSet]) -> None:
    """Refuse probe sets that differ from the ones pinned when the run started (an edited probe file).
    A run started before probe sets were pinned had none but the held-out slice: only that passes."""
    entry = next((e for e in reversed(store.audit_entries(subject=run_id)) if e.action == PROBES_PINNED), None)
    if entry is None:
        unpinned = sorted(inv for inv, s in probe_sets.items() if s.source != "heldout")
        if unpinned:
            raise TamperError(f"run {run_id} pinned no probe sets when it started, but invariant(s) "
                              f"{', '.join(unpinned)} now have their own; start a new run")
        return
    changed = changed_pins(dict(entry.details.get("probes") or {}), dict(probe_sets))
    if changed:
        raise TamperError("the invariant probes changed since the run started: " + "; ".join(changed)
                          + ". Probe sets are pinned for the life of a run: restore them, or start a new run")


def _report(constitution: Constitution, version: ConstitutionVersion, probe_sets: Mapping[str, ProbeSet],
            prompts: Sequence[str], replies: list[str], history: History,
            classify: Classify | None) -> dict[str, Any]:
    if len(replies) != len(prompts):
        raise TamperError(f"{len(replies)} replies for {len(prompts)} probes")
    report = evaluate_sets(constitution, probe_sets, dict(zip(prompts, replies, strict=True)), history, classify)
    return {**report.to_json(), "constitution": {"version": version.version, "sha256": version.sha256}}


def check_invariants(store: Store, constitution: Constitution, version: ConstitutionVersion, candidate_id: str,
                     probe_sets: Mapping[str, ProbeSet], respond: Respond, classify: Classify | None = None
                     ) -> dict[str, Any]:
    """Run each invariant's probes on the candidate (and, once, on the base), record the verdict, and
    reject a failing candidate. Probe sets that differ from the run's pins raise TamperError (nothing is
    recorded); any other error while checking fails the candidate (fail closed)."""
    ck = store._require_checkpoint(candidate_id)
    if ck.run_id is None:
        raise TamperError(f"checkpoint {candidate_id} belongs to no run")
    verify_probe_pins(store, ck.run_id, probe_sets)
    prompts = list(dict.fromkeys(p for s in probe_sets.values() for p in s.prompts))
    probes_sha = report_probes_sha256(probe_sets)
    writes = GuardedWrites(store)
    try:
        base = store.get_checkpoint(f"{ck.run_id}-base")
        if base is not None and (base.invariant_report or {}).get("probes_sha256") != probes_sha:
            base_report = _report(constitution, version, probe_sets, prompts, respond(base.id, prompts), {}, classify)
            writes.set_invariant_verdict(base.id, bool(base_report["ok"]), base_report)
        history = approved_history(store, ck.run_id, probes_sha)
        report = _report(constitution, version, probe_sets, prompts, respond(ck.id, prompts), history, classify)
    except Exception as err:
        report = {**InvariantReport.could_not_run(f"{type(err).__name__}: {err}", probes_sha).to_json(),
                  "constitution": {"version": version.version, "sha256": version.sha256}}
    with store.transaction():
        writes.set_invariant_verdict(ck.id, bool(report["ok"]), report)
        store.append_audit(SYSTEM_ACTOR, "invariants.check", ck.id, report)
    return report
