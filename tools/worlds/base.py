"""Worlds: where a run's prompts come from, and how its answers can be verified.

A world provides the run's train and held-out prompts (a `TaskSet`: disjoint, checked), an oracle
(programmatic verifiers the evaluation and the monitors use and the agent's judges never see; None
where no verifier covers a prompt, and `has_oracle` False for a world with none at all), and, per
invariant, a probe set (None: the evaluation's held-out slice). Optional capabilities are separate
Protocols: `ModelBuilder` (the world builds its own model into a folder: `model.base: world`, built as
the world's settings say), `AuditProbeSource` (held-out prompts with reference answers for `tether judge
audit`) and `PromptJoiner` (two prompts of a family asked as one request its verifier still checks).

A run evaluates a fixed, family-balanced slice of the held-out prompts and splits it in two with
`validation_split`, deterministically from the world's seed: a validation split, the only held-out
numbers the meta-controller, its rules and interventions may read, and a test split that is only
reported (reviewers, `tether show`, `tether report`, the benchmarks), so a reported score is held out
from the decisions that shaped the run. A world gives held-out prompts; it need not know of the split.

A world that renamed its settings keeps its users' configs readable: a `config_upgrade` it registers
rewrites its old spellings in a raw config document (agent/config.py runs them when it reads a config
file or a stored run's config) and says what it rewrote.

The generic prompt types (`Prompt`, `TaskSet`, `prompt_id`) live here: every room imports them from
this module (or from `tools.worlds`), never from a particular world.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from tether_types import EXIT_USAGE, Prompt, TetherError, prompt_id
from tools.registry import Registry

if TYPE_CHECKING:
    from policies.threads import ThreadsSetting
    from tools.worlds.references import AuditProbes

Split = Literal["train", "heldout"]
# The two halves of the evaluated held-out prompts: validation (the controller reads it) and test (reported only).
HeldoutSplit = Literal["validation", "test"]
BuildState = Literal["absent", "built", "incomplete", "other_spec"]
OVERLAP_SHOWN = 3  # overlapping prompts named in an error


class WorldError(TetherError, ValueError):
    """A world cannot give its prompts as configured: one line, with the fix."""
    exit_code = EXIT_USAGE


def same_text_key(text: str) -> str:
    """What "the same prompt" means for overlap checks: case and spacing do not make a new prompt."""
    return " ".join(text.split()).casefold()


def overlap(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """The texts of `a` that `b` also holds (same_text_key), sorted, each once."""
    keys = {same_text_key(t) for t in b}
    return sorted({t for t in a if same_text_key(t) in keys})


def overlap_message(what: str, texts: Sequence[str]) -> str:
    shown = "; ".join(repr(t) for t in texts[:OVERLAP_SHOWN])
    more = f" (and {len(texts) - OVERLAP_SHOWN} more)" if len(texts) > OVERLAP_SHOWN else ""
    return f"{len(texts)} prompt(s) are both {what}: {shown}{more}"


@dataclass(frozen=True)
class TaskSet:
    """Train and held-out prompts. Disjoint by text (an overlap raises WorldError naming prompts)."""

    train: tuple[Prompt, ...]
    heldout: tuple[Prompt, ...]
    _index: dict[str, Prompt] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        both = overlap([p.text for p in self.train], [p.text for p in self.heldout])
        if both:
            raise WorldError(overlap_message("training and held-out prompts", both)
                             + ": a held-out prompt must never be trained on; remove them from one side")
        object.__setattr__(self, "_index", {p.id: p for p in (*self.train, *self.heldout)})

    @property
    def all(self) -> tuple[Prompt, ...]:
        return (*self.train, *self.heldout)

    @property
    def families(self) -> list[str]:
        return sorted({p.family for p in self.all})

    def by_family(self, family: str, split: Split = "train") -> list[Prompt]:
        pool = self.train if split == "train" else self.heldout
        return [p for p in pool if p.family == family]

    def get(self, prompt_id: str) -> Prompt:
        try:
            return self._index[prompt_id]
        except KeyError:
            raise KeyError(f"unknown prompt id {prompt_id!r}") from None


def validation_split(prompts: Sequence[Prompt], seed: int, fraction: float
                     ) -> tuple[tuple[Prompt, ...], tuple[Prompt, ...]]:
    """(validation, test): disjoint, together `prompts`, each in the order of `prompts`; the same prompts,
    seed and fraction always give the same split. Per family, a seeded shuffle of its prompts (by id) puts
    `fraction` of them in validation by largest remainder over the families, so the split of the whole is
    round(fraction * n) and each family is split alike; a family of two or more prompts has at least one on
    each side, and with two or more prompts neither side is empty. `fraction` is in (0, 1)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction!r}")
    by_family: dict[str, list[Prompt]] = {}
    for p in prompts:
        by_family.setdefault(p.family, []).append(p)
    groups = {f: sorted(group, key=lambda p: p.id) for f, group in sorted(by_family.items())}
    for family, group in groups.items():
        random.Random(f"tether-validation-split/{family}/{seed}").shuffle(group)
    n = len(prompts)
    target = min(max(int(n * fraction + 0.5), 1), n - 1) if n >= 2 else n
    quota = {f: len(g) * fraction for f, g in groups.items()}
    taken = {f: int(q) for f, q in quota.items()}
    # The seats left go to the largest remainders; ties in a seeded order, so no family is always favoured.
    order = sorted(groups, key=lambda f: (-(quota[f] - taken[f]), random.Random(f"{seed}/{f}").random(), f))
    for family in order[:max(0, target - sum(taken.values()))]:
        taken[family] += 1
    for family, group in groups.items():
        if len(group) >= 2:
            taken[family] = min(max(taken[family], 1), len(group) - 1)
    validation = {p.id for f, group in groups.items() for p in group[:taken[f]]}
    return (tuple(p for p in prompts if p.id in validation), tuple(p for p in prompts if p.id not in validation))


