"""Experiment tracking through wandb: one wandb run per tether run, offline unless the config says
otherwise, written under the workspace's wandb/ folder.

A tether run lives across processes (`run`, every `resume`, a crash and its restart). Each process
opens the same wandb run (`id=RUN_ID`, `resume="allow"`); offline, wandb writes one
`wandb/offline-run-<time>-<RUN_ID>/run-<RUN_ID>.wandb` file per process, and `wandb sync` uploads
them in order of start time as one run. Two things keep those pieces one history:

- `round` is the x axis of every metric (`define_metric("*", step_metric="round")`), and per-step
  training metrics (`train_step/*`) run against `train_step`, a training-step count over the whole
  run;
- wandb's own `_step` never repeats: every row is logged with an explicit step from a counter kept
  beside the wandb files (`<RUN_ID>.steps.json`), reserved before the row is written, so a process
  that dies after reserving leaves a gap, never a duplicate.

What is logged: per round the monitors, the final training metrics, the held-out scores and the
invariant rates; every TRL training step; the decision log as a `wandb.Table`; approved adapters as
`model` artifacts. `tracking.mode: disabled` imports nothing and writes nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.config import TrackingConfig
from memory import Decision

DECISION_COLUMNS = ["round", "action", "actor", "at", "rationale", "fired", "could_not_check"]


def _scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of `values` (booleans as 0/1); everything else is left out."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[str(key)] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[str(key)] = float(value)
    return out


class _StepCounter:
    """wandb's `_step` for one tether run across processes: the next free step, kept in a file and
    reserved before rows are logged with it (a crash leaves a gap, never a duplicate)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        state: dict[str, Any] = {}
        if path.is_file():
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                state = {}
        self.next = int(state.get("step", 0))
        self.train_step = int(state.get("train_step", 0))

    def reserve(self, rows: int, train_steps: int = 0) -> int:
        first = self.next
        self.next += rows
        self.train_step += train_steps
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": self.next, "train_step": self.train_step}))
        os.replace(tmp, self.path)
        return first


