"""vLLM generation backend (GPU; optional extra ``pip install 'tether[gpu]'``).

Same protocol as :class:`policies.generation.TransformersBackend`: prompts are user messages
rendered with the chat template, ``spec.n`` samples per prompt, the base model for
``adapter=None`` and a ``LoRARequest`` otherwise. An adapter's weights are verified against their
SHA-256 every time it is selected; the first time, the verified bytes are copied into a private
staging directory that vLLM loads from, so the file vLLM reads is exactly the one that was hashed.

vLLM is imported lazily, so this module imports fine without it.
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from policies.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, read_verified_adapter, verify_adapter
from policies.chat import format_prompt
from tether_types import AdapterRef, Generation, GenerationStats, SamplingSpec

VLLM_MISSING = (
    "the 'vllm' generation backend needs vLLM, which is not installed; "
    "install the GPU extra with: pip install 'tether[gpu]' (or use backend 'transformers')"
)


class VLLMBackend:
    """``vllm.LLM`` with LoRA enabled.

    ``max_lora_rank`` must be >= the rank of every adapter used; ``max_loras`` is how many adapters
    vLLM keeps resident on the GPU at once. Extra keyword arguments go to ``vllm.LLM``
    (e.g. ``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``).
    """

    def __init__(
        self,
        model_ref: str,
        device: str = "auto",
        dtype: str = "auto",
        max_lora_rank: int = 64,
        max_loras: int = 2,
        progress: bool = False,
        **llm_kwargs: Any,
    ) -> None:
        try:
            import vllm  # noqa: F401
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError as exc:
            raise ImportError(VLLM_MISSING) from exc
        if device not in ("auto", "cuda"):
            raise ValueError(f"the vLLM backend runs on the GPU; got device={device!r}")
        self._SamplingParams = SamplingParams
        self._LoRARequest = LoRARequest
        self.model_ref = str(model_ref)
        self.progress = progress
        self._llm: Any = LLM(
            model=self.model_ref,
            dtype=dtype,
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            max_loras=max_loras,
            **llm_kwargs,
        )
        self.tokenizer = self._llm.get_tokenizer()
        self._staging = Path(tempfile.mkdtemp(prefix="tether-vllm-lora-"))
        self._lora_ids: dict[str, int] = {}
        self._next_int_id = 0
        self._staged: dict[str, AdapterRef] = {}
        eos = getattr(self.tokenizer, "eos_token_id", None)
        self._eos_ids: set[int] = {int(eos)} if eos is not None else set()
        self.last_stats: GenerationStats | None = None

    def _lora_request(self, adapter: AdapterRef) -> Any:
        staged = self._staged.get(adapter.id)
        if staged == adapter:
            verify_adapter(adapter.path, adapter.sha256)  # re-check the source on every selection
        else:
            verified = read_verified_adapter(adapter.path, adapter.sha256)
            # A fresh int id for new contents: vLLM caches adapters by int id.
            self._next_int_id += 1
            int_id = self._next_int_id
            target = self._staging / f"{int_id}"
            target.mkdir(parents=True)
            (target / ADAPTER_WEIGHTS_NAME).write_bytes(verified.weights)
            (target / ADAPTER_CONFIG_NAME).write_text(json.dumps(verified.config))
            self._lora_ids[adapter.id] = int_id
            self._staged[adapter.id] = adapter
        int_id = self._lora_ids[adapter.id]
        return self._LoRARequest(adapter.id, int_id, str(self._staging / f"{int_id}"))

    def generate(
        self, prompts: Sequence[str], adapter: AdapterRef | None, spec: SamplingSpec
    ) -> list[Generation]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        started = time.perf_counter()
        if not prompts:
            self.last_stats = GenerationStats(tokens=0, seconds=0.0)
            return []
        lora_request = self._lora_request(adapter) if adapter is not None else None
        n_return = 1 if spec.greedy else spec.n
        repeat = spec.n if spec.greedy else 1
        # One seed per prompt (spec.seed + prompt_index) so repeated prompts still get distinct samples.
        params = [
            self._SamplingParams(
                n=n_return,
                temperature=0.0 if spec.greedy else spec.temperature,
                top_p=1.0 if spec.greedy else spec.top_p,
                top_k=-1 if spec.greedy or spec.top_k == 0 else spec.top_k,  # -1: vLLM's "off"
                max_tokens=spec.max_new_tokens,
                seed=spec.seed + i,
            )
            for i in range(len(prompts))
        ]
        # Token ids, so vLLM adds no second BOS to a templated prompt.
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        inputs = [
            {
                "prompt_token_ids": self.tokenizer(
                    format_prompt(self.tokenizer, p), add_special_tokens=not templated
                )["input_ids"]
            }
            for p in prompts
        ]
        outputs = self._llm.generate(
            inputs, params, lora_request=lora_request, use_tqdm=self.progress
        )
        results: list[Generation] = []
        total = 0
        for prompt_index, request_output in enumerate(outputs):
            for sample_index, completion in enumerate(request_output.outputs):
                n_tokens = sum(1 for t in completion.token_ids if t not in self._eos_ids)
                for r in range(repeat):
                    idx = sample_index if repeat == 1 else r
                    results.append(Generation(prompt_index, idx, completion.text, n_tokens))
                    total += n_tokens
        self.last_stats = GenerationStats(tokens=total, seconds=time.perf_counter() - started)
        return results

    def close(self) -> None:
        """Drop the engine and the staged adapter copies."""
        self._llm = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
