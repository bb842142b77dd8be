"""Generation backends, adapter loading and adapter integrity (tiny random model, CPU)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from policies.adapters import AdapterIntegrityError, adapter_sha256, verify_adapter
from policies.chat import format_prompt
from policies.generation import GenerationBackend, TransformersBackend, make_backend
from policies.loading import load_policy, load_tokenizer, resolve_device
from tether_types import AdapterRef, Generation, SamplingSpec, sha256_file

PROMPTS = [
    "hi",
    "Please explain why the sky is blue in one sentence.",
    "What is the capital of France?",
    "Write a short poem about the sea",
    "ok",
]
GREEDY = SamplingSpec(n=1, max_new_tokens=10, do_sample=False)


def make_random_adapter(model_dir: Path, out: Path, adapter_id: str, seed: int, alpha: int = 64) -> AdapterRef:
    """A LoRA adapter with non-zero (random) A and B, saved as safetensors; `alpha` scales its effect."""
    from peft import LoraConfig, get_peft_model

    from policies.loading import known_deprecations_silenced, load_base_model

    model = load_base_model(str(model_dir), "cpu")
    torch.manual_seed(seed)
    config = LoraConfig(
        r=8,
        lora_alpha=alpha,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    with known_deprecations_silenced():
        get_peft_model(model, config).save_pretrained(out)
    return AdapterRef(id=adapter_id, path=out, sha256=adapter_sha256(out))


@pytest.fixture(scope="module")
def backend(tiny_random_model_dir: Path) -> TransformersBackend:
    b = TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=8)
    yield b
    b.close()


@pytest.fixture(scope="module")
def adapter(tiny_random_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AdapterRef:
    return make_random_adapter(
        tiny_random_model_dir, tmp_path_factory.mktemp("adapter") / "a1", "a1", seed=1
    )


def texts(gens: list[Generation]) -> list[str]:
    return [g.text for g in gens]


def test_backend_satisfies_protocol(backend: TransformersBackend) -> None:
    assert isinstance(backend, GenerationBackend)
    assert backend.tokenizer.padding_side == "left"
    assert backend.tokenizer.pad_token is not None  # fixture has none: falls back to eos
    assert backend.tokenizer.pad_token == backend.tokenizer.eos_token


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_left_padded_batch_matches_one_at_a_time(
    backend: TransformersBackend, tiny_random_model_dir: Path
) -> None:
    batched = backend.generate(PROMPTS, None, GREEDY)
    single = [backend.generate([p], None, GREEDY)[0] for p in PROMPTS]
    assert [(g.prompt_index, g.sample_index) for g in batched] == [
        (i, 0) for i in range(len(PROMPTS))
    ]
    assert texts(batched) == texts(single)
    assert [g.n_tokens for g in batched] == [g.n_tokens for g in single]
    assert all(0 < g.n_tokens <= GREEDY.max_new_tokens for g in batched)
    # a batch size that splits the prompts unevenly gives the same answers too
    small = TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=2)
    assert texts(small.generate(PROMPTS, None, GREEDY)) == texts(batched)


def test_n_samples_come_back_with_indices(backend: TransformersBackend) -> None:
    spec = SamplingSpec(n=3, max_new_tokens=6, temperature=1.0, seed=7)
    gens = backend.generate(PROMPTS[:4], None, spec)
    assert [(g.prompt_index, g.sample_index) for g in gens] == [
        (p, s) for p in range(4) for s in range(3)
    ]
    assert all(isinstance(g.text, str) and g.n_tokens <= 6 for g in gens)
    # deterministic for a seed, and samples of one prompt differ
    assert gens == backend.generate(PROMPTS[:4], None, spec)
    assert len({g.text for g in gens if g.prompt_index == 1}) > 1
    assert backend.last_stats is not None
    assert backend.last_stats.tokens == sum(g.n_tokens for g in gens)
    assert backend.last_stats.seconds > 0 and backend.last_stats.tokens_per_second > 0


def test_greedy_n_repeats_and_batch_size_bounds_sequences(backend: TransformersBackend) -> None:
    gens = backend.generate(PROMPTS[:2], None, SamplingSpec(n=2, max_new_tokens=5, do_sample=False))
    assert [(g.prompt_index, g.sample_index) for g in gens] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert gens[0].text == gens[1].text and gens[2].text == gens[3].text
    assert backend.generate([], None, GREEDY) == []


def test_trim_stops_at_eos(backend: TransformersBackend) -> None:
    eos = backend.tokenizer.eos_token_id
    assert backend._trim([5, 6, eos, eos, eos]) == [5, 6]
    assert backend._trim([5, 6, 7]) == [5, 6, 7]
    assert backend._trim([eos]) == []


def test_chat_template_and_raw_fallback(tiny_random_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_random_model_dir))
    assert format_prompt(tok, "hello") == "<|user|>hello<|end|><|assistant|>"
    tok.chat_template = None
    assert format_prompt(tok, "hello") == "hello"


def test_adapter_changes_outputs_and_base_is_restored(
    backend: TransformersBackend, adapter: AdapterRef
) -> None:
    base = backend.generate(PROMPTS, None, GREEDY)
    tuned = backend.generate(PROMPTS, adapter, GREEDY)
    assert texts(tuned) != texts(base)
    assert backend.loaded_adapters == {"a1": adapter}
    # adapter None goes through disable_adapter(): the base outputs again
    assert texts(backend.generate(PROMPTS, None, GREEDY)) == texts(base)
    # selecting it again (re-verified) gives the same outputs
    assert texts(backend.generate(PROMPTS, adapter, GREEDY)) == texts(tuned)


def test_two_adapters_side_by_side(
    backend: TransformersBackend, adapter: AdapterRef, tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    other = make_random_adapter(tiny_random_model_dir, tmp_path / "a2", "a2", seed=2)
    out1 = texts(backend.generate(PROMPTS, adapter, GREEDY))
    out2 = texts(backend.generate(PROMPTS, other, GREEDY))
    assert out1 != out2
    assert texts(backend.generate(PROMPTS, adapter, GREEDY)) == out1


def test_load_policy_matches_backend(tiny_random_model_dir: Path, adapter: AdapterRef) -> None:
    from peft import PeftModel

    base = load_policy(str(tiny_random_model_dir), None, "cpu")
    tuned = load_policy(str(tiny_random_model_dir), adapter, "cpu")
    assert isinstance(tuned, PeftModel) and not isinstance(base, PeftModel)
    assert not tuned.training and not base.training
    ids = torch.tensor([[3, 10, 20, 30]])
    with torch.inference_mode():
        assert not torch.allclose(base(ids).logits, tuned(ids).logits)
        with tuned.disable_adapter():
            assert torch.allclose(base(ids).logits, tuned(ids).logits)


def test_verify_adapter_names_path_expected_and_actual(adapter: AdapterRef) -> None:
    verify_adapter(adapter.path, adapter.sha256)
    # The digest is the sha256 of the `sha256sum` listing of both adapter files.
    listing = "".join(f"{sha256_file(adapter.path / name)}  {name}\n"
                      for name in ("adapter_config.json", "adapter_model.safetensors"))
    assert adapter.sha256 == hashlib.sha256(listing.encode()).hexdigest()
    with pytest.raises(AdapterIntegrityError) as info:
        verify_adapter(adapter.path, "0" * 64)
    message = str(info.value)
    assert str(adapter.path) in message
    assert "0" * 64 in message and adapter.sha256 in message
    with pytest.raises(AdapterIntegrityError):
        verify_adapter(adapter.path.parent / "missing", adapter.sha256)


def test_edited_adapter_config_is_tampering(tiny_random_model_dir: Path, tmp_path: Path) -> None:
    """lora_alpha scales the adapter's effect, so the config is covered by the digest too."""
    good = make_random_adapter(tiny_random_model_dir, tmp_path / "cfg", "cfg", seed=5)
    config_path = good.path / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["lora_alpha"] = config["lora_alpha"] * 100
    config_path.write_text(json.dumps(config))
    with pytest.raises(AdapterIntegrityError):
        verify_adapter(good.path, good.sha256)


