"""Generation backends: sampling responses from the base model or the base model + a LoRA adapter.

``TransformersBackend`` (CPU default, also works on one GPU), ``VLLMBackend`` (GPU, optional extra
``tether[gpu]``, in :mod:`policies.vllm_backend`) and ``ServerBackend`` (an OpenAI-compatible completions
server, in :mod:`policies.server_backend`) share the :class:`GenerationBackend` protocol.
Prompts are *user messages*: each is rendered with the tokenizer's chat template as a one-turn
conversation with the generation prompt appended.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, runtime_checkable

import torch
from transformers import GenerationConfig

from policies.adapters import verify_adapter
from policies.chat import eos_token_ids, format_prompt, has_chat_template
from policies.decoding import BATCHINGS, Batching, RowDraws, decode, row_generator
from policies.loading import attach_adapter, load_base_model, load_tokenizer, resolve_device
from policies.progress import bar as progress_bar
from tether_types import AdapterRef, Generation, GenerationStats, SamplingSpec

if TYPE_CHECKING:
    from peft import PeftModel


@runtime_checkable
class GenerationBackend(Protocol):
    """Samples ``spec.n`` responses per prompt, from the base model (``adapter=None``) or with
    the adapter applied. Results are ordered by prompt, then sample index. Implementations verify
    the adapter's SHA-256 every time it is selected and expose ``last_stats``."""

    last_stats: GenerationStats | None

    def generate(
        self, prompts: Sequence[str], adapter: AdapterRef | None, spec: SamplingSpec
    ) -> list[Generation]: ...

    def close(self) -> None: ...


SCORE_LOGITS_BUDGET = 1 << 28  # float32 logits per scoring batch: 1 GiB
# Padded tokens per scoring batch on a CPU, where smaller batches are faster (a tiny world round of 384
# samples, 2 cores: 0.96 s in one batch, 0.43 s at 4096 tokens). Not on a GPU, where one large batch is
# (a 266M Qwen2 in bfloat16 on an H200: 0.11 s in one batch, 0.27 s at 4096 tokens).
SCORE_TOKENS_PER_BATCH = 4096


