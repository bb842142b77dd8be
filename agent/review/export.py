"""What leaves tether: a run's preference pairs in TRL's format, and a model card beside each approved
adapter (agent/review/card.py; `tether export adapter` is agent/review/ship.py). Reads the store only;
writes only under the folder it is given."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agent.review.card import CardInputs, model_card
from guardrails import signoff
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


def write_model_card(store: Store, ck: Checkpoint) -> Path:
    """The card beside an activated adapter, with the signatures that verify now (or why none do)."""
    approval = store.approval_for_subject("checkpoint", ck.id)
    try:
        signed, problem = (signoff.verify(store, approval) if approval else None), None
    except TamperError as err:
        signed, problem = None, str(err)
    path = store.resolve(ck.path) / CARD_NAME
    path.write_text(model_card(store, CardInputs(ck, signed, problem)), encoding="utf-8")
    return path
