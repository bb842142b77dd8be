"""Experiment tracking through wandb (offline unless the config says otherwise)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config import TrackingConfig


class Tracker:
    """One wandb run per tether run; a resumed tether run resumes the same wandb run."""

    def __init__(self, cfg: TrackingConfig, run_id: str, directory: Path, config: Mapping[str, Any]) -> None:
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        # wandb must never reach for the network unless the user asked for online mode.
        os.environ.setdefault("WANDB_SILENT", "true")
        self._run = wandb.init(
            project=cfg.project,
            id=run_id,
            resume="allow",
            mode=cfg.mode,
            dir=str(directory),
            config=dict(config),
            settings=wandb.Settings(console="off", x_disable_stats=True),
        )

    def log(self, round_no: int, values: Mapping[str, float]) -> None:
        self._run.log({**values, "round": round_no})

    def finish(self) -> None:
        self._run.finish()
