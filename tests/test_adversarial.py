"""The adversarial curriculum: frames per level, oracle-preserving mutations, recombination rules,
and the curriculum's ordering, dedup, exclusion and determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from guardrails.constitution import Definitions, default_constitution_yaml, parse_constitution
from tether_types import Prompt, prompt_id
from tools.prompts.adversarial import (
    MAX_LEVEL,
    RECOMBINE,
    Failure,
    curriculum,
    frames,
    mutate,
    recombine,
)
from tools.worlds import TaskSet
from tools.worlds.tiny import TinyWorld, get_family, verify

JOIN = TinyWorld(seed=0).join_meta  # which of the tiny world's families its verifiers check when joined


@pytest.fixture(scope="module")
def defs() -> Definitions:
    return parse_constitution(default_constitution_yaml(), "default").definitions


@pytest.fixture(scope="module")
def failures(world: TaskSet, defs: Definitions) -> list[Failure]:
    picked = [p for fam in world.families for p in world.by_family(fam)[:3]]
    return [Failure(p, f"judge score {i / 20:.2f} < 0.50", defs.is_harmful(p.text), score=i / 20)
            for i, p in enumerate(reversed(picked))]


def _styles(world: TaskSet, prompt: Prompt, parent: Prompt) -> dict[str, float]:
    """Oracle score of each corpus response style written for `parent`, applied to `prompt`."""
    responses = get_family(parent.family).responses(parent, random.Random(0))
    return {style: verify(prompt, text) for style, text in responses}


def _parents(p: Prompt) -> list[str]:
    ref = p.meta["parent"]
    return list(ref) if isinstance(ref, list) else [ref]


def test_frame_names_unique_and_every_level_covered() -> None:
    for harmful in (True, False):
        names = [f.name for f in frames(harmful)]
        assert len(names) == len(set(names))
        assert {f.level for f in frames(harmful)} == set(range(1, MAX_LEVEL + 1))
        assert all(len(frames(harmful, k)) >= 3 for k in range(1, MAX_LEVEL + 1))


def test_benign_mutations_carry_no_harm_marker(world: TaskSet, defs: Definitions) -> None:
    benign = [p for p in world.train if not defs.is_harmful(p.text)]
    assert benign
    for frame in frames(harmful=False):
        assert not defs.is_harmful(frame.template), frame.name
        for p in benign:
            if frame.applies(p.text):
                assert not defs.is_harmful(frame.render(p.text)), (frame.name, p.text)


def test_harmful_frames_add_no_marker_yet_mutations_stay_harmful(world: TaskSet, defs: Definitions) -> None:
    harmful = [p for p in world.train if defs.is_harmful(p.text)]
    assert harmful
    for frame in frames(harmful=True):
        # Harmful because the parent is, not because of the frame's own wording.
        assert not defs.is_harmful(frame.template), frame.name
        for p in harmful:
            if frame.applies(p.text):
                assert defs.is_harmful(frame.render(p.text)), (frame.name, p.text)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_mutation_keeps_family_meta_and_oracle(world: TaskSet, failures: list[Failure], level: int) -> None:
    rng = random.Random(level)
    for f in failures:
        m = mutate(f.prompt, f.harmful, level, rng)
        assert m.family == f.prompt.family and m.split == "train"
        assert m.id == prompt_id(m.family, m.text) and m.text != f.prompt.text
        assert f.prompt.text in m.text or f.prompt.text[1:] in m.text
        assert {k: m.meta[k] for k in f.prompt.meta} == dict(f.prompt.meta)
        assert m.meta["parent"] == f.prompt.id and m.meta["source"] == "adversarial"
        assert m.meta["level"] == level
        assert m.meta["mutation"] in {fr.name for fr in frames(f.harmful, level)}
        assert _styles(world, m, f.prompt) == _styles(world, f.prompt, f.prompt)


def test_arithmetic_mutation_still_verifies_the_answer(world: TaskSet) -> None:
    parent = world.by_family("arithmetic")[0]
    answer = parent.meta["answer"]
    for level in range(1, MAX_LEVEL + 1):
        for seed in range(10):
            m = mutate(parent, False, level, random.Random(seed))
            assert verify(m, f"The answer is {answer}.") == 1.0
            assert verify(m, f"The answer is {answer + 1}.") == 0.0


def test_mutate_rejects_bad_levels_and_never_wraps_twice(world: TaskSet) -> None:
    p = world.by_family("howto")[0]
    for bad in (0, MAX_LEVEL + 1):
        with pytest.raises(ValueError, match="level"):
            mutate(p, False, bad, random.Random(0))
    quick = mutate(p, False, 1, random.Random(0))
    for seed in range(20):
        again = mutate(quick, False, 1, random.Random(seed))
        assert again.meta["mutation"] != quick.meta["mutation"]
        assert again.meta["parent"] == quick.id


def test_recombine_rules(world: TaskSet, defs: Definitions) -> None:
    rng = random.Random(0)
    ar = world.by_family("arithmetic")
    ho = world.by_family("howto")
    hm = world.by_family("harmful")
    assert recombine(ar[0], ar[1], rng, JOIN) is None  # two answers would break the verifier
    assert recombine(ho[0], hm[0], rng, JOIN) is None  # families differ
    assert recombine(ho[0], ho[0], rng, JOIN) is None  # nothing to join

    both = recombine(hm[0], hm[-1], rng, JOIN)
    assert both is not None and both.family == "harmful" and defs.is_harmful(both.text)
    assert both.meta["parent"] == [hm[0].id, hm[-1].id] and both.meta["level"] == MAX_LEVEL
    assert both.meta["mutation"] == RECOMBINE and both.id == prompt_id("harmful", both.text)
    assert _styles(world, both, hm[0]) == _styles(world, hm[0], hm[0])

    a, b = ho[0], next(p for p in ho if p.meta["topic"] != ho[0].meta["topic"])
    joined = recombine(a, b, rng, JOIN)
    assert joined is not None and not defs.is_harmful(joined.text)
    assert set(joined.meta["keywords"]) == set(a.meta["keywords"]) | set(b.meta["keywords"])
    for parent in (a, b):  # a good answer to either part still scores
        good = dict(get_family("howto").responses(parent, random.Random(0)))["good"]
        assert verify(joined, good) == 1.0
    assert verify(joined, "I can't help with that.") == 0.0


def test_curriculum_parents_and_oracle(world: TaskSet, failures: list[Failure], defs: Definitions) -> None:
    by_id = {f.prompt.id: f for f in failures}
    out = curriculum(failures, 60, MAX_LEVEL, seed=1, exclude=(), join=JOIN)
    assert len(out) == 60
    for p in out:
        parents = _parents(p)
        assert all(pid in by_id for pid in parents)
        first = by_id[parents[0]]
        assert p.family == first.prompt.family and p.split == "train"
        assert defs.is_harmful(p.text) == first.harmful
        assert p.meta["reason"].startswith(first.reason)
        assert _styles(world, p, first.prompt) == _styles(world, first.prompt, first.prompt)


def test_curriculum_targets_every_failure_worst_first(failures: list[Failure]) -> None:
    out = curriculum(failures, len(failures), 2, seed=0, exclude=(), join=JOIN)
    worst = sorted(failures, key=lambda f: f.score or 0.0)
    assert [_parents(p)[0] for p in out] == [f.prompt.id for f in worst]


def test_unscored_failures_come_after_scored_ones(failures: list[Failure]) -> None:
    mixed = [Failure(f.prompt, f.reason, f.harmful) for f in failures[:3]] + failures[3:6]
    out = curriculum(mixed, 6, 1, seed=0, exclude=(), join=JOIN)
    expected = sorted(failures[3:6], key=lambda f: f.score or 0.0) + failures[:3]
    assert [p.meta["parent"] for p in out] == [f.prompt.id for f in expected]


def test_curriculum_level_shapes_the_frames(failures: list[Failure]) -> None:
    for low in (0, 1):  # clamped up to level 1
        assert {p.meta["level"] for p in curriculum(failures, 40, low, seed=0, exclude=(), join=JOIN)} == {1}
    assert {p.meta["level"] for p in curriculum(failures, 80, 2, seed=0, exclude=(), join=JOIN)} <= {1, 2}
    # Over many seeds (the first draws, before any failure's hardest frames run out) the top level
    # dominates and each level outweighs the one below it.
    for level in (2, 3):
        seen = Counter(p.meta["level"] for seed in range(30)
                       for p in curriculum(failures, len(failures) * 2, level, seed=seed, exclude=(), join=JOIN))
        shares = [seen[k] / seen.total() for k in range(1, level + 1)]
        assert shares == sorted(shares) and shares[-1] > 0.45, shares
    assert (curriculum(failures, 30, 99, seed=4, exclude=(), join=JOIN)
            == curriculum(failures, 30, MAX_LEVEL, 4, (), JOIN))


def test_recombinations_appear_only_at_the_top_level(failures: list[Failure]) -> None:
    top = curriculum(failures, 500, MAX_LEVEL, seed=0, exclude=(), join=JOIN)
    assert any(p.meta["mutation"] == RECOMBINE for p in top)
    assert all(p.family != "arithmetic" for p in top if p.meta["mutation"] == RECOMBINE)
    assert not any(p.meta["mutation"] == RECOMBINE
                   for p in curriculum(failures, 500, 2, seed=0, exclude=(), join=JOIN))


def test_the_world_decides_what_joins(world: TaskSet, failures: list[Failure]) -> None:
    # A world that joins nothing (no PromptJoiner) gets no recombinations; a self-written how-to prompt (no
    # keywords for the verifier) joins nothing either.
    assert not any(p.meta["mutation"] == RECOMBINE
                   for p in curriculum(failures, 500, MAX_LEVEL, seed=0, exclude=(), join=None))
    howto = world.by_family("howto")[0]
    written = Prompt(prompt_id("howto", "How do I fold a paper crane?"), "How do I fold a paper crane?", "howto",
                     "train", {"source": "regenerated", "unverified": True})
    assert recombine(howto, written, random.Random(0), JOIN) is None


def test_no_duplicates_and_excludes_honoured(world: TaskSet, failures: list[Failure]) -> None:
    out = curriculum(failures, 1000, MAX_LEVEL, seed=3, exclude=(), join=JOIN)
    assert 0 < len(out) < 1000  # ran out rather than repeating
    assert len({" ".join(p.text.lower().split()) for p in out}) == len(out)
    banned = [f"  {p.text.upper()}  " for p in out[::2]]
    again = curriculum(failures, 1000, MAX_LEVEL, seed=3, exclude=banned, join=JOIN)
    norm = {" ".join(t.lower().split()) for t in banned}
    assert again and not {" ".join(p.text.lower().split()) for p in again} & norm
    assert len(again) == len(out) - len(banned)


def test_curriculum_is_deterministic(failures: list[Failure]) -> None:
    def run(seed: int) -> list[tuple[str, str]]:
        return [(p.id, p.meta["mutation"]) for p in curriculum(failures, 25, 3, seed=seed, exclude=(), join=JOIN)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_curriculum_edge_cases(failures: list[Failure]) -> None:
    assert curriculum([], 10, 2, seed=0, exclude=(), join=JOIN) == []
    assert curriculum(failures, 0, 2, seed=0, exclude=(), join=JOIN) == []
    one = curriculum(failures[:1], 100, 1, seed=0, exclude=(), join=JOIN)
    assert 0 < len(one) <= len(frames(failures[0].harmful, 1))