@runtime_checkable
class World(Protocol):
    """Prompts, verifiers and invariant probes of a run. Built by `WORLDS.build(name, settings,
    seed=..., root=..., inputs=...)`: `seed` moves the split, `root` (the workspace) anchors relative paths,
    and a world that reads files passes each through `inputs` (guardrails.inputs.Inputs: confined to the
    workspace and the config's data roots, size-limited)."""

    @property
    def has_oracle(self) -> bool:
        """False for a world with no verifier at all: held-out metrics are then the judge's."""
        ...

    def taskset(self) -> TaskSet:
        """Train and held-out prompts, deterministic for the seed; raises WorldError when it cannot."""
        ...

    def oracle(self, prompt: Prompt, response: str) -> float | None:
        """The verifier's score in [0, 1]; None when no verifier covers `prompt`."""
        ...

    def invariant_probes(self, invariant_id: str) -> Sequence[str] | None:
        """The probe prompts this world gives an invariant; None: the evaluation's held-out slice."""
        ...


@runtime_checkable
class InvariantProbeMap(Protocol):
    """A world whose settings give probes to invariants by id (the data world's `probes:` map). A run refuses
    an id that is no invariant of its constitution: a typo would leave the invariant it meant on other probes."""

    def probe_invariants(self) -> Sequence[str]:
        """The invariant ids this world's settings give probes for, as written there."""
        ...


@runtime_checkable
class ModelBuilder(Protocol):
    """A world that builds its own model (`model.base: world`) into a folder of the workspace. What it
    builds (e.g. its pre-training steps) is set by the world's settings, which its factory checks."""

    @property
    def model_folder(self) -> str:
        """The build's folder name under the workspace's models/: one per spec (seed and settings), so a
        build of another spec never overwrites it."""
        ...

    @property
    def model_label(self) -> str:
        """How messages name the model, e.g. "the embedded tiny model"."""
        ...

    @property
    def build_estimate(self) -> str:
        """How long a build takes, for the message before one, e.g. "about 2 minutes"."""
        ...

    def model_state(self, out_dir: Path) -> BuildState: ...

    def missing_model_files(self, out_dir: Path) -> list[str]: ...

    def build_model(self, out_dir: Path, *, progress: bool, rebuild: bool, threads: ThreadsSetting) -> Path:
        """`out_dir` holding a finished build; an incomplete folder raises unless `rebuild`. A build on torch
        runs on the threads `policies.threads.apply_threads(threads)` chooses, as a run does."""
        ...


@runtime_checkable
class AuditProbeSource(Protocol):
    """A world with reference answers in several styles per held-out prompt (`tether judge audit`)."""

    def audit_probes(self, seed: int, n: int) -> AuditProbes: ...


@runtime_checkable
class PromptJoiner(Protocol):
    """A world whose verifiers still check two prompts of one family asked as one request (the
    adversarial curriculum's recombination, tools/prompts/adversarial.py)."""

    def join_meta(self, a: Prompt, b: Prompt) -> Mapping[str, Any] | None:
        """The meta of `a` and `b` (one family) asked together, which its verifier checks; None when the
        family's verifier cannot cover two requests (e.g. one numeric answer per question)."""
        ...


# Rewrites a world's old spellings in a raw config document (a dict, changed in place); one deprecation
# note per rewrite, [] when there was nothing to rewrite. Run again on its own output, it rewrites nothing.
ConfigUpgrade = Callable[[dict[str, Any]], list[str]]
_CONFIG_UPGRADES: list[ConfigUpgrade] = []


def config_upgrade(upgrade: ConfigUpgrade) -> ConfigUpgrade:
    """Decorator: register a world's `ConfigUpgrade` (at import, beside the world it belongs to)."""
    _CONFIG_UPGRADES.append(upgrade)
    return upgrade


def upgrade_config(document: dict[str, Any]) -> list[str]:
    """Rewrite every registered world's old spellings in `document` (in place); the deprecation notes."""
    return [note for upgrade in _CONFIG_UPGRADES for note in upgrade(document)]


WORLDS: Registry[World] = Registry("world")


__all__ = [
    "WORLDS", "AuditProbeSource", "BuildState", "ConfigUpgrade", "HeldoutSplit", "InvariantProbeMap",
    "ModelBuilder", "Prompt", "PromptJoiner", "Split", "TaskSet", "World", "WorldError", "config_upgrade", "overlap",
    "overlap_message", "prompt_id", "same_text_key", "upgrade_config", "validation_split",
]
