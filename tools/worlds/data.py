"""The `data` world: users' own prompt sets from local files (nothing is downloaded).

    world:
      name: data
      settings:
        train: data/prompts.jsonl        # JSONL, CSV, Parquet, or a Dataset.save_to_disk folder
        heldout: null                    # its own file; null = hold out heldout_fraction of train, by seed
        heldout_fraction: 0.25
        prompt_field: prompt
        family_field: family             # optional; without it every prompt is of family "data"
        topic_field: null                # optional, kept in each prompt's meta
        reference_field: reference       # optional; the answer a verifier checks against
        verifiers: {math: numeric_answer}  # family -> verifier (tools/verifiers); none: no oracle
        probes: {}                       # invariant id -> JSONL of {"prompt": ...} (an invariant's own
                                         #   `probes:` in the constitution takes precedence)

Relative paths are relative to the config file's folder (`load_config` makes them absolute; a path found only
under the workspace, the rule before, still reads, with a note from `validate`); every file must lie (links
followed) inside the workspace, the config's folder or a data root the config lists (`inputs.roots`), never in a
reviewer key folder, and within
`inputs.max_line_bytes` / `inputs.max_file_bytes` (guardrails/inputs.py). Prompts with the same text
(case and spacing aside) are one prompt; the split keeps each on one side, and a held-out file sharing
a prompt with train is an error naming it. Without verifiers the world has no oracle: held-out metrics
are the judge's (`controller.heldout_metric: judge`, which `tether validate` asks for).

The held-out prompts (the file, or the seeded fraction) are what a run evaluates: the slice it evaluates
(`prompts.heldout`) is split again by the seed, alike in every family, into validation, which the controller
reads, and test, which is only reported (tools/worlds/base.py `validation_split`,
`evaluation.validation_fraction`). An invariant without probes of its own is checked on the whole slice.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrails.inputs import Inputs
from tether_types import Prompt, prompt_id
from tools.registry import Built, PluginSettingsError, UnknownPluginError
from tools.verifiers import VERIFIERS, Verifier
from tools.worlds.base import WORLDS, TaskSet, WorldError, same_text_key
from tools.worlds.files import Row, read_rows

DEFAULT_FAMILY = "data"
SHOWN = 3  # rows named in an error


class DataSettings(BaseModel):
    """The data world's settings, checked strictly (a typo or a wrong type is an error)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    train: str = Field(min_length=1)
    heldout: str | None = Field(None, min_length=1)
    heldout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    prompt_field: str = Field("prompt", min_length=1)
    family_field: str | None = None
    topic_field: str | None = None
    reference_field: str | None = None
    verifiers: dict[str, str] = Field(default_factory=dict)
    probes: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Row:
    text: str
    family: str
    meta: dict[str, Any]
    where: str  # "prompts.jsonl row 12", for errors


class DataWorld:
    """A World over local prompt files, confined to `inputs`. Reads them on the first `taskset()` call."""

    def __init__(self, settings: DataSettings, seed: int, inputs: Inputs) -> None:
        self.settings, self.seed, self.inputs = settings, seed, inputs
        if settings.verifiers and settings.reference_field is None:
            raise WorldError("world.settings.verifiers needs reference_field: the column holding each prompt's "
                             "reference answer")
        self.verifiers: dict[str, Built[Verifier]] = {}
        for family, name in sorted(settings.verifiers.items()):
            try:
                self.verifiers[family] = VERIFIERS.build(name)
            except (UnknownPluginError, PluginSettingsError) as err:
                raise WorldError(f"world.settings.verifiers.{family}: {err}") from None

    @property
    def has_oracle(self) -> bool:
        return bool(self.verifiers)

    def taskset(self) -> TaskSet:
        return self._taskset

    def oracle(self, prompt: Prompt, response: str) -> float | None:
        verifier = self.verifiers.get(prompt.family)
        reference = prompt.meta.get("reference")
        if verifier is None or reference is None:
            return None
        return min(1.0, max(0.0, float(verifier.plugin.verify(response, str(reference)))))

    def probe_invariants(self) -> Sequence[str]:
        return sorted(self.settings.probes)

    def invariant_probes(self, invariant_id: str) -> Sequence[str] | None:
        path = self.settings.probes.get(invariant_id)
        if path is None:
            return None
        rows = self._rows(path, f"world.settings.probes.{invariant_id}", prompt_field="prompt")
        return [r.text for r in rows]

    @cached_property
    def _taskset(self) -> TaskSet:
        s = self.settings
        train_rows = _unique(self._rows(s.train, "world.settings.train"))
        if s.heldout is not None:
            held_rows = _unique(self._rows(s.heldout, "world.settings.heldout"))
            train, heldout = _prompts(train_rows, "train"), _prompts(held_rows, "heldout")
        else:
            train, heldout = _split(train_rows, self.seed, s.heldout_fraction)
        if not train:
            raise WorldError(f"world.settings.train: {s.train} gives no training prompts")
        if not heldout:
            raise WorldError("no held-out prompts: give world.settings.heldout, or more than one prompt per family")
        taskset = TaskSet(tuple(train), tuple(heldout))  # raises WorldError on an overlap, naming prompts
        self._check_verifiers(taskset)
        return taskset

    def _rows(self, path: str, label: str, prompt_field: str | None = None) -> list[_Row]:
        """The prompts of one file; `prompt_field` given: a probe file (its prompts only, no meta)."""
        s = self.settings
        file, rows = read_rows(path, label, self.inputs)
        if not rows:
            raise WorldError(f"{label}: {file} holds no rows")
        keep_meta = prompt_field is None
        field = prompt_field or s.prompt_field
        wanted = [field, *((s.family_field, s.topic_field, s.reference_field) if keep_meta else ())]
        missing = [c for c in wanted if c is not None and c not in rows[0]]
        if missing:
            raise WorldError(f"{label}: {file} has no column(s) {', '.join(missing)} (it has: {', '.join(rows[0])})")
        return [self._row(raw, i, file, field, label, keep_meta) for i, raw in enumerate(rows, start=1)]

    def _row(self, raw: Row, i: int, file: Path, field: str, label: str, keep_meta: bool) -> _Row:
        s = self.settings
        where = f"{file.name} row {i}"
        text = raw.get(field)
        if not isinstance(text, str) or not text.strip():
            raise WorldError(f"{label}: {where} has no text in {field!r} (got {text!r})")
        family = DEFAULT_FAMILY
        meta: dict[str, Any] = {}
        if keep_meta:
            if s.family_field is not None:
                family = _text(raw.get(s.family_field))
                if not family:
                    raise WorldError(f"{label}: {where} has no family in {s.family_field!r}")
            if s.topic_field is not None and _text(raw.get(s.topic_field)):
                meta["topic"] = _text(raw.get(s.topic_field))
            if s.reference_field is not None and _text(raw.get(s.reference_field)):
                meta["reference"] = _text(raw.get(s.reference_field))
        return _Row(text.strip(), family, meta, where)

    def _check_verifiers(self, taskset: TaskSet) -> None:
        families = taskset.families
        for family, built in self.verifiers.items():
            if family not in families:
                raise WorldError(f"world.settings.verifiers names family {family!r}, which no prompt has "
                                 f"(families: {', '.join(families)})")
            problems = [f"{p.id} ({p.text[:40]!r}): {why}" for p in taskset.all if p.family == family
                        for why in [self._reference_problem(built.plugin, p)] if why]
            if problems:
                raise WorldError(f"world.settings.verifiers.{family} ({built.name}) cannot verify "
                                 f"{len(problems)} prompt(s): " + "; ".join(problems[:SHOWN]))

    def _reference_problem(self, verifier: Verifier, prompt: Prompt) -> str | None:
        if "reference" not in prompt.meta:
            return f"no reference in {self.settings.reference_field!r}"
        return verifier.reference_problem(str(prompt.meta["reference"]))


