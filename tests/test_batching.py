"""Compacted decoding against the static path: same greedy tokens, reproducible samples, less waste.

On the tiny random model (adapters) and the embedded tiny world model, whose answers end at very
different lengths (compaction has rows to drop there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_generation import make_random_adapter

from policies.generation import TransformersBackend
from policies.threads import apply_threads
from tether_types import AdapterRef, Generation, SamplingSpec

K = 6
SAMPLED = SamplingSpec(n=K, max_new_tokens=40, temperature=1.0, top_p=0.95, seed=11)
GREEDY = SamplingSpec(n=1, max_new_tokens=40, do_sample=False)


@pytest.fixture(scope="module", autouse=True)
def free_cores() -> Iterator[None]:
    """As a run does (model.threads auto): on a busy shared CPU torch's default threads are many times slower."""
    before = torch.get_num_threads()
    apply_threads("auto")
    yield
    torch.set_num_threads(before)


def _pairs(gens: list[Generation]) -> list[tuple[int, int, str, int]]:
    return [(g.prompt_index, g.sample_index, g.text, g.n_tokens) for g in gens]


@pytest.fixture(scope="module")
def world_backends(tiny_world_model_dir: Path) -> Iterator[dict[str, TransformersBackend]]:
    backends = {b: TransformersBackend(str(tiny_world_model_dir), device="cpu", batch_size=1024, batching=b)
                for b in ("static", "compact")}
    yield backends
    for b in backends.values():
        b.close()


@pytest.fixture(scope="module")
def world_prompts(world: Any) -> list[str]:  # conftest's TaskSet of the tiny world
    """Held-out prompts of every family in turn: their answers end at different lengths."""
    families: dict[str, list[str]] = {}
    for p in world.heldout:
        families.setdefault(p.family, []).append(p.text)
    return [text for group in zip(*families.values(), strict=False) for text in group][:24]


def test_greedy_compact_equals_static(world_backends: dict[str, TransformersBackend], world_prompts: list[str]) -> None:
    static = world_backends["static"].generate(world_prompts, None, GREEDY)
    compact = world_backends["compact"].generate(world_prompts, None, GREEDY)
    assert _pairs(compact) == _pairs(static)
    assert len({g.n_tokens for g in static}) > 1, "answers of one length leave nothing to compact"
    before, after = world_backends["static"].last_stats, world_backends["compact"].last_stats
    assert before is not None and after is not None
    assert after.slot_steps < before.slot_steps  # rows were dropped, and the answers did not change
    # and with a batch size that splits the prompts unevenly
    small = world_backends["compact"]
    small.batch_size = 5
    try:
        assert _pairs(small.generate(world_prompts, None, GREEDY)) == _pairs(static)
    finally:
        small.batch_size = 1024


def test_compact_sampling_is_reproducible_and_wastes_less(
    world_backends: dict[str, TransformersBackend], world_prompts: list[str]
) -> None:
    compact = world_backends["compact"]
    first = compact.generate(world_prompts, None, SAMPLED)
    stats = compact.last_stats
    assert first == compact.generate(world_prompts, None, SAMPLED)
    assert [(g.prompt_index, g.sample_index) for g in first] == [
        (p, s) for p in range(len(world_prompts)) for s in range(K)
    ]
    assert all(0 <= g.n_tokens <= SAMPLED.max_new_tokens for g in first)
    assert len({g.text for g in first if g.prompt_index == 0}) > 1  # the K samples of a prompt differ
    # a different seed gives different samples
    assert first != compact.generate(world_prompts, None, SamplingSpec(**{**SAMPLED.__dict__, "seed": 12}))

    static = world_backends["static"]
    static.generate(world_prompts, None, SAMPLED)
    before = static.last_stats
    assert stats is not None and before is not None
    assert stats.decoded_tokens == stats.tokens == sum(g.n_tokens for g in first)
    assert before.slot_efficiency is not None and stats.slot_efficiency is not None
    assert 0 < before.slot_efficiency < stats.slot_efficiency <= 1
    assert stats.slot_steps < before.slot_steps


def test_greedy_repeats_count_once_as_decoded(world_backends: dict[str, TransformersBackend],
                                              world_prompts: list[str]) -> None:
    backend = world_backends["compact"]
    gens = backend.generate(world_prompts[:3], None, SamplingSpec(n=3, max_new_tokens=20, do_sample=False))
    stats = backend.last_stats
    assert stats is not None
    assert stats.tokens == sum(g.n_tokens for g in gens) == 3 * stats.decoded_tokens


@pytest.fixture(scope="module")
def gentle_adapter(tiny_world_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AdapterRef:
    """A random LoRA small enough that the world model's answers still end (and at other lengths)."""
    return make_random_adapter(tiny_world_model_dir, tmp_path_factory.mktemp("adapter") / "g1", "g1", seed=1,
                               alpha=4)


def test_compact_with_an_adapter_and_with_it_disabled(
    world_backends: dict[str, TransformersBackend], world_prompts: list[str], gentle_adapter: AdapterRef
) -> None:
    """Through the PeftModel (adapter applied) and its disable_adapter() path (adapter None): the cache
    continued after a compaction is the adapter's."""
    static, compact = world_backends["static"], world_backends["compact"]
    for adapter in (gentle_adapter, None):
        expected = static.generate(world_prompts, adapter, GREEDY)
        assert _pairs(compact.generate(world_prompts, adapter, GREEDY)) == _pairs(expected)
        assert compact.last_stats is not None and static.last_stats is not None
        assert compact.last_stats.slot_steps < static.last_stats.slot_steps
    assert _pairs(compact.generate(world_prompts, gentle_adapter, GREEDY)) != _pairs(expected)  # it is applied
    sampled = SamplingSpec(n=3, max_new_tokens=40, seed=5)
    tuned = compact.generate(world_prompts, gentle_adapter, sampled)
    assert compact.last_stats is not None
    compacted = compact.last_stats.slot_steps
    assert tuned == compact.generate(world_prompts, gentle_adapter, sampled)
    static.generate(world_prompts, gentle_adapter, sampled)
    assert static.last_stats is not None and compacted < static.last_stats.slot_steps


def test_unknown_batching_is_refused(tiny_random_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown batching 'dynamic'; expected one of static, compact"):
        TransformersBackend(str(tiny_random_model_dir), device="cpu", batching="dynamic")  # type: ignore[arg-type]


def test_compact_samples_as_static(world_backends: dict[str, TransformersBackend], world_prompts: list[str]) -> None:
    """Each row draws from its own generator (seeded per prompt and sample, policies/decoding.py), so dropping
    finished rows from the batch changes no one's draws: compact samples exactly what static samples."""
    spec = SamplingSpec(n=K, max_new_tokens=40, temperature=1.0, top_p=0.95, seed=3)
    static = world_backends["static"].generate(world_prompts, None, spec)
    compact = world_backends["compact"].generate(world_prompts, None, spec)
    assert len({g.n_tokens for g in static}) > 1  # rows ended at different steps: compaction dropped some
    assert compact == static
