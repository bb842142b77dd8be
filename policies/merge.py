"""Merging a verified LoRA adapter into its base model's weights, to serve without PEFT.

The adapter goes through the same verified loader as every other load (`attach_adapter` hashes the
exact bytes it deserialises); PEFT's `merge_and_unload` folds ``B @ A * scale`` into each target
layer and returns the plain base architecture, which `save_pretrained` writes as safetensors next to
the base's own tokenizer. Knows nothing of approvals: the caller has verified what it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from policies.adapters import AdapterIntegrityError
from policies.loading import attach_adapter, load_base_model, progress_bars
from tether_types import AdapterRef

Say = Callable[[str], None]


def save_merged(base_folder: Path, adapter: AdapterRef, out: Path, say: Say) -> str:
    """Write the base model with `adapter` merged into its weights, and the base's tokenizer, into `out`
    (an existing, empty folder). Returns the dtype the weights were saved in (the base's own)."""
    from transformers import AutoTokenizer

    # CPU on purpose: a merge is a few additions per layer, and on CPU it never competes with a run for
    # accelerator memory; it needs host memory for one copy of the base at its own dtype.
    say(f"loading the base model from {base_folder}")
    model = load_base_model(str(base_folder), "cpu", "auto")
    say(f"applying adapter {adapter.id} (sha256 {adapter.sha256[:12]}…, verified as it is read)")
    peft_model = attach_adapter(model, adapter)
    peft_model.set_adapter(adapter.id)
    say("merging the adapter into the base weights (PEFT merge_and_unload)")
    try:
        # safe_merge: the merged weights are checked for inf/nan before they replace the base's.
        merged = peft_model.merge_and_unload(safe_merge=True, adapter_names=[adapter.id])
    except ValueError as err:
        raise AdapterIntegrityError(f"merging adapter {adapter.id} failed its check: {err}") from None
    say(f"saving the merged model to {out}")
    with progress_bars(False):
        merged.save_pretrained(str(out), safe_serialization=True)
        # The base's tokenizer as it was saved: `load_tokenizer` adds generation-time padding settings that
        # are tether's choice for batching, not part of the model.
        AutoTokenizer.from_pretrained(str(base_folder), trust_remote_code=False).save_pretrained(str(out))
    return str(next(merged.parameters()).dtype).removeprefix("torch.")