class Tracker:
    """One wandb run per tether run; a resumed tether run (any process) continues the same wandb run."""

    def __init__(self, cfg: TrackingConfig, run_id: str, directory: Path, config: Mapping[str, Any]) -> None:
        self.run_id = run_id
        self.directory = directory
        self._run: Any = None
        self._round = 0
        if cfg.mode == "disabled":
            return
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        # Silence wandb's own terminal output (it is global to the process, so it is set up first).
        wandb.setup(settings=wandb.Settings(silent=True))
        self._steps = _StepCounter(directory / f"{run_id}.steps.json")
        self._run = wandb.init(
            project=cfg.project,
            id=run_id,
            name=run_id,
            resume="allow",
            mode=cfg.mode,
            dir=str(directory),
            config=dict(config),
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, x_disable_machine_info=True,
                                    save_code=False, disable_git=True, x_save_requirements=False),
        )
        self._run.define_metric("round")
        self._run.define_metric("train_step")
        self._run.define_metric("train_step/*", step_metric="train_step")
        self._run.define_metric("*", step_metric="round")

    @property
    def enabled(self) -> bool:
        return self._run is not None

    def _log_rows(self, rows: Sequence[dict[str, Any]], train_steps: int = 0) -> None:
        if self._run is None or not rows:
            return
        first = self._steps.reserve(len(rows), train_steps)
        for offset, row in enumerate(rows):
            self._run.log(row, step=first + offset)

    def log(self, round_no: int, values: Mapping[str, Any]) -> None:
        """One row of per-round numbers (monitors, final training metrics, ...) at `round`."""
        self._round = max(self._round, round_no)
        row = _scalars(values)
        if row:
            self._log_rows([{**row, "round": round_no}])

    def log_training(self, round_no: int, history: Sequence[Mapping[str, Any]]) -> None:
        """TRL's per-step logs of one training job (`trainer.state.log_history`): one row per logged
        optimizer step as `train_step/<name>`, against `train_step`, the job's step counted on from the
        steps of earlier jobs of the run. The job's closing summary (`train_loss`, `train_runtime`, ...)
        is not a step and is left out (log it per round with `log`)."""
        self._round = max(self._round, round_no)
        steps = [e for e in history if "loss" in e and "train_loss" not in e]
        if self._run is None or not steps:
            return
        base = self._steps.train_step
        numbered = [(int(e.get("step", i)), e) for i, e in enumerate(steps, start=1)]
        rows = [{**{f"train_step/{k}": v for k, v in _scalars({k: v for k, v in e.items() if k != "step"}).items()},
                 "train_step": base + step, "round": round_no} for step, e in numbered]
        self._log_rows(rows, train_steps=max(step for step, _ in numbered))

    def log_evaluation(self, round_no: int, candidate: Mapping[str, Any], active: Mapping[str, Any],
                       prefix: str = "heldout") -> None:
        """Held-out results of the candidate and of the checkpoint active before it: oracle and judge
        scores, mean reply length, oracle score per task family and invariant violation rates, under
        `prefix`: the split they are of ("test", "validation"; "heldout" for a run before the split)."""
        row: dict[str, Any] = {}
        for who, result in (("candidate", candidate), ("active", active)):
            for name in ("oracle", "judge", "length_mean"):
                if result.get(name) is not None:
                    row[f"{prefix}/{name}_{who}"] = result[name]
            for family, score in (result.get("oracle_by_family") or {}).items():
                row[f"{prefix}/oracle_{who}/{family}"] = score
            for invariant, rate in (result.get("invariant_rates") or {}).items():
                row[f"{prefix}/invariant_rate_{who}/{invariant}"] = rate
        self.log(round_no, row)

    def log_invariants(self, round_no: int, report: Mapping[str, Any] | None) -> None:
        """Guardrails' invariant report of the round's candidate: per invariant its violation rate and its
        interval (lower, upper), the bound the upper end had to be within, its target and whether it passed;
        `invariants/ok` for the whole."""
        if not report:
            return
        row: dict[str, Any] = {"invariants/ok": bool(report.get("ok"))}
        for result in report.get("results") or []:
            name = result.get("id")
            for field in ("rate", "lower", "upper", "bound", "target", "passed"):
                if result.get(field) is not None:
                    row[f"invariants/{name}/{field}"] = result[field]
        self.log(round_no, row)

    def log_decisions(self, decisions: Sequence[Decision]) -> None:
        """The decision log so far as a `wandb.Table` named `decisions` (each process logs the whole
        log when it finishes, so the newest table is complete): per decision the round, action, actor,
        time, rationale, the checks that fired and those that could not be made."""
        if self._run is None or not decisions:
            return
        import wandb

        from agent.review import decision_text

        rows = []
        for d in decisions:
            checks = decision_text.merged_checks(d.signals.get("checks") or [])
            fired = "; ".join(c.statement() for c in checks if c.fired)
            unchecked = "; ".join(c.statement() for c in checks if c.unchecked and not c.fired)
            rows.append([d.round, d.action, d.actor, d.at, d.rationale, fired, unchecked])
        table = wandb.Table(columns=DECISION_COLUMNS, data=rows)
        self._log_rows([{"decisions": table, "round": max(self._round, max(d.round for d in decisions))}])

    def log_adapter(self, checkpoint_id: str, path: Path, *, round_no: int, sha256: str,
                    metadata: Mapping[str, Any] | None = None) -> None:
        """An approved adapter folder as a `model` artifact `<RUN_ID>-adapter` (one version per approved
        checkpoint, aliased `round-N` and by the checkpoint id). The files are referenced, not copied:
        an approved adapter never changes (its sha256 is verified on every load)."""
        if self._run is None:
            return
        import wandb

        artifact = wandb.Artifact(f"{self.run_id}-adapter", type="model", metadata={
            "checkpoint": checkpoint_id, "round": round_no, "sha256": sha256, **dict(metadata or {})})
        artifact.add_dir(str(path), policy="immutable", skip_cache=True)
        self._run.log_artifact(artifact, aliases=[f"round-{round_no}", checkpoint_id])

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