def _text(value: Any) -> str:
    """A field as text: strings stripped, numbers written plainly, anything else (None, lists) empty."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float | str):
        return str(value).strip()
    return ""


def _unique(rows: list[_Row]) -> list[_Row]:
    """One row per prompt text (case and spacing aside): the first one wins."""
    seen: dict[str, _Row] = {}
    for row in rows:
        seen.setdefault(same_text_key(row.text), row)
    return list(seen.values())


def _prompt(row: _Row, split: str) -> Prompt:
    return Prompt(prompt_id(row.family, row.text), row.text, row.family, split, row.meta)


def _prompts(rows: list[_Row], split: str) -> list[Prompt]:
    return sorted((_prompt(r, split) for r in rows), key=lambda p: p.id)


def _split(rows: list[_Row], seed: int, fraction: float) -> tuple[list[Prompt], list[Prompt]]:
    """Per family, a seeded shuffle of its prompts holds out ~fraction (at least one, never all, when a
    family has two or more): the same rows and seed always give the same split."""
    by_family: dict[str, list[_Row]] = {}
    for row in rows:
        by_family.setdefault(row.family, []).append(row)
    train: list[Prompt] = []
    heldout: list[Prompt] = []
    for family in sorted(by_family):
        group = sorted(by_family[family], key=lambda r: prompt_id(r.family, r.text))
        random.Random(f"tether-data-split/{family}/{seed}").shuffle(group)
        n_held = int(len(group) * fraction + 0.5)
        if len(group) >= 2:
            n_held = min(max(n_held, 1), len(group) - 1)
        heldout += [_prompt(r, "heldout") for r in group[:n_held]]
        train += [_prompt(r, "train") for r in group[n_held:]]
    return sorted(train, key=lambda p: p.id), sorted(heldout, key=lambda p: p.id)


@WORLDS.register("data", paths=("train", "heldout", "probes"))
def data(train: str, heldout: str | None = None, heldout_fraction: float = 0.25, prompt_field: str = "prompt",
         family_field: str | None = None, topic_field: str | None = None, reference_field: str | None = None,
         verifiers: Mapping[str, str] | None = None, probes: Mapping[str, str] | None = None, *,
         seed: int = 0, root: Path | None = None, inputs: Inputs | None = None) -> DataWorld:
    """Your own prompts from local JSONL, CSV, Parquet or a save_to_disk folder; optional verifiers per family."""
    # Without `inputs` (a world built outside a run) its files are confined to `root` alone, default limits.
    confined = inputs if inputs is not None else Inputs(workspace=Path(root) if root is not None else Path.cwd())
    given = {"train": train, "heldout": heldout, "heldout_fraction": heldout_fraction,
             "prompt_field": prompt_field, "family_field": family_field, "topic_field": topic_field,
             "reference_field": reference_field, "verifiers": {} if verifiers is None else verifiers,
             "probes": {} if probes is None else probes}
    try:
        settings = DataSettings.model_validate(given)
    except ValidationError as err:
        raise WorldError("world.settings: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())) from None
    return DataWorld(settings, seed, confined)