def _tamper(weights: Path) -> None:
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last tensor's data
    weights.write_bytes(bytes(data))


def test_tampered_adapter_is_refused_and_never_applied(
    tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    good = make_random_adapter(tiny_random_model_dir, tmp_path / "t1", "t1", seed=3)
    _tamper(good.path / "adapter_model.safetensors")
    b = TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=8)
    base = b.generate(PROMPTS, None, GREEDY)
    with pytest.raises(AdapterIntegrityError):
        b.generate(PROMPTS, good, GREEDY)
    assert b.loaded_adapters == {}
    assert not hasattr(b._model, "peft_config")  # the model was never wrapped
    assert texts(b.generate(PROMPTS, None, GREEDY)) == texts(base)
    with pytest.raises(AdapterIntegrityError):
        load_policy(str(tiny_random_model_dir), good, "cpu")


def test_adapter_tampered_after_loading_is_refused_on_next_use(
    tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    ref = make_random_adapter(tiny_random_model_dir, tmp_path / "t2", "t2", seed=4)
    b = TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=8)
    b.generate(PROMPTS[:1], ref, GREEDY)
    _tamper(ref.path / "adapter_model.safetensors")
    with pytest.raises(AdapterIntegrityError):
        b.generate(PROMPTS[:1], ref, GREEDY)


