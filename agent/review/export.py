"""What leaves tether: a run's preference pairs in TRL's format, and a model card beside each approved
adapter. Reads the store only; writes only under the folder it is given."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from guardrails import signoff
from guardrails.checks import InvariantResult
from guardrails.errors import TamperError
from memory import Checkpoint, Store
from tether_types import EXIT_USAGE, TetherError

CARD_NAME = "README.md"  # not part of the adapter's digest (adapter_config.json + weights), never loaded


class ExportError(TetherError, ValueError):
    """Nothing to export, or the destination cannot be written."""
    exit_code = EXIT_USAGE


def export_pairs(store: Store, run_id: str, out: Path, round_no: int | None = None) -> dict[str, Any]:
    """`pairs.jsonl` ({"prompt", "chosen", "rejected"}, TRL's standard preference format), the same rows
    as a `datasets` folder (`dataset/`, for `load_from_disk`), and `manifest.json` (provenance)."""
    pairs = store.pairs(run_id, round_no)
    if not pairs:
        where = f"round {round_no} of {run_id}" if round_no is not None else run_id
        raise ExportError(f"{where} has no preference pairs")
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    try:
        out.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / "pairs.jsonl").write_text(lines, encoding="utf-8")
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(out / "dataset"))
        manifest = {"run_id": run_id, "round": round_no, "rounds": sorted({p.round for p in pairs}),
                    "pairs": len(rows), "format": "trl preference (prompt, chosen, rejected)",
                    "sha256": hashlib.sha256(lines.encode()).hexdigest(),
                    "meta": [{"round": p.round, "prompt_id": p.prompt_id, "margin": p.margin} for p in pairs]}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    except OSError as err:
        raise ExportError(f"cannot write {out}: {err.strerror or err}") from None
    return manifest


def model_card(store: Store, ck: Checkpoint) -> str:
    """A model card for an approved adapter: base model, rounds, judges, constitution, approvals, held-out."""
    run = store.get_run(ck.run_id) if ck.run_id else None
    base = (run.base_model or {}) if run else {}
    report = ck.invariant_report or {}
    constitution = report.get("constitution") or {}
    evaluation = (ck.metrics or {}).get("eval") or {}
    rounds = [r for r in (store.rounds(ck.run_id) if ck.run_id else []) if r.round <= ck.round]
    judges = sorted({(r.judge or {}).get("label") or (r.judge or {}).get("name") or "?" for r in rounds})
    approval = store.approval_for_subject("checkpoint", ck.id)
    try:
        signed = signoff.verify(store, approval) if approval else None
    except TamperError as err:
        signed, problem = None, str(err)
    else:
        problem = None
    lines = [
        f"# {ck.id}", "",
        f"A LoRA adapter trained by tether (DPO, TRL + PEFT) in round {ck.round} of run {ck.run_id}.", "",
        f"- base model: `{base.get('ref')}` (files sha256 `{base.get('sha256')}`)",
        f"- adapter sha256: `{ck.sha256}` (adapter_config.json + adapter_model.safetensors)",
        f"- parent: `{ck.parent}`",
        f"- rounds: {len(rounds)}; judges: {', '.join(judges)}",
        f"- constitution: v{constitution.get('version')} (sha256 `{constitution.get('sha256')}`)",
        f"- approved by: {', '.join(signed.approved_by) if signed else problem or 'not approved'}",
        "", "## Held-out evaluation", "",
        "| | active before | this adapter |", "|---|---|---|",
    ]
    for metric in ("oracle", "judge"):
        before, after = (evaluation.get("active") or {}).get(metric), (evaluation.get("candidate") or {}).get(metric)
        if before is not None or after is not None:
            lines.append(f"| {metric} | {_num(before)} | {_num(after)} |")
    lines += ["", "## Invariants", ""]
    lines += [f"- {InvariantResult.from_json(r).line()}" for r in report.get("results", []) if isinstance(r, dict)]
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.3f}"


def write_model_card(store: Store, ck: Checkpoint) -> Path:
    path = store.resolve(ck.path) / CARD_NAME
    path.write_text(model_card(store, ck), encoding="utf-8")
    return path
