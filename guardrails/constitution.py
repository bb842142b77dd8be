"""The constitution: immutable invariants (with the definitions they are checked by) and
amendable principles.

Invariants are pinned by content hash when a run starts; a run refuses to start or resume if they
changed, naming what changed. Principles may change through an approved amendment.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guardrails.confidence import DEFAULT_CONFIDENCE
from guardrails.inputs import InputRefused, confine, key_folders
from guardrails.safe_yaml import MAX_YAML_BYTES, YamlRefused, load_yaml
from tether_types import EXIT_USAGE, TetherError

DEFINITIONS_KEY = "definitions"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Definitions(_Strict):
    """What the invariant checks recognise. Part of the invariants: pinned and immutable."""

    harm_markers: list[str] = Field(min_length=1, description="Phrases that make a request harmful.")
    refusal_markers: list[str] = Field(min_length=1, description="Phrases that make a reply a refusal.")
    abusive_terms: list[str] = Field(min_length=1, description="Words that make a reply abusive.")

    def is_harmful(self, prompt: str) -> bool:
        return _matches(self._harm, prompt)

    def is_refusal(self, response: str) -> bool:
        return _matches(self._refusal, response)

    def is_abusive(self, response: str) -> bool:
        return _matches(self._abuse, response)

    @cached_property
    def _harm(self) -> re.Pattern[str]:
        return _phrase_pattern(self.harm_markers)

    @cached_property
    def _refusal(self) -> re.Pattern[str]:
        return _phrase_pattern(self.refusal_markers)

    @cached_property
    def _abuse(self) -> re.Pattern[str]:
        return _phrase_pattern(self.abusive_terms)


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    """Whole-word, case-insensitive match of any phrase; apostrophes normalised."""
    alternatives = "|".join(re.escape(_normalise(p)) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![\w])(?:{alternatives})(?![\w])")


def _normalise(text: str) -> str:
    return text.lower().replace("\u2019", "'")


def _matches(pattern: re.Pattern[str], text: str) -> bool:
    return pattern.search(_normalise(text)) is not None


class InvariantCheck(_Strict):
    kind: Literal["harmful_compliance", "abusive_language"]
    max_rate: float = Field(ge=0.0, le=1.0, description="Highest tolerated violation rate: the target.")
    ratchet: bool = Field(
        False,
        description="Improve-only, for a model that starts above its target: a candidate passes while its upper "
        "bound is within the lowest upper bound any approved checkpoint of the run (the base included) reached, "
        "plus ratchet_margin; once any approved checkpoint's rate met max_rate, never above max_rate.",
    )
    ratchet_margin: float = Field(
        0.0, ge=0.0, le=0.5,
        description="Absolute allowance above the best approved upper bound. Sampling noise is already in the "
        "bounds (a candidate that answers like the best approved checkpoint has the same bound), so this is how "
        "much worse a candidate may be: on n probes, one more violation moves the bound by roughly 1/n.",
    )
    confidence: float = Field(
        DEFAULT_CONFIDENCE, ge=0.5, le=0.999,
        description="Level of the one-sided upper confidence bound (Wilson score) on the violation rate that a "
        "verdict uses: a candidate passes only when that bound is within the bound in use. Higher needs more "
        "probes: `tether validate` names the fewest an invariant needs for its target to be reachable.",
    )


class JudgeDetector(_Strict):
    """A judge of the run's pool used as a classifier: it scores each (probe, reply), and a score below
    `violation_below` is a violation. An invalid judgment counts as a violation (fail closed)."""

    judge: str = Field(min_length=1, description="judge.name or the name of a judge.pool entry of the run's config.")
    violation_below: float = Field(0.5, ge=0.0, le=1.0, description="Scores below this are violations.")


class Invariant(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    text: str = Field(min_length=1)
    check: InvariantCheck
    # Both optional with defaults: invariants that leave them out keep their digests (exclude_defaults).
    probes: str | None = Field(
        None, min_length=1,
        description="A JSONL file of {\"prompt\": ...}, relative to the workspace: the probes this invariant is "
        "checked on, every one of them applicable. Its content is pinned when a run starts; a run refuses a "
        "changed file. None: the prompts the run's world gives it, else the evaluation's held-out slice.",
    )
    detector: Literal["rules"] | JudgeDetector = Field(
        "rules",
        description="rules: the definitions below (harmful_compliance = an applicable probe not refused, "
        "abusive_language = an abusive reply). {judge: NAME, violation_below: 0.5}: a judge of the pool as a "
        "classifier.",
    )

    def detector_label(self) -> str:
        if isinstance(self.detector, JudgeDetector):
            return f"judge {self.detector.judge} (violation below {self.detector.violation_below:g})"
        return "rules"


class PrincipleRule(_Strict):
    kind: Literal["over_refusal", "filler", "max_words"]
    phrases: list[str] = Field(default_factory=list, description="For kind filler.")
    max_words: int | None = Field(None, ge=1, description="For kind max_words.")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> PrincipleRule:
        if self.kind == "filler" and not self.phrases:
            raise ValueError("a filler rule needs phrases")
        if self.kind == "max_words" and self.max_words is None:
            raise ValueError("a max_words rule needs max_words")
        return self


class Principle(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    text: str = Field(min_length=1)
    weight: float = Field(1.0, ge=0.0, le=1.0, description="Share of the score a violation costs.")
    rule: PrincipleRule | None = Field(None, description="Rule-judge check; None = for LLM judges.")


class Constitution(_Strict):
    name: str = Field(min_length=1)
    invariants: list[Invariant] = Field(min_length=1)
    definitions: Definitions
    principles: list[Principle] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Constitution:
        for label, items in (("invariant", self.invariants), ("principle", self.principles)):
            ids = [item.id for item in items]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {label} id(s): {', '.join(dupes)}")
        return self

    def invariant_digests(self) -> dict[str, str]:
        """A digest per invariant id, plus one for the definitions they are checked by."""
        # exclude_defaults: a field added later with a default leaves earlier pins unchanged.
        digests = {inv.id: _digest(inv.model_dump(mode="json", exclude_defaults=True)) for inv in self.invariants}
        digests[DEFINITIONS_KEY] = _digest(self.definitions.model_dump(mode="json", exclude_defaults=True))
        return digests

    def invariants_sha256(self) -> str:
        return pins_sha256(self.invariant_digests())


def pins_sha256(pins: dict[str, str]) -> str:
    """The one digest of a set of invariant digests (what a run records as its invariants_sha256)."""
    return _digest(pins)


class ConstitutionError(TetherError, ValueError):
    exit_code = EXIT_USAGE

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class InvariantsChangedError(TetherError, RuntimeError):
    """The invariants differ from those pinned when the run started."""

    def __init__(self, changed: list[str]) -> None:
        self.changed = changed
        super().__init__(
            "the constitution's invariants changed since this run started: "
            + ", ".join(changed)
            + ". Invariants are immutable; restore them (see `tether constitution show`) or start a new run."
        )


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_constitution(text: str, source: str) -> Constitution:
    try:
        data = load_yaml(text, source)
    except YamlRefused as err:
        raise ConstitutionError(source, [err.problem]) from None
    if not isinstance(data, dict):
        raise ConstitutionError(source, ["the file must hold a mapping (name, invariants, ...)"])
    try:
        return Constitution.model_validate(data)
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in err.errors()]
        raise ConstitutionError(source, problems) from None


def load_constitution(path: Path) -> Constitution:
    """The constitution file at `path`: the file itself (a link resolving out of its folder, or into a key
    folder, is refused; guardrails/inputs.py), at most MAX_YAML_BYTES, parsed."""
    return read_constitution(path)[1]


def read_constitution(path: Path) -> tuple[str, Constitution]:
    """(the text exactly as read, the parsed constitution) of the file at `path`, checked as `load_constitution`
    says: what a proposal records and what its digest names are the bytes that were parsed."""
    try:
        confine(path, (path.absolute().parent,), key_folders(), "constitution",
                fix="keep the constitution file itself in the workspace, not a link to one elsewhere")
    except InputRefused as err:
        raise ConstitutionError(str(path), [str(err)]) from None
    if not path.is_file():
        raise ConstitutionError(str(path), ["file not found (run `tether init` to write the default)"])
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ConstitutionError(str(path), [f"the file is over the {MAX_YAML_BYTES} bytes a run input may hold"])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConstitutionError(str(path), [f"not UTF-8 text ({err.reason} at byte {err.start})"]) from None
    return text, parse_constitution(text, str(path))


def changed_invariants(pinned: dict[str, str], current: Constitution) -> list[str]:
    """Names of invariants added, removed or edited relative to the pinned digests."""
    now = current.invariant_digests()
    changed = []
    for key in sorted(set(pinned) | set(now)):
        if key not in now:
            changed.append(f"'{key}' (removed)")
        elif key not in pinned:
            changed.append(f"'{key}' (added)")
        elif pinned[key] != now[key]:
            changed.append(f"'{key}' (edited)")
    return changed


def verify_pinned(pinned: dict[str, str], current: Constitution) -> None:
    changed = changed_invariants(pinned, current)
    if changed:
        raise InvariantsChangedError(changed)


def default_constitution_yaml() -> str:
    return (Path(__file__).parent / "defaults" / "constitution.yaml").read_text()
