"""What a DPO job reports from TRL's trainer logs: the last step's numbers with the run's mean loss, the
chosen responses' log-likelihood change between the first and the last epoch, and the per-step curves.
Pure functions over `trainer.state.log_history` (no torch), apart so that training.py keeps to the job."""

from __future__ import annotations

import math
from typing import Any


def final_metrics(
    log_history: list[dict[str, Any]], training_loss: float | None
) -> dict[str, float]:
    """Numbers of the last per-step log (``loss``, ``rewards/margins``, ``rewards/accuracies``, ...)
    plus ``train_loss``, the mean loss over the run."""
    metrics: dict[str, float] = {}
    step_logs = [e for e in log_history if "loss" in e and "train_loss" not in e]
    if step_logs:
        for key, value in step_logs[-1].items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[key] = float(value)
    if training_loss is not None:
        metrics["train_loss"] = float(training_loss)
    change = chosen_logp_change(step_logs)
    if change is not None:
        metrics[CHOSEN_LOGP_CHANGE] = change
    return metrics


CHOSEN_LOGP_CHANGE = "chosen_logp_change"


def chosen_logp_change(step_logs: list[dict[str, Any]]) -> float | None:
    """Mean log-likelihood of the chosen responses over the last epoch minus over the first: every
    epoch sees every pair, so the two means compare the same responses. Negative = likelihood
    displacement (Razin et al. 2024, arXiv:2410.08847; Pal et al. 2024, arXiv:2402.13228): DPO widened the
    margin by pushing the chosen answers down too. None with one epoch or without ``logps/chosen``."""
    by_epoch: dict[int, list[float]] = {}
    for entry in step_logs:
        value, epoch = entry.get("logps/chosen"), entry.get("epoch")
        if isinstance(value, int | float) and isinstance(epoch, int | float) and math.isfinite(value):
            # A step logged at epoch e (fractional, after the step) belongs to epoch ceil(e) - 1.
            by_epoch.setdefault(max(0, math.ceil(epoch - 1e-9) - 1), []).append(float(value))
    if len(by_epoch) < 2:
        return None
    first, last = by_epoch[min(by_epoch)], by_epoch[max(by_epoch)]
    return sum(last) / len(last) - sum(first) / len(first)


def step_history(log_history: list[dict[str, Any]]) -> tuple[dict[str, float], ...]:
    """Every per-step log (numbers only, with its step), for the tracker's training curves."""
    return tuple({k: float(v) for k, v in entry.items() if isinstance(v, int | float) and not isinstance(v, bool)}
                 for entry in log_history if "loss" in entry and "train_loss" not in entry)
