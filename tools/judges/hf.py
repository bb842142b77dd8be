"""The `hf` judge: any local or cached Hugging Face causal LM as judge, loaded lazily on first use.

Its concurrency is batching: a round's prompts go to the backend's `generate` in one call, which decodes
them `batch_size` sequences at a time. No threads around the model (one model, one lock).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tools.judges.base import JUDGES
from tools.judges.llm import BackendPolicy, LLMJudge, PairwiseMode, make_rubric, policy_ask

if TYPE_CHECKING:
    from guardrails.constitution import Constitution


class LazyBackendPolicy:
    """Loads a `TransformersBackend` on the first generate (not at config validation time)."""

    def __init__(self, model: str, device: str, dtype: str, batch_size: int) -> None:
        self.model, self.device, self.dtype, self.batch_size = model, device, dtype, batch_size
        self._policy: BackendPolicy | None = None
        self._lock = threading.Lock()

    def generate(self, prompts: Sequence[str], spec: Any) -> list[str]:
        with self._lock:
            if self._policy is None:
                from policies.generation import TransformersBackend

                backend = TransformersBackend(self.model, device=self.device, dtype=self.dtype,
                                              batch_size=self.batch_size)
                self._policy = BackendPolicy(backend)
            return self._policy.generate(prompts, spec)

    def close(self) -> None:
        if self._policy is not None:
            self._policy.backend.close()
            self._policy = None


class HFJudge(LLMJudge):
    def __init__(self, handle: LazyBackendPolicy, max_new_tokens: int, rubric: str,
                 pairwise: PairwiseMode) -> None:
        self.handle = handle
        ask = policy_ask(handle, max_new_tokens)
        super().__init__(ask, rubric, pairwise)

    def close(self) -> None:
        self.handle.close()


@JUDGES.register("hf")
def hf(
    model: str,
    rubric: str = "additive",
    max_new_tokens: int = 64,
    pairwise: PairwiseMode = "prompt",
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 16,
    constitution: Constitution | None = None,
) -> HFJudge:
    """Settings: model (local path or hub id), rubric ("additive" | "constitution"),
    max_new_tokens (greedy), pairwise ("prompt" | "scores"), device, dtype, batch_size."""
    handle = LazyBackendPolicy(model, device, dtype, batch_size)
    return HFJudge(handle, max_new_tokens, make_rubric(rubric, constitution), pairwise)