class TransformersBackend:
    """``model.generate`` with left-padded batches, an attention mask and the KV cache.

    The base model is loaded once. Adapters are attached to a single ``PeftModel`` wrapper, each
    under its ``AdapterRef.id``, on first use, from verified bytes; their SHA-256 is re-checked
    every time they are selected. ``adapter=None`` generates through ``disable_adapter()``.
    If the tokenizer has no chat template, prompts are used as raw text (see :func:`format_prompt`).
    ``batch_size`` bounds the number of sequences (prompts x samples) per batch. ``batching`` is how
    a batch is decoded (:mod:`policies.decoding`): ``compact`` drops rows from the batch as they end,
    ``static`` keeps every row until the longest ends (the path before compaction, for comparison).
    Compaction pays most with large batches: a whole round's prompts x samples in one batch.
    """

    def __init__(
        self,
        model_ref: str,
        device: str = "auto",
        batch_size: int = 32,
        dtype: str = "auto",
        progress: bool = False,
        batching: Batching = "compact",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batching not in BATCHINGS:
            raise ValueError(f"unknown batching {batching!r}; expected one of {', '.join(BATCHINGS)}")
        self.batching: Batching = batching
        self.model_ref = str(model_ref)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.progress = progress
        self.tokenizer = load_tokenizer(self.model_ref)
        self._model: Any = load_base_model(self.model_ref, self.device, dtype)  # quick: no bar
        self._adapters: dict[str, AdapterRef] = {}
        self._eos_ids = eos_token_ids(self.tokenizer, self._model.generation_config)
        self.last_stats: GenerationStats | None = None

    # -- adapters -------------------------------------------------------------------------------

    @property
    def loaded_adapters(self) -> dict[str, AdapterRef]:
        return dict(self._adapters)

    def _is_peft(self) -> bool:
        return bool(self._adapters)

    def _ensure_adapter(self, adapter: AdapterRef) -> None:
        known = self._adapters.get(adapter.id)
        if known is not None and known == adapter:
            # Already loaded from these verified bytes; re-check the file still matches.
            verify_adapter(adapter.path, adapter.sha256)
            return
        if known is not None:  # same id, different path or hash: replace it
            self._drop_adapter(adapter.id)
        self._model = attach_adapter(self._model, adapter)
        self._adapters[adapter.id] = adapter

    def _drop_adapter(self, adapter_id: str) -> None:
        del self._adapters[adapter_id]
        if self._adapters:
            self._model.delete_adapter(adapter_id)
        else:  # last adapter: strip the LoRA layers and go back to the plain base model
            self._model = self._model.unload()

    @contextlib.contextmanager
    def _selected(self, adapter: AdapterRef | None) -> Iterator[Any]:
        if adapter is None:
            if self._is_peft():
                peft_model: PeftModel = self._model
                with peft_model.disable_adapter():
                    yield peft_model
            else:
                yield self._model
            return
        self._ensure_adapter(adapter)
        self._model.set_adapter(adapter.id, inference_mode=True)
        yield self._model

    # -- generation -----------------------------------------------------------------------------

    def _generation_config(self, spec: SamplingSpec, n_return: int) -> GenerationConfig:
        kwargs: dict[str, Any] = {
            "max_new_tokens": spec.max_new_tokens,
            "num_return_sequences": n_return,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self._eos_ids or None,
            "use_cache": True,
        }
        if spec.greedy:
            kwargs["do_sample"] = False
        else:
            # Temperature, top-k and top-p are applied by each row's RowSampler (policies/decoding.py), which
            # leaves one token for transformers' sampler to take; top_k=0 disables transformers' default top-k of
            # 50 (vLLM applies none either).
            kwargs.update(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
        return GenerationConfig(**kwargs)

    def _trim(self, new_tokens: list[int]) -> list[int]:
        """Generated tokens before the first eos (``generate`` only pads after an eos)."""
        eos = set(self._eos_ids)
        for i, tok in enumerate(new_tokens):
            if tok in eos:
                return new_tokens[:i]
        return new_tokens

    def generate(
        self, prompts: Sequence[str], adapter: AdapterRef | None, spec: SamplingSpec
    ) -> list[Generation]:
        """``spec.n`` responses per prompt, ordered by (prompt_index, sample_index)."""
        return self.generate_from(prompts, adapter, spec, first_index=0)

    def generate_from(
        self, prompts: Sequence[str], adapter: AdapterRef | None, spec: SamplingSpec, first_index: int
    ) -> list[Generation]:
        """:meth:`generate` for prompts ``first_index``, ``first_index + 1``, ... of a round (a shard of it, in
        policies/sharded.py): sample j of prompt i draws from the generator of (spec.seed, first_index + i, j),
        so a prompt's samples are the same in any shard. The results' prompt indices count from 0."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        started = time.perf_counter()
        results: list[Generation] = []
        if not prompts:
            self.last_stats = GenerationStats(tokens=0, seconds=0.0)
            return results
        n_return = 1 if spec.greedy else spec.n
        repeat = spec.n if spec.greedy else 1
        per_batch = max(1, self.batch_size // n_return)
        templated = has_chat_template(self.tokenizer)
        texts = [format_prompt(self.tokenizer, p) for p in prompts]
        batches = [
            list(range(i, min(i + per_batch, len(texts)))) for i in range(0, len(texts), per_batch)
        ]
        gen_config = self._generation_config(spec, n_return)
        total_tokens = decoded_tokens = slot_steps = 0

        with (
            torch.inference_mode(),
            self._selected(adapter) as model,
            progress_bar("generating", len(batches), self.progress, unit="batches") as advance,
        ):
            for batch in batches:
                enc = self.tokenizer(
                    [texts[i] for i in batch],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=not templated,
                ).to(self.device)
                draws = None if spec.greedy else RowDraws(spec.temperature, spec.top_p, [
                    row_generator(spec.seed, first_index + i, j) for i in batch for j in range(n_return)],
                    spec.top_k)
                out = decode(model, enc["input_ids"], enc["attention_mask"], gen_config, self._eos_ids,
                             self.batching, draws)
                slot_steps += out.slot_steps
                for row, tokens in enumerate(out.rows):
                    prompt_index = batch[row // n_return]
                    kept = self._trim(tokens)
                    decoded_tokens += len(kept)
                    text = self.tokenizer.decode(kept, skip_special_tokens=True)
                    for r in range(repeat):
                        sample_index = row % n_return if repeat == 1 else r
                        results.append(Generation(prompt_index, sample_index, text, len(kept)))
                        total_tokens += len(kept)
                advance()

        self.last_stats = GenerationStats(
            tokens=total_tokens, seconds=time.perf_counter() - started,
            decoded_tokens=decoded_tokens, slot_steps=slot_steps,
        )
        results.sort(key=lambda g: (g.prompt_index, g.sample_index))
        return results

    def base_logprobs(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Mean log-probability per token of each response after its prompt (chat-formatted as for
        generation) under the base model, the adapter disabled; an empty response gets 0.0. The prompt
        and the response are tokenised apart and joined, as TRL joins them for training."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        templated = has_chat_template(self.tokenizer)
        unique = list(dict.fromkeys(prompts))  # a round has K samples per prompt: render each prompt once
        heads = dict(zip(unique, self.tokenizer([format_prompt(self.tokenizer, p) for p in unique],
                                                add_special_tokens=not templated)["input_ids"], strict=True))
        tails = self.tokenizer(list(responses), add_special_tokens=False)["input_ids"] if responses else []
        rows = [(heads[p], t) for p, t in zip(prompts, tails, strict=True)]
        out: dict[int, float] = {}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        with torch.inference_mode(), self._selected(None) as model:
            for index in self._score_batches([len(h) + len(t) for h, t in rows], model.config.vocab_size):
                batch = [rows[i] for i in index]
                width = max(len(h) + len(t) for h, t in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                scored = torch.zeros((len(batch), width - 1))  # 1 where a response token is predicted
                for i, (h, t) in enumerate(batch):  # right-padded: positions start at 0 for every row
                    ids[i, : len(h) + len(t)] = torch.tensor(h + t)
                    mask[i, : len(h) + len(t)] = 1
                    scored[i, len(h) - 1: len(h) + len(t) - 1] = 1.0  # token j is predicted at position j - 1
                ids, scored = ids.to(self.device), scored.to(self.device)
                logits = model(input_ids=ids, attention_mask=mask.to(self.device)).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None])[..., 0]
                means = (logp * scored).sum(1) / scored.sum(1).clamp(min=1.0)  # an empty response: 0.0
                for i, value in zip(index, means.tolist(), strict=True):
                    out[i] = value
        return [out[i] for i in range(len(rows))]

    def _score_batches(self, lengths: list[int], vocab: int) -> list[list[int]]:
        """Row indices by length (less padding), in batches of at most batch_size rows (and, on a CPU,
        SCORE_TOKENS_PER_BATCH padded tokens) whose float32 logits stay within SCORE_LOGITS_BUDGET
        elements (a 150k vocabulary must not take 70 GB)."""
        batches: list[list[int]] = []
        on_gpu = self.device.type != "cpu"
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            rows = len(batches[-1]) + 1 if batches else 1
            if batches and rows <= self.batch_size and (rows * lengths[i] <= SCORE_TOKENS_PER_BATCH or on_gpu) \
                    and rows * lengths[i] * vocab <= SCORE_LOGITS_BUDGET:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def close(self) -> None:
        """Free the model (and cached GPU memory)."""
        self._model = None
        self._adapters.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_backend(
    name: Literal["transformers", "vllm", "server"], model_ref: str, **kwargs: Any
) -> GenerationBackend:
    """Build a generation backend by name; ``kwargs`` go to its constructor. (The transformers backend on several
    worker processes is :class:`policies.sharded.ShardedBackend`, which builds this one in each.)"""
    if name == "transformers":
        return TransformersBackend(model_ref, **kwargs)
    if name == "vllm":
        from policies.vllm_backend import VLLMBackend

        return VLLMBackend(model_ref, **kwargs)
    if name == "server":
        from policies.server_backend import ServerBackend

        return ServerBackend(model_ref, **kwargs)
    raise ValueError(f"unknown generation backend {name!r}; expected 'transformers', 'vllm' or 'server'")
