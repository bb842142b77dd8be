"""Validation apart from test: which held-out numbers the controller may read, and which are only reported.

A run evaluates every candidate (and the checkpoint it would replace) on a fixed slice of the world's held-out
prompts (`prompts.heldout`, balanced across families), split once by the seed into two sets
(tools/worlds/base.py `validation_split`, `evaluation.validation_fraction` of each family in validation):

- validation: the only held-out scores and replies the meta-controller reads: the held-out curve its plateau,
  regression and stop rules read, the held-out values its monitors pass on, the adversarial curriculum's
  failure mining, the LLM advisor (and a learned policy). Recorded as the checkpoint's `metrics["validation"]`
  and as samples of split "validation".
- test: only reported: the gate's summary, `tether show`, `tether report`, `tether checkpoints`, the model
  card, tracking and the benchmarks. Recorded as `metrics["eval"]` (what every report has always read) and
  as samples of split "test".

Each is evaluated and cached on its own (its own `evaluations` row, keyed by its prompts), and each result
says its split (`"split": "validation" | "test"`), so a display can say which one a number is.

Runs evaluated before the split (a checkpoint's metrics hold "eval" and no "validation" beside it; their samples
are of split "heldout") keep their one held-out set for life: resumed, such a run evaluates as it always did, and its
controller reads that set, as it always did (the number it reports was then not held out from its
decisions). A stored run that had evaluated nothing yet is split from its first evaluation on (its stored
config, read through today's model, has the default `evaluation.validation_fraction`).

The invariant checks are a guardrail, not a score: the probes of an invariant without a set of its own are the
whole slice (both splits), so their counts do not change; the controller reads only whether a candidate
passed."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from memory import Checkpoint
from tools.worlds import HeldoutSplit, Prompt, TaskSet, validation_split

# Where a checkpoint's metrics keep each evaluation: the reported one under "eval", the controller's under
# "validation"; the result of each side ("candidate", "active") names its split.
REPORTED = "eval"
VALIDATION = "validation"
# A held-out evaluation's split: the two of today, or the one set of a run evaluated before them.
EvaluatedSplit = HeldoutSplit | Literal["heldout"]
HELDOUT_SPLITS: tuple[EvaluatedSplit, ...] = ("validation", "test", "heldout")
# The held-out samples the controller and the interventions may read, and those that are reported (a run has
# "heldout" samples, from before the split, or the other two).
CONTROLLER_SPLITS: tuple[EvaluatedSplit, ...] = ("validation", "heldout")
REPORTED_SPLITS: tuple[EvaluatedSplit, ...] = ("test", "heldout")


def heldout_slice(taskset: TaskSet, n: int) -> list[Prompt]:
    """A fixed slice of the held-out split, balanced across families (round-robin): what a run evaluates (both
    splits together), and the probes of an invariant without a set of its own."""
    by_family: dict[str, list[Prompt]] = {}
    for p in taskset.heldout:
        by_family.setdefault(p.family, []).append(p)
    interleaved = [p for group in itertools.zip_longest(*by_family.values()) for p in group if p is not None]
    return interleaved[:n]


@dataclass(frozen=True)
class EvaluationSets:
    """The evaluated held-out slice as the controller's validation set and the reported test set."""

    validation: tuple[Prompt, ...]
    test: tuple[Prompt, ...]

    def of(self, split: HeldoutSplit) -> tuple[Prompt, ...]:
        return self.validation if split == "validation" else self.test


def evaluation_sets(taskset: TaskSet, n: int, seed: int, fraction: float) -> EvaluationSets:
    """The slice of `n` held-out prompts split by `seed`: deterministic, disjoint, together the slice."""
    validation, test = validation_split(heldout_slice(taskset, n), seed, fraction)
    return EvaluationSets(validation, test)


def _unsplit(metrics: Mapping[str, Any] | None) -> bool:
    """A checkpoint evaluated before the split: a reported evaluation and no validation one beside it (the
    evaluate node writes both or neither). By the keys alone: the test split's numbers are never looked at."""
    return REPORTED in (metrics or {}) and VALIDATION not in (metrics or {})


def evaluated_before_split(checkpoints: Sequence[Checkpoint]) -> bool:
    """Whether a run recorded a held-out evaluation before the split existed (one set, no "split" in it): such a
    run keeps evaluating that one set, so its curve compares like with like."""
    return any(_unsplit(ck.metrics) for ck in checkpoints)


def controller_evaluation(metrics: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The held-out evaluation of a checkpoint that the controller may read: its validation split, or for a
    checkpoint evaluated before the split its one held-out set; None when it has neither. Never the test split."""
    if metrics is None:
        return None
    if VALIDATION in metrics:
        found: Mapping[str, Any] = metrics[VALIDATION]
        return found
    if _unsplit(metrics):
        legacy: Mapping[str, Any] = metrics[REPORTED]
        return legacy
    return None


def reported_split(checkpoints: Sequence[Checkpoint]) -> EvaluatedSplit:
    """The split a run's reports show: "test", or "heldout" for a run evaluated before the split."""
    return "heldout" if evaluated_before_split(checkpoints) else "test"


def split_of(result: Mapping[str, Any]) -> EvaluatedSplit:
    """The split an evaluation result is of ("heldout": evaluated before the split existed)."""
    split = result.get("split")
    return split if split in ("validation", "test") else "heldout"


def split_label(result: Mapping[str, Any]) -> str:
    """How a display names the held-out set a result is of: "held-out test split", "held-out validation split",
    or "held-out" for a run evaluated before the split."""
    split = split_of(result)
    return "held-out" if split == "heldout" else f"held-out {split} split"
