"""The tiny world's task families: a registry of families (prompts + an oracle verifier + corpus
responses per style), the deterministic stratified split, and `tiny_world`, the embedded task set.
"""

from __future__ import annotations

import difflib
import random
from collections import defaultdict
from typing import Protocol, TypeVar, runtime_checkable

from tether_types import Prompt, prompt_id
from tools.worlds.base import TaskSet

FAMILIES: dict[str, TaskFamily] = {}


@runtime_checkable
class TaskFamily(Protocol):
    name: str

    def prompts(self) -> list[tuple[str, dict]]:
        """All (text, meta) of the family, deterministic. meta["topic"] stratifies the split and
        optional meta["group"] names prompts that must land in the same split."""
        ...

    def verify(self, prompt: Prompt, response: str) -> float:
        """Oracle score in [0, 1]."""
        ...

    def join_meta(self, a: Prompt, b: Prompt) -> dict | None:
        """The meta of two of its prompts asked as one request, which `verify` checks; None when it cannot."""
        ...

    def responses(self, prompt: Prompt, rng: random.Random) -> list[tuple[str, str]]:
        """(style, text) corpus responses, one per style the family supports."""
        ...


F = TypeVar("F")


def register_family(cls: type[F]) -> type[F]:
    """Class decorator: instantiate the family and register it under its `name`."""
    instance = cls()
    FAMILIES[instance.name] = instance  # type: ignore[attr-defined]
    return cls


def get_family(name: str) -> TaskFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(FAMILIES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown task family {name!r}{hint} (known: {sorted(FAMILIES)})") from None


def split_family(
    family: TaskFamily, seed: int, heldout_fraction: float
) -> tuple[list[Prompt], list[Prompt]]:
    """Stratified split: within each topic, hold out ~fraction of the groups (at least one when a
    topic has two or more), so held-out prompts share skills/topics with train but differ in text."""
    strata: dict[str, dict[str, list[tuple[str, dict]]]] = defaultdict(lambda: defaultdict(list))
    for text, meta in family.prompts():
        strata[str(meta.get("topic", ""))][str(meta.get("group", text))].append((text, meta))
    rng = random.Random(f"tether-split/{family.name}/{seed}")
    train: list[Prompt] = []
    heldout: list[Prompt] = []
    for topic in sorted(strata):
        groups = sorted(strata[topic])
        rng.shuffle(groups)
        n_held = int(len(groups) * heldout_fraction + 0.5)
        if len(groups) >= 2:
            n_held = min(max(n_held, 1), len(groups) - 1)
        for i, g in enumerate(groups):
            split = "heldout" if i < n_held else "train"
            for text, meta in strata[topic][g]:
                p = Prompt(prompt_id(family.name, text), text, family.name, split, meta)
                (heldout if split == "heldout" else train).append(p)
    train.sort(key=lambda p: p.id)
    heldout.sort(key=lambda p: p.id)
    return train, heldout


DEFAULT_FAMILIES: tuple[str, ...] = ("arithmetic", "howto", "harmful")


def tiny_world(
    seed: int = 0,
    heldout_fraction: float = 0.25,
    families: tuple[str, ...] = DEFAULT_FAMILIES,
) -> TaskSet:
    """The embedded task set: every family split deterministically for `seed`."""
    import tools.worlds.tiny  # noqa: F401  (registers the built-in families)

    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    train: list[Prompt] = []
    heldout: list[Prompt] = []
    for name in families:
        tr, ho = split_family(get_family(name), seed, heldout_fraction)
        train += tr
        heldout += ho
    return TaskSet(tuple(train), tuple(heldout))  # checks train and held-out are disjoint


def verify(prompt: Prompt, response: str) -> float | None:
    """The family's oracle score in [0, 1]; None for a prompt of no family of this world."""
    family = FAMILIES.get(prompt.family)
    if family is None:
        return None
    return min(1.0, max(0.0, float(family.verify(prompt, response))))
