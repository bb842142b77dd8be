"""Sharded local sampling (`generation.workers`): a round's prompts split over 2 worker processes give exactly
the samples of one process, with and without an adapter (tiny random model, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agent.config import GenerationConfig
from policies.adapters import ADAPTER_WEIGHTS_NAME, AdapterIntegrityError, adapter_sha256
from policies.generation import TransformersBackend
from policies.sharded import ShardedBackend, shards
from tether_types import AdapterRef, SamplingSpec

PROMPTS = [f"What is {i} plus {i}?" for i in range(5)] + ["Say hello.", "Name a colour."]
SPEC = SamplingSpec(n=3, max_new_tokens=10, temperature=1.0, top_p=0.9, seed=11)


def _adapter(model_dir: Path, out: Path) -> AdapterRef:
    """A LoRA adapter with non-zero weights, so that it changes what is sampled."""
    from peft import LoraConfig, get_peft_model

    from policies.loading import load_base_model

    torch.manual_seed(3)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(load_base_model(str(model_dir), "cpu"), config).save_pretrained(out)
    return AdapterRef(id="round1", path=out, sha256=adapter_sha256(out))


def test_two_workers_sample_exactly_what_one_process_samples(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    adapter = _adapter(tiny_random_model_dir, tmp_path / "adapter")
    greedy = SamplingSpec(n=2, max_new_tokens=10, do_sample=False)
    with TransformersBackend(str(tiny_random_model_dir), device="cpu") as one:
        expected = [one.generate(PROMPTS, a, s) for a, s in ((None, SPEC), (adapter, SPEC), (None, greedy))]
        scores = one.base_logprobs(PROMPTS, [g.text for g in expected[0][:: SPEC.n]])
    with ShardedBackend(str(tiny_random_model_dir), 2, torch.get_num_threads(), device="cpu") as sharded:
        got = [sharded.generate(PROMPTS, a, s) for a, s in ((None, SPEC), (adapter, SPEC), (None, greedy))]
        assert sharded.last_stats is not None and sharded.last_stats.tokens == sum(g.n_tokens for g in got[2])
        assert sharded.base_logprobs(PROMPTS, [g.text for g in got[0][:: SPEC.n]]) == pytest.approx(scores, abs=1e-5)
        weights = adapter.path / ADAPTER_WEIGHTS_NAME  # each worker re-verifies the adapter it samples with
        weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
        with pytest.raises(AdapterIntegrityError):
            sharded.generate(PROMPTS, adapter, SPEC)
    assert got == expected
    assert got[0] != got[1]  # the adapter was applied in the workers
    assert len({g.text for g in got[0]}) > len(PROMPTS)  # sampled: a prompt's samples differ


def test_a_prompts_samples_do_not_depend_on_its_batch(tiny_random_model_dir: Path) -> None:
    with TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=64) as whole:
        round_ = whole.generate(PROMPTS, None, SPEC)
        tail = whole.generate_from(PROMPTS[4:], None, SPEC, first_index=4)
    with TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=3, batching="static") as small:
        assert small.generate(PROMPTS, None, SPEC) == round_
    assert [(g.sample_index, g.text) for g in tail] == [(g.sample_index, g.text) for g in round_[4 * SPEC.n:]]


def test_shards_and_the_config() -> None:
    assert shards(7, 2) == [range(0, 4), range(4, 7)]
    assert shards(1, 4) == [range(0, 1)]
    with pytest.raises(ValueError, match="set workers to 1"):
        GenerationConfig(backend="vllm", workers=2)