def test_adapter_id_reused_with_new_weights_is_reloaded(
    tiny_random_model_dir: Path, tmp_path: Path
) -> None:
    first = make_random_adapter(tiny_random_model_dir, tmp_path / "r1", "same", seed=5)
    second = make_random_adapter(tiny_random_model_dir, tmp_path / "r2", "same", seed=6)
    b = TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=8)
    out1 = texts(b.generate(PROMPTS, first, GREEDY))
    out2 = texts(b.generate(PROMPTS, second, GREEDY))
    assert out1 != out2
    assert b.loaded_adapters == {"same": second}
    fresh = TransformersBackend(str(tiny_random_model_dir), device="cpu", batch_size=8)
    assert texts(fresh.generate(PROMPTS, second, GREEDY)) == out2


def test_make_backend(tiny_random_model_dir: Path) -> None:
    b = make_backend("transformers", str(tiny_random_model_dir), device="cpu", batch_size=4)
    assert isinstance(b, TransformersBackend) and b.batch_size == 4
    b.close()
    with pytest.raises(ValueError, match="unknown generation backend"):
        make_backend("nope", str(tiny_random_model_dir))  # type: ignore[arg-type]


def test_make_backend_vllm_without_vllm_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tiny_random_model_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    with pytest.raises(ImportError, match=r"pip install 'tether\[gpu\]'"):
        make_backend("vllm", str(tiny_random_model_dir))


def test_sampling_spec_validation() -> None:
    with pytest.raises(ValueError):
        SamplingSpec(n=0)
    with pytest.raises(ValueError):
        SamplingSpec(top_p=0.0)
    assert SamplingSpec(temperature=0.0).greedy and SamplingSpec(do_sample=False).greedy
    assert not SamplingSpec().greedy


def test_base_logprobs_are_the_base_models_mean_token_logprobs(backend: TransformersBackend,
                                                                adapter: AdapterRef) -> None:
    from policies.chat import format_prompt
    from policies.loading import load_base_model

    prompts, responses = [PROMPTS[0], PROMPTS[1], PROMPTS[0]], ["a b c", "hello there, friend", ""]
    got = backend.base_logprobs(prompts, responses)
    model = load_base_model(backend.model_ref, "cpu", "auto")
    for prompt, response, value in zip(prompts[:2], responses[:2], got[:2], strict=True):
        head = backend.tokenizer(format_prompt(backend.tokenizer, prompt), add_special_tokens=False)["input_ids"]
        tail = backend.tokenizer(response, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        expected = logp[len(head) - 1:].gather(1, ids[0, len(head):, None]).mean()
        assert value == pytest.approx(float(expected), abs=1e-4)  # one at a time, unpadded: the same
    assert got[2] == 0.0  # an empty response
    backend.generate(PROMPTS, adapter, GREEDY)  # an adapter loaded and selected last...
    assert backend.base_logprobs(prompts, responses) == pytest.approx(got, abs=1e-5)  # ...is disabled here
    with pytest.raises(ValueError, match="2 prompts for 1 responses"):
        backend.base_logprobs(prompts[:2], responses[:1])


def test_scoring_batches_bound_the_logits(backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    from policies import generation

    monkeypatch.setattr(generation, "SCORE_LOGITS_BUDGET", 1000)
    lengths = [5, 50, 10, 20, 5, 40]
    batches = backend._score_batches(lengths, vocab=10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every row once
    for batch in batches:
        widest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * widest * 10 <= 1000  # a lone row is scored whatever its size
        assert len(batch) <= backend.batch_size
    monkeypatch.setattr(generation, "SCORE_TOKENS_PER_BATCH", 40)  # the padded-token bound binds too
    for batch in backend._score_batches(lengths, vocab=1):
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 40
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)  # by length: little padding
    prompts, responses = ["What is 1 + 1?"] * 3, ["2", "It is 2.", "The answer is two, since one and one make two."]
    expected = backend.base_logprobs(prompts, responses)
    monkeypatch.setattr(generation, "SCORE_LOGITS_BUDGET", 1)  # one row a batch: the same values
    assert backend.base_logprobs(prompts, responses) == pytest.approx(expected, abs=1e-5)
