"""Saving a trained adapter: only the adapter (never the base, never TRL's frozen "ref" copy), as
safetensors, with a canonical config, fsynced and renamed into place so that a directory under the
final name is always a complete adapter (a crash leaves a hidden staging folder, never half a one)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from policies.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME


def _canonicalise_config(path: Path) -> None:
    """PEFT writes target_modules from a set, in hash-seed order; sort it (and the keys) so the
    same training job yields the same adapter digest in any process."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(folder)


def save_adapter(trainer: Any, output_dir: Path) -> None:
    """Save only the trained adapter, atomically (staging dir + rename), on the main process."""
    accelerator = trainer.accelerator
    state_dict = None
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(
        trainer, "is_deepspeed_enabled", False
    ):
        state_dict = accelerator.get_state_dict(trainer.model)  # collective: every rank calls it
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(trainer.model)
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            # Only the trained adapter: never TRL's frozen "ref" copy of the reference.
            kwargs: dict[str, Any] = {"safe_serialization": True, "save_embedding_layers": False,
                                      "selected_adapters": ["default"]}
            if state_dict is not None:
                kwargs["state_dict"] = state_dict
            model.save_pretrained(str(staging), **kwargs)
            for extra in staging.iterdir():  # e.g. the README.md model card
                if extra.name not in (ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME):
                    shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
            if not (staging / ADAPTER_WEIGHTS_NAME).is_file():
                raise RuntimeError(f"PEFT did not write {ADAPTER_WEIGHTS_NAME} into {staging}")
            _canonicalise_config(staging / ADAPTER_CONFIG_NAME)
            _fsync_tree(staging)  # the bytes are on disk before the name says the adapter exists
            if output_dir.exists():
                output_dir.rmdir()  # empty, checked before training
            os.replace(staging, output_dir)
            _fsync_dir(output_dir.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
